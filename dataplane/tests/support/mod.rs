//! What the in-process checkpoint tests share: checkpoint services that keep snapshots in
//! memory, the restored state a TaskManager would build from them, and the committed output.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use mesoflow_dataplane::checkpoint::subtask::{
    CheckpointServices, KeyGroupPiece, RestoredState, SubtaskSnapshot, TriggerInfo,
};
use mesoflow_dataplane::plan::SubtaskId;
use mesoflow_proto::checkpoint::KeyGroupState;
use parking_lot::Mutex;

/// Checkpoint services that keep what subtasks hand in.
#[derive(Default)]
pub struct MemServices {
    pub triggered: Mutex<HashMap<u64, TriggerInfo>>,
    pub snapshots: Mutex<Vec<SubtaskSnapshot>>,
}

impl CheckpointServices for MemServices {
    fn trigger(&self, id: u64) -> Option<TriggerInfo> {
        self.triggered.lock().get(&id).cloned()
    }
    fn submit(&self, mut snapshot: SubtaskSnapshot) {
        // What the TaskManager's uploader does first.
        snapshot
            .serialize_deferred()
            .expect("frozen state serializes");
        self.snapshots.lock().push(snapshot);
    }
    fn decline(&self, subtask: SubtaskId, id: u64, reason: String) {
        panic!("{subtask:?} declined checkpoint {id}: {reason}");
    }
}

/// What the TaskManager would read back: every piece of every snapshot.
pub fn restored_from(snapshots: &[SubtaskSnapshot]) -> RestoredState {
    let mut r = RestoredState {
        checkpoint_id: 1,
        shared: true,
        ..Default::default()
    };
    for s in snapshots {
        for (op, shape) in &s.shapes {
            r.parallelism.insert(op.clone(), shape.parallelism);
        }
        for k in &s.keyed {
            let KeyGroupPiece::Written(bytes) = &k.piece else {
                panic!("a full checkpoint references an earlier one");
            };
            r.keyed
                .entry((k.operator_id.clone(), k.state_name.clone()))
                .or_default()
                .insert(
                    k.key_group,
                    (
                        bytes.clone(),
                        KeyGroupState {
                            state_name: k.state_name.clone(),
                            key_group: k.key_group,
                            segment: None,
                            written_by: 1,
                        },
                    ),
                );
        }
        for o in &s.operator {
            r.operator
                .entry((o.operator_id.clone(), o.state_name.clone()))
                .or_default()
                .insert(s.subtask.index, o.bytes.clone());
        }
    }
    r
}

/// The lines of the visible (committed) part files, sorted.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}
