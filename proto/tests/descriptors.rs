//! Checks our `.proto` files against the field table of the real Mesos 1.11 v1 protos
//! (`tests/data/v1-fields.tsv`): every message, enum, field name, number, label and type we
//! define must equal the real one, and nothing of the three files we speak may be missing.

use std::collections::{BTreeMap, BTreeSet};

use mesoflow_proto::FILE_DESCRIPTOR_SET;
use protox::prost_reflect::{Cardinality, DescriptorPool, Kind};

const TABLE: &str = include_str!("data/v1-fields.tsv");

/// The table's source files we implement, and the packages they define.
const FILES: &[(&str, &str)] = &[
    ("include/mesos/v1/mesos.proto", "mesos.v1"),
    (
        "include/mesos/v1/scheduler/scheduler.proto",
        "mesos.v1.scheduler",
    ),
    (
        "include/mesos/v1/executor/executor.proto",
        "mesos.v1.executor",
    ),
];

#[derive(Debug, Clone)]
struct Row {
    message: String,
    field: String,
    number: String,
    label: String,
    ty: String,
}

fn table_rows(table: &str) -> Vec<Row> {
    let mut lines = table.lines();
    let header = lines.next().expect("table has a header");
    assert_eq!(header, "file\tmessage\tfield\tnumber\tlabel\ttype");
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 6, "malformed table row: {line}");
            (cols[0], cols)
        })
        .filter(|(file, _)| FILES.iter().any(|(f, _)| f == file))
        .map(|(_, c)| Row {
            message: c[1].to_owned(),
            field: c[2].to_owned(),
            number: c[3].to_owned(),
            label: c[4].to_owned(),
            ty: c[5].to_owned(),
        })
        .collect()
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
    }
}

/// Every difference between the table rows and the compiled descriptors, as readable lines.
fn differences(rows: &[Row], pool: &DescriptorPool) -> Vec<String> {
    let mut diffs = Vec::new();
    // What the table says exists, to detect definitions of ours that are not in it.
    let mut table_fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let enum_names: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.label == "enum")
        .map(|r| r.message.as_str())
        .collect();

    for row in rows {
        table_fields
            .entry(row.message.clone())
            .or_default()
            .insert(row.field.clone());
        let at = format!("{}.{}", row.message, row.field);
        if row.label == "enum" {
            let Some(en) = pool.get_enum_by_name(&row.message) else {
                diffs.push(format!("{}: enum missing", row.message));
                continue;
            };
            match en.get_value_by_name(&row.field) {
                None => diffs.push(format!("{at}: enum value missing")),
                Some(v) if v.number().to_string() != row.number => diffs.push(format!(
                    "{at}: number {} != table {}",
                    v.number(),
                    row.number
                )),
                Some(_) => {}
            }
            continue;
        }
        let Some(msg) = pool.get_message_by_name(&row.message) else {
            diffs.push(format!("{}: message missing", row.message));
            continue;
        };
        if row.field == "(none)" {
            if msg.fields().len() != 0 {
                diffs.push(format!(
                    "{}: table says empty, ours has fields",
                    row.message
                ));
            }
            continue;
        }
        let Some(field) = msg.get_field_by_name(&row.field) else {
            diffs.push(format!("{at}: field missing"));
            continue;
        };
        if field.number().to_string() != row.number {
            diffs.push(format!(
                "{at}: number {} != table {}",
                field.number(),
                row.number
            ));
        }
        let label = match field.cardinality() {
            Cardinality::Optional => "optional",
            Cardinality::Required => "required",
            Cardinality::Repeated => "repeated",
        };
        if label != row.label {
            diffs.push(format!("{at}: label {label} != table {}", row.label));
        }
        let ty = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("map fields are messages")
            };
            format!(
                "map<{},{}>",
                kind_name(&entry.map_entry_key_field().kind()),
                kind_name(&entry.map_entry_value_field().kind())
            )
        } else {
            kind_name(&field.kind())
        };
        if ty != row.ty {
            diffs.push(format!("{at}: type {ty} != table {}", row.ty));
        }
        if let Kind::Enum(e) = field.kind()
            && !enum_names.contains(e.full_name())
        {
            diffs.push(format!(
                "{at}: enum type {} not in the table",
                e.full_name()
            ));
        }
    }

    // Nothing of ours beyond the table in the Mesos packages.
    for msg in pool.all_messages() {
        let name = msg.full_name();
        if !FILES.iter().any(|(_, pkg)| msg.package_name() == *pkg) || msg.is_map_entry() {
            continue;
        }
        let Some(known) = table_fields.get(name) else {
            diffs.push(format!("{name}: message not in the table"));
            continue;
        };
        for field in msg.fields() {
            if !known.contains(field.name()) {
                diffs.push(format!("{name}.{}: field not in the table", field.name()));
            }
        }
    }
    for en in pool.all_enums() {
        if !FILES.iter().any(|(_, pkg)| en.package_name() == *pkg) {
            continue;
        }
        let Some(known) = table_fields.get(en.full_name()) else {
            diffs.push(format!("{}: enum not in the table", en.full_name()));
            continue;
        };
        for value in en.values() {
            if !known.contains(value.name()) {
                diffs.push(format!(
                    "{}.{}: enum value not in the table",
                    en.full_name(),
                    value.name()
                ));
            }
        }
    }
    diffs
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("embedded descriptor set decodes")
}

