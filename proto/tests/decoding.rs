//! Decoding Mesos messages from hand-built bytes: unknown fields and unknown enum values are
//! tolerated (newer masters send them), proto2 defaults apply, malformed input is an error.

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    self, CommandInfo, Filters, MasterInfo, TaskState, command_info, environment,
    master_info::capability,
    scheduler::{self, event},
};
use prost::Message;

/// Protobuf wire helpers: enough to hand-build messages field by field.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn tag(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field) << 3 | u64::from(wire), out);
}
fn varint_field(field: u32, v: u64, out: &mut Vec<u8>) {
    tag(field, 0, out);
    varint(v, out);
}
fn len_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    tag(field, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
fn double_field(field: u32, v: f64, out: &mut Vec<u8>) {
    tag(field, 1, out);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A SUBSCRIBED event as a Mesos 1.11 master sends it, with QUOTA_V2 (3) among the master's
/// capabilities and fields from a future version our protos do not define.
fn subscribed_event_bytes() -> Vec<u8> {
    let mut framework_id = Vec::new();
    len_field(1, b"fw-7", &mut framework_id);

    let mut cap_quota_v2 = Vec::new();
    varint_field(1, 3, &mut cap_quota_v2);
    let mut cap_agent_draining = Vec::new();
    varint_field(1, 2, &mut cap_agent_draining);

    let mut master_info = Vec::new();
    len_field(1, b"master-1", &mut master_info);
    varint_field(2, 0x0100_007f, &mut master_info); // 127.0.0.1 in network order
    varint_field(3, 5050, &mut master_info);
    len_field(5, b"m1.example.com", &mut master_info);
    len_field(9, &cap_agent_draining, &mut master_info);
    len_field(9, &cap_quota_v2, &mut master_info);
    varint_field(4242, 7, &mut master_info); // unknown varint field
    len_field(4243, b"future", &mut master_info); // unknown length-delimited field

    let mut subscribed = Vec::new();
    len_field(1, &framework_id, &mut subscribed);
    double_field(2, 15.0, &mut subscribed);
    len_field(3, &master_info, &mut subscribed);
    tag(99, 5, &mut subscribed); // unknown fixed32 field
    subscribed.extend_from_slice(&[1, 2, 3, 4]);

    let mut event = Vec::new();
    varint_field(1, 1, &mut event); // type = SUBSCRIBED
    len_field(2, &subscribed, &mut event);
    event
}

#[test]
fn subscribed_with_unknown_capability_and_unknown_fields_decodes() {
    let event = scheduler::Event::decode(Bytes::from(subscribed_event_bytes())).expect("decodes");
    assert_eq!(event.r#type(), event::Type::Subscribed);
    let subscribed = event.subscribed.expect("subscribed payload");
    assert_eq!(subscribed.framework_id.value, "fw-7");
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    let master = subscribed.master_info.expect("master_info");
    assert_eq!(master.id, "master-1");
    assert_eq!(master.port, 5050);
    assert_eq!(master.hostname.as_deref(), Some("m1.example.com"));
    let caps: Vec<Option<i32>> = master.capabilities.iter().map(|c| c.r#type).collect();
    assert_eq!(caps, vec![Some(2), Some(3)]);
    assert_eq!(
        master.capabilities[0].r#type(),
        capability::Type::AgentDraining
    );
    // 3 (QUOTA_V2) is unknown to the 1.11 v1 proto: kept as a raw value, not an error.
    assert!(capability::Type::try_from(3).is_err());
    assert_eq!(
        master.capabilities[1].r#type(),
        capability::Type::Unknown,
        "the accessor maps unknown values to the default"
    );
}

#[test]
fn unknown_event_type_reads_as_unknown() {
    let mut bytes = Vec::new();
    varint_field(1, 42, &mut bytes);
    let event = scheduler::Event::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(event.r#type, Some(42));
    assert_eq!(event.r#type(), event::Type::Unknown);
}

#[test]
fn malformed_protobuf_is_an_error_not_a_panic() {
    let full = subscribed_event_bytes();
    // Every strict prefix that cuts a length-delimited field is invalid.
    let mut errors = 0;
    for cut in 1..full.len() {
        if scheduler::Event::decode(&full[..cut]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > full.len() / 2, "only {errors} prefixes failed");
    // A length prefix pointing past the end.
    assert!(scheduler::Event::decode(&[0x12, 0x7f, 0x00][..]).is_err());
    // Wire type 7 does not exist.
    assert!(scheduler::Event::decode(&[0x0f][..]).is_err());
    // An over-long varint.
    assert!(
        scheduler::Event::decode(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ][..]
        )
        .is_err()
    );
}

#[test]
fn proto2_defaults_apply_when_fields_are_absent() {
    let command = CommandInfo::decode(&[][..]).expect("empty message decodes");
    assert!(command.shell(), "CommandInfo.shell defaults to true");
    let uri = command_info::Uri::decode(&[0x0a, 0x01, b'x'][..]).expect("decodes");
    assert!(uri.extract(), "URI.extract defaults to true");
    assert!(!uri.executable());
    assert_eq!(Filters::default().refuse_seconds(), 5.0);
    assert_eq!(MasterInfo::default().port, 5050);
    assert_eq!(v1::FrameworkInfo::default().failover_timeout(), 0.0);
    assert_eq!(v1::FrameworkInfo::default().role(), "*");
    assert_eq!(v1::AgentInfo::default().port(), 5051);
    assert_eq!(
        environment::Variable::default().r#type(),
        environment::variable::Type::Value
    );
}

#[test]
fn task_state_numbers_match_mesos() {
    assert_eq!(TaskState::TaskStaging as i32, 6);
    assert_eq!(TaskState::TaskStarting as i32, 0);
    assert_eq!(TaskState::TaskRunning as i32, 1);
    assert_eq!(TaskState::TaskKilling as i32, 8);
    assert_eq!(TaskState::TaskFinished as i32, 2);
    assert_eq!(TaskState::TaskGoneByOperator as i32, 12);
    assert_eq!(TaskState::TaskUnknown as i32, 13);
}

#[test]
fn scheduler_call_round_trips_with_exact_bytes() {
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: "fw".into() }),
        r#type: Some(scheduler::call::Type::Decline as i32),
        decline: Some(scheduler::call::Decline {
            offer_ids: vec![v1::OfferId { value: "o1".into() }],
            filters: Some(Filters {
                refuse_seconds: Some(60.0),
            }),
        }),
        ..Default::default()
    };
    let bytes = call.encode_to_vec();
    let mut expected = Vec::new();
    len_field(1, &[0x0a, 2, b'f', b'w'], &mut expected); // framework_id
    varint_field(2, 4, &mut expected); // type = DECLINE
    let mut decline = Vec::new();
    len_field(1, &[0x0a, 2, b'o', b'1'], &mut decline);
    let mut filters = Vec::new();
    double_field(1, 60.0, &mut filters);
    len_field(2, &filters, &mut decline);
    len_field(5, &decline, &mut expected); // decline = 5
    assert_eq!(bytes, expected);
    assert_eq!(
        scheduler::Call::decode(bytes.as_slice()).expect("decodes"),
        call
    );
}

#[test]
fn internal_task_spec_round_trips() {
    use mesoflow_proto::internal::{Probe, TaskSpec, task_spec};
    let spec = TaskSpec {
        version: 1,
        kind: Some(task_spec::Kind::Probe(Probe {
            duration_ms: 250,
            exit_code: 3,
        })),
    };
    let decoded = TaskSpec::decode(spec.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, spec);
}
