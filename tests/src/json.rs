//! Mesos's JSON dialect of the v1 messages, for clients that negotiate `application/json`.
//!
//! This is not proto3 canonical JSON: Mesos converts by reflection (stout), so field names are
//! the `.proto` names, enums are value names, bytes are standard base64, 64-bit integers are
//! plain numbers, unknown keys are ignored, missing required fields are an error, and on output
//! an unset optional field with an explicit `[default=...]` (not deprecated) is written with its
//! default (`"shell": true`, `"extract": true`, ...). An enum number the schema does not name is
//! left out, which is why a 1.11 master's QUOTA_V2 capability shows up as `{}`. Non-finite
//! doubles are written as bare `Infinity`/`-Infinity`/`NaN`, exactly as Mesos does.

use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use protox::prost_reflect::ReflectMessage as _;
use protox::prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    Value,
};

/// The descriptors of every message mesoflow-proto compiles.
fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(mesoflow_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| format!("cannot load the protobuf descriptors: {e}"))
}

fn message(full_name: &str) -> Result<MessageDescriptor, String> {
    pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("unknown message type {full_name}"))
}

/// Converts a serialized protobuf message of type `full_name` to Mesos JSON.
pub fn to_json(full_name: &str, bytes: &[u8]) -> Result<String, String> {
    let desc = message(full_name)?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| e.to_string())?;
    let mut out = String::new();
    write_message(&msg, &mut out);
    Ok(out)
}

/// Converts Mesos JSON into a serialized protobuf message of type `full_name`.
pub fn from_json(full_name: &str, text: &[u8]) -> Result<Vec<u8>, String> {
    let desc = message(full_name)?;
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("Malformed JSON: {e}"))?;
    let msg = read_message(&desc, &value)?;
    let mut missing = Vec::new();
    missing_required(&msg, "", &mut missing);
    if !missing.is_empty() {
        return Err(format!("Missing required fields: {}", missing.join(", ")));
    }
    Ok(prost::Message::encode_to_vec(&msg))
}

/// Checks that a serialized protobuf message has every proto2 `required` field, as protobuf's
/// `ParseFromString` does on a real master (prost decodes a missing required field as empty).
pub fn check_required(full_name: &str, bytes: &[u8]) -> Result<(), String> {
    let desc = message(full_name)?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    missing_required(&msg, "", &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("Missing required fields: {}", missing.join(", ")))
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn write_message(msg: &DynamicMessage, out: &mut String) {
    out.push('{');
    let mut first = true;
    for field in msg.descriptor().fields() {
        let value = if msg.has_field(&field) {
            msg.get_field(&field).into_owned()
        } else if emits_default(&field) {
            field.default_value()
        } else {
            continue;
        };
        let mut rendered = String::new();
        if !write_field_value(&field, &value, &mut rendered) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(field.name(), out);
        out.push(':');
        out.push_str(&rendered);
    }
    out.push('}');
}

fn emits_default(field: &FieldDescriptor) -> bool {
    let proto = field.field_descriptor_proto();
    let deprecated = proto
        .options
        .as_ref()
        .and_then(|o| o.deprecated)
        .unwrap_or(false);
    field.cardinality() == Cardinality::Optional && proto.default_value.is_some() && !deprecated
}

/// Writes a field's value; `false` when it must be left out (an unnamed enum number).
fn write_field_value(field: &FieldDescriptor, value: &Value, out: &mut String) -> bool {
    match value {
        Value::List(items) => {
            out.push('[');
            let mut first = true;
            for item in items {
                let mut rendered = String::new();
                if write_single(&field.kind(), item, &mut rendered) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&rendered);
                }
            }
            out.push(']');
            true
        }
        Value::Map(map) => {
            let Kind::Message(entry) = field.kind() else {
                return false;
            };
            let value_kind = entry.map_entry_value_field().kind();
            let mut keys: Vec<&MapKey> = map.keys().collect();
            keys.sort_by_key(|k| map_key_text(k));
            out.push('{');
            let mut first = true;
            for key in keys {
                let mut rendered = String::new();
                if write_single(&value_kind, &map[key], &mut rendered) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    write_string(&map_key_text(key), out);
                    out.push(':');
                    out.push_str(&rendered);
                }
            }
            out.push('}');
            true
        }
        single => write_single(&field.kind(), single, out),
    }
}

fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn write_double(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(
            &serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
        );
    }
}