#[test]
fn compiled_protos_equal_the_mesos_field_table() {
    let rows = table_rows(TABLE);
    // 931 + 146 + 45 rows of the three files.
    assert_eq!(rows.len(), 1122);
    let diffs = differences(&rows, &pool());
    assert!(
        diffs.is_empty(),
        "{} difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn comparison_detects_a_wrong_number_label_type_and_missing_field() {
    let mut rows = table_rows(TABLE);
    let find = |rows: &[Row], msg: &str, field: &str| {
        rows.iter()
            .position(|r| r.message == msg && r.field == field)
            .expect("row exists")
    };
    let i = find(&rows, "mesos.v1.FrameworkID", "value");
    rows[i].number = "2".into();
    let i = find(&rows, "mesos.v1.scheduler.Call", "framework_id");
    rows[i].label = "required".into();
    let i = find(&rows, "mesos.v1.TaskStatus", "uuid");
    rows[i].ty = "string".into();
    rows.push(Row {
        message: "mesos.v1.TaskInfo".into(),
        field: "not_a_field".into(),
        number: "99".into(),
        label: "optional".into(),
        ty: "string".into(),
    });
    // Drop a real row: our definition then has a field the table lacks.
    let i = find(&rows, "mesos.v1.executor.Event.Type", "HEARTBEAT");
    rows.remove(i);
    let diffs = differences(&rows, &pool());
    assert_eq!(diffs.len(), 5, "{diffs:#?}");
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("mesos.v1.FrameworkID.value: number 1 != table 2"))
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("Call.framework_id: label optional != table required"))
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("TaskStatus.uuid: type bytes != table string"))
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("TaskInfo.not_a_field: field missing"))
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("Event.Type.HEARTBEAT: enum value not in the table"))
    );
}

#[test]
fn oneofs_are_declared_where_mesos_declares_them() {
    let pool = pool();
    for (msg, oneof, members) in [
        (
            "mesos.v1.scheduler.AttributeConstraint.Selector",
            "selector",
            &["pseudoattribute_type", "attribute_name"][..],
        ),
        (
            "mesos.v1.scheduler.AttributeConstraint.Predicate",
            "predicate",
            &[
                "exists",
                "not_exists",
                "text_equals",
                "text_not_equals",
                "text_matches",
                "text_not_matches",
            ][..],
        ),
        (
            "mesos.v1.Volume.Source.CSIVolume.VolumeCapability",
            "access_type",
            &["block", "mount"][..],
        ),
    ] {
        let m = pool.get_message_by_name(msg).expect("message exists");
        let o = m
            .oneofs()
            .find(|o| o.name() == oneof)
            .expect("oneof exists");
        let names: Vec<String> = o.fields().map(|f| f.name().to_owned()).collect();
        assert_eq!(names, members, "{msg}");
    }
}