fn write_single(kind: &Kind, value: &Value, out: &mut String) -> bool {
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(v) => out.push_str(&v.to_string()),
        Value::I64(v) => out.push_str(&v.to_string()),
        Value::U32(v) => out.push_str(&v.to_string()),
        Value::U64(v) => out.push_str(&v.to_string()),
        Value::F32(v) => write_double(f64::from(*v), out),
        Value::F64(v) => write_double(*v, out),
        Value::String(s) => write_string(s, out),
        Value::Bytes(b) => write_string(&base64::engine::general_purpose::STANDARD.encode(b), out),
        Value::EnumNumber(n) => {
            let Kind::Enum(e) = kind else {
                return false;
            };
            match e.get_value(*n) {
                Some(v) => write_string(v.name(), out),
                None => return false,
            }
        }
        Value::Message(m) => write_message(m, out),
        Value::List(_) | Value::Map(_) => return false,
    }
    true
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

fn read_message(
    desc: &MessageDescriptor,
    json: &serde_json::Value,
) -> Result<DynamicMessage, String> {
    let serde_json::Value::Object(object) = json else {
        return Err(format!("Expecting a JSON object for {}", desc.full_name()));
    };
    let mut msg = DynamicMessage::new(desc.clone());
    for (key, value) in object {
        // Unknown keys are silently ignored, as by Mesos.
        let Some(field) = desc.get_field_by_name(key) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let parsed = if field.is_map() {
            let serde_json::Value::Object(entries) = value else {
                return Err(format!("Expecting a JSON object for map field '{key}'"));
            };
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let key_field = entry.map_entry_key_field();
            let value_field = entry.map_entry_value_field();
            let mut map = std::collections::HashMap::new();
            for (k, v) in entries {
                let map_key = match key_field.kind() {
                    Kind::String => MapKey::String(k.clone()),
                    _ => return Err(format!("Unsupported map key type in '{key}'")),
                };
                if let Some(v) = read_single(&value_field, v)? {
                    map.insert(map_key, v);
                }
            }
            Value::Map(map)
        } else if field.is_list() {
            let serde_json::Value::Array(items) = value else {
                return Err(format!("Expecting a JSON array for repeated field '{key}'"));
            };
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                if let Some(v) = read_single(&field, item)? {
                    list.push(v);
                }
            }
            Value::List(list)
        } else {
            match read_single(&field, value)? {
                Some(v) => v,
                None => continue,
            }
        };
        msg.try_set_field(&field, parsed)
            .map_err(|e| format!("Invalid value for field '{key}': {e}"))?;
    }
    Ok(msg)
}

fn number_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

/// One scalar/message value; `Ok(None)` for an unknown name on an optional enum (dropped).
fn read_single(
    field: &FieldDescriptor,
    value: &serde_json::Value,
) -> Result<Option<Value>, String> {
    let name = field.name();
    let bad = |what: &str| format!("Field '{name}' expects {what}, got {value}");
    let int = || number_text(value).ok_or_else(|| bad("a number"));
    let parsed = match field.kind() {
        Kind::Double | Kind::Float => {
            let text = int()?;
            let v = match text.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                t => t.parse::<f64>().map_err(|_| bad("a number"))?,
            };
            if field.kind() == Kind::Float {
                Value::F32(v as f32)
            } else {
                Value::F64(v)
            }
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(int()?.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(int()?.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            int()?
                .parse()
                .map_err(|_| bad("an unsigned 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(
            int()?
                .parse()
                .map_err(|_| bad("an unsigned 64-bit integer"))?,
        ),
        Kind::Bool => Value::Bool(value.as_bool().ok_or_else(|| bad("true or false"))?),
        Kind::String => Value::String(value.as_str().ok_or_else(|| bad("a string"))?.to_string()),
        Kind::Bytes => {
            let text = value.as_str().ok_or_else(|| bad("a base64 string"))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("Field '{name}' is not valid base64: {e}"))?;
            Value::Bytes(Bytes::from(raw))
        }
        Kind::Enum(e) => {
            let text = value.as_str().ok_or_else(|| bad("an enum value name"))?;
            match e.get_value_by_name(text) {
                Some(v) => Value::EnumNumber(v.number()),
                None if field.cardinality() == Cardinality::Required => {
                    return Err(format!(
                        "Unknown value '{text}' for required enum field '{name}'"
                    ));
                }
                None => return Ok(None),
            }
        }
        Kind::Message(m) => Value::Message(read_message(&m, value)?),
    };
    Ok(Some(parsed))
}

fn missing_required(msg: &DynamicMessage, prefix: &str, missing: &mut Vec<String>) {
    for field in msg.descriptor().fields() {
        let path = format!("{prefix}{}", field.name());
        if field.cardinality() == Cardinality::Required && !msg.has_field(&field) {
            missing.push(path);
            continue;
        }
        if !msg.has_field(&field) {
            continue;
        }
        match msg.get_field(&field).as_ref() {
            Value::Message(m) => missing_required(m, &format!("{path}."), missing),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        missing_required(m, &format!("{path}[{i}]."), missing);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesoflow_proto::mesos::v1;
    use prost::Message as _;

    #[test]
    fn output_uses_field_names_enum_names_and_declared_defaults() {
        let event = v1::scheduler::Event {
            r#type: Some(v1::scheduler::event::Type::Heartbeat as i32),
            ..Default::default()
        };
        assert_eq!(
            to_json("mesos.v1.scheduler.Event", &event.encode_to_vec()).unwrap(),
            r#"{"type":"HEARTBEAT"}"#
        );
        let command = v1::CommandInfo {
            value: Some("./run".into()),
            uris: vec![v1::command_info::Uri {
                value: "http://h/x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = to_json("mesos.v1.CommandInfo", &command.encode_to_vec()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"uris":[{"value":"http://h/x","extract":true}],"shell":true,"value":"./run"})
        );
        // An enum number the schema does not name is left out: the entry becomes {}.
        let master = v1::MasterInfo {
            capabilities: vec![v1::master_info::Capability { r#type: Some(3) }],
            ..Default::default()
        };
        let text = to_json("mesos.v1.MasterInfo", &master.encode_to_vec()).unwrap();
        assert!(text.contains(r#""capabilities":[{}]"#), "{text}");
    }

    #[test]
    fn protobuf_missing_required_fields_are_found() {
        // prost always writes required strings, so build the bytes by hand: an empty
        // FrameworkInfo is what a client that never set user/name sends.
        let mut subscribe = Vec::new();
        prost::encoding::bytes::encode(1, &Vec::<u8>::new(), &mut subscribe);
        let mut bytes = Vec::new();
        prost::encoding::int32::encode(
            2,
            &(v1::scheduler::call::Type::Subscribe as i32),
            &mut bytes,
        );
        prost::encoding::bytes::encode(3, &subscribe, &mut bytes);
        assert_eq!(
            check_required("mesos.v1.scheduler.Call", &bytes).unwrap_err(),
            "Missing required fields: subscribe.framework_info.user, subscribe.framework_info.name"
        );
        let call = v1::scheduler::Call {
            r#type: Some(v1::scheduler::call::Type::Subscribe as i32),
            subscribe: Some(Default::default()),
            ..Default::default()
        };
        assert!(check_required("mesos.v1.scheduler.Call", &call.encode_to_vec()).is_ok());
    }

    #[test]
    fn input_ignores_unknown_keys_checks_required_fields_and_accepts_numeric_strings() {
        let call = br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n",
            "failoverTimeout":5,"failover_timeout":"7.5","capabilities":[{"type":"NO_SUCH"}]}}}"#;
        let bytes = from_json("mesos.v1.scheduler.Call", call).unwrap();
        let decoded = v1::scheduler::Call::decode(bytes.as_slice()).unwrap();
        let info = decoded.subscribe.unwrap().framework_info;
        assert_eq!(info.failover_timeout, Some(7.5));
        assert_eq!(info.capabilities.len(), 1);
        assert_eq!(
            info.capabilities[0].r#type, None,
            "unknown optional enum name dropped"
        );
        let err = from_json(
            "mesos.v1.scheduler.Call",
            br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Missing required fields: subscribe.framework_info.user"
        );
        assert!(
            from_json("mesos.v1.scheduler.Call", b"{not json")
                .unwrap_err()
                .starts_with("Malformed JSON")
        );
        let ack = br#"{"type":"ACKNOWLEDGE","framework_id":{"value":"f"},"acknowledge":{
            "agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAECAwQFBgcICQoLDA0ODw=="}}"#;
        let decoded = v1::scheduler::Call::decode(
            from_json("mesos.v1.scheduler.Call", ack)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(decoded.acknowledge.unwrap().uuid.len(), 16);
    }
}
