//! Unaligned exactly-once checkpoints on the receiving side.
//!
//! An unaligned barrier crosses a channel twice: once as a *priority* event that overtakes the
//! data queued in the channel (a priority lane in local channels, the head of the outbox in
//! QUIC channels), and once as an in-order *marker* (the same barrier without the priority
//! flag) behind that data. A subtask snapshots as soon as the first barrier of a checkpoint
//! arrives on any input channel, without waiting for the others. The records it reads from a
//! channel after that snapshot but before the channel's marker were sent before the upstream
//! snapshot: they are part of neither snapshot's state, so they are processed normally *and*
//! recorded; once every channel delivered its marker (or ended) the recording goes into the
//! snapshot as operator state of the chain head (`in-flight-<input index>`), and a restored
//! subtask replays it into its chain head before reading any channel.
//!
//! Why the receiver records rather than the sender (Flink stores both sides): the data a
//! priority barrier overtakes is already on its way to the receiver, and the receiver is the one
//! place that sees it for local and QUIC channels alike, in the order it is processed. The
//! sender only keeps sending; nothing has to be copied out of the QUIC outbox or the crossbeam
//! queue.
//!
//! Limits: in-flight data is stored per subtask and is not redistributed, so a restore at a
//! different parallelism of the chain head is refused ([`EngineError::State`]). Only records
//! are recorded: watermarks that were in flight are not, so a record that was late behind an
//! in-flight watermark is treated as on time when replayed (restored operators start from the
//! watermark of their snapshot, as with aligned checkpoints).

use crate::checkpoint::codec::{decode_vec, encode_vec};
use crate::checkpoint::subtask::{OperatorIds, restore_error};
use crate::context::TaskContext;
use crate::element::{Barrier, Batch, Control, Data, Rec};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::{EngineError, Result};

/// Prefix of the operator state names of the chain head that hold in-flight records.
pub const IN_FLIGHT: &str = "in-flight-";

/// What the runtime must do after a barrier or the end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnalignedAction {
    /// Snapshot now: begin the checkpoint and forward this (priority) barrier through the chain.
    Snapshot(Barrier),
    /// Every channel delivered its marker or ended: store the recorded in-flight data and
    /// finish the checkpoint.
    Complete(u64),
    /// A newer checkpoint overtook this one before its markers were all in: drop its recording.
    Abort(u64),
}

#[derive(Debug, Clone, Copy, Default)]
struct Channel {
    ended: bool,
    recording: bool,
}

/// Pure bookkeeping of unaligned barriers over a subtask's input channels: when to snapshot,
/// which channels' records are in flight, when the checkpoint is complete.
#[derive(Debug, Clone)]
pub struct UnalignedGate {
    channels: Vec<Channel>,
    /// The newest checkpoint snapshotted (0: none).
    last: u64,
    /// The checkpoint whose in-flight records are being recorded.
    pending: Option<u64>,
}

impl UnalignedGate {
    /// A gate over `channels` input channels.
    pub fn new(channels: usize) -> Self {
        Self {
            channels: vec![Channel::default(); channels],
            last: 0,
            pending: None,
        }
    }

    /// True while records read from `channel` are in flight for the pending checkpoint.
    pub fn is_recording(&self, channel: usize) -> bool {
        self.channels.get(channel).is_some_and(|c| c.recording)
    }

    /// The checkpoint whose in-flight records are being recorded.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// A barrier (priority or marker) arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, barrier: Barrier) -> Vec<UnalignedAction> {
        let mut out = Vec::new();
        let id = barrier.checkpoint_id;
        if self.channels.get(channel).is_none_or(|c| c.ended) || id < self.last {
            // Stale: a barrier of a checkpoint a newer one superseded.
            return out;
        }
        if id > self.last {
            if let Some(old) = self.pending.take() {
                out.push(UnalignedAction::Abort(old));
            }
            self.last = id;
            self.pending = Some(id);
            for c in &mut self.channels {
                c.recording = !c.ended;
            }
            out.push(UnalignedAction::Snapshot(Barrier {
                priority: true,
                ..barrier
            }));
        }
        if self.pending == Some(id) && !barrier.priority {
            // The marker: everything this channel sent before the upstream snapshot was read.
            self.channels[channel].recording = false;
        }
        self.check_complete(&mut out);
        out
    }

    /// `channel` ended (end of partition or cancel): it has nothing more in flight.
    pub fn on_end(&mut self, channel: usize) -> Vec<UnalignedAction> {
        let mut out = Vec::new();
        if let Some(c) = self.channels.get_mut(channel) {
            c.ended = true;
            c.recording = false;
        }
        self.check_complete(&mut out);
        out
    }

    fn check_complete(&mut self, out: &mut Vec<UnalignedAction>) {
        if let Some(id) = self.pending
            && self.channels.iter().all(|c| !c.recording)
        {
            self.pending = None;
            out.push(UnalignedAction::Complete(id));
        }
    }
}

/// The runtime side: an [`UnalignedGate`] plus the in-flight records it says to keep.
pub struct InFlightLog<T> {
    gate: UnalignedGate,
    logs: Vec<Batch<T>>,
    /// Whether the pending checkpoint began in this subtask (the TaskManager knew it).
    began: bool,
}

impl<T: Data> InFlightLog<T> {
    /// A log over `channels` input channels.
    pub fn new(channels: usize) -> Self {
        Self {
            gate: UnalignedGate::new(channels),
            logs: (0..channels).map(|_| Vec::new()).collect(),
            began: false,
        }
    }

    /// True while records read from `channel` are in flight for a checkpoint this subtask began.
    pub fn is_recording(&self, channel: usize) -> bool {
        self.began && self.gate.is_recording(channel)
    }

    /// The checkpoint whose in-flight records are being recorded.
    pub fn pending(&self) -> Option<u64> {
        self.gate.pending()
    }

    /// A batch read from `channel` (before it is processed): kept if it is in flight.
    pub fn on_batch(&mut self, channel: usize, batch: &Batch<T>) {
        if self.began && self.gate.is_recording(channel) {
            self.logs[channel].extend_from_slice(batch);
        }
    }

    /// A barrier read from `channel`.
    pub fn on_barrier(
        &mut self,
        channel: usize,
        barrier: Barrier,
        head: &mut BoxEmitter<T>,
        ctx: &TaskContext,
    ) -> Result<()> {
        let actions = self.gate.on_barrier(channel, barrier);
        self.apply(actions, head, ctx)
    }

    /// `channel` ended.
    pub fn on_end(
        &mut self,
        channel: usize,
        head: &mut BoxEmitter<T>,
        ctx: &TaskContext,
    ) -> Result<()> {
        let actions = self.gate.on_end(channel);
        self.apply(actions, head, ctx)
    }

    fn apply(
        &mut self,
        actions: Vec<UnalignedAction>,
        head: &mut BoxEmitter<T>,
        ctx: &TaskContext,
    ) -> Result<()> {
        for action in actions {
            match action {
                UnalignedAction::Snapshot(barrier) => {
                    // The chain snapshots as the barrier passes through it; its outputs send
                    // the priority barrier and the marker downstream.
                    self.began = ctx.checkpoint.begin(barrier.checkpoint_id);
                    head.control(Control::Barrier(barrier))?;
                }
                UnalignedAction::Complete(id) => {
                    let began = std::mem::take(&mut self.began);
                    if began {
                        let ids = OperatorIds::of(ctx);
                        let mut records = 0;
                        for (i, log) in self.logs.iter_mut().enumerate() {
                            if log.is_empty() {
                                continue;
                            }
                            records += log.len();
                            let bytes = encode_vec(log).map_err(|e| EngineError::State {
                                operator: ids.id.clone(),
                                message: format!("cannot encode in-flight records: {e}"),
                            })?;
                            log.clear();
                            ctx.checkpoint.snapshot_operator(
                                &ids,
                                &format!("{IN_FLIGHT}{i}"),
                                bytes,
                            );
                        }
                        tracing::debug!(task = %ctx.task_name(), checkpoint = id, records, "unaligned checkpoint: in-flight records stored");
                        ctx.checkpoint.finish(id);
                    }
                    self.clear();
                }
                UnalignedAction::Abort(id) => {
                    tracing::warn!(task = %ctx.task_name(), checkpoint = id, "unaligned checkpoint superseded before its in-flight data was complete");
                    self.began = false;
                    self.clear();
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self) {
        for log in &mut self.logs {
            log.clear();
        }
    }
}

/// Replays the in-flight records a restored snapshot holds for this subtask into `head`,
/// before any channel is read. Fails with [`EngineError::State`] when the chain head was
/// snapshotted at another parallelism: in-flight records are per subtask and not redistributed.
pub fn replay_in_flight<T: Data>(head: &mut BoxEmitter<T>, ctx: &TaskContext) -> Result<()> {
    let ids = OperatorIds::of(ctx);
    let mut names: Vec<String> = ctx
        .checkpoint
        .restored_state_names(&ids.id)
        .into_iter()
        .filter(|n| n.starts_with(IN_FLIGHT))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    if let Some(p) = ctx.checkpoint.restored_parallelism(&ids.id)
        && p != ids.shape.parallelism
    {
        return Err(EngineError::State {
            operator: ids.id,
            message: format!(
                "the snapshot holds in-flight records of an unaligned checkpoint taken at \
                 parallelism {p}; they are not redistributed: restore at parallelism {p} (or \
                 from an aligned checkpoint or a savepoint)",
            ),
        });
    }
    names.sort();
    let mut records = 0;
    for name in &names {
        for (_, bytes) in ctx.checkpoint.restored_operator(&ids, name) {
            let batch: Batch<T> =
                decode_vec::<Rec<T>>(&bytes).map_err(|e| restore_error(&ids, name, e))?;
            records += batch.len();
            if !batch.is_empty() {
                head.batch(batch)?;
            }
        }
    }
    tracing::info!(task = %ctx.task_name(), records, "replayed in-flight records of an unaligned checkpoint");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::UnalignedAction::{Abort, Complete, Snapshot};
    use super::*;

    fn prio(id: u64) -> Barrier {
        Barrier {
            checkpoint_id: id,
            timestamp_ms: 7,
            priority: true,
        }
    }
    fn marker(id: u64) -> Barrier {
        Barrier::aligned(id, 7)
    }

    #[test]
    fn first_priority_barrier_snapshots_and_markers_end_recording_per_channel() {
        let mut g = UnalignedGate::new(3);
        assert!(!g.is_recording(0));
        assert_eq!(g.on_barrier(1, prio(1)), vec![Snapshot(prio(1))]);
        assert!((0..3).all(|c| g.is_recording(c)));
        // Later priority barriers of the same checkpoint only mark their channel.
        assert_eq!(g.on_barrier(0, prio(1)), vec![]);
        assert!(g.is_recording(0));
        assert_eq!(g.on_barrier(1, marker(1)), vec![]);
        assert!(!g.is_recording(1) && g.is_recording(0) && g.is_recording(2));
        assert_eq!(g.on_barrier(0, marker(1)), vec![]);
        assert_eq!(g.on_barrier(2, prio(1)), vec![]);
        assert_eq!(g.on_barrier(2, marker(1)), vec![Complete(1)]);
        assert_eq!(g.pending(), None);
        assert!((0..3).all(|c| !g.is_recording(c)));
    }

    #[test]
    fn a_marker_first_snapshots_with_nothing_in_flight_on_its_channel() {
        let mut g = UnalignedGate::new(1);
        assert_eq!(
            g.on_barrier(0, marker(4)),
            vec![Snapshot(prio(4)), Complete(4)]
        );
        let mut g = UnalignedGate::new(2);
        assert_eq!(g.on_barrier(0, marker(4)), vec![Snapshot(prio(4))]);
        assert!(!g.is_recording(0) && g.is_recording(1));
    }

    #[test]
    fn ended_channels_count_as_done() {
        let mut g = UnalignedGate::new(3);
        assert_eq!(g.on_end(2), vec![]);
        assert_eq!(g.on_barrier(0, prio(1)), vec![Snapshot(prio(1))]);
        assert!(!g.is_recording(2));
        assert_eq!(g.on_barrier(0, marker(1)), vec![]);
        // The last recording channel ends before its marker: complete.
        assert_eq!(g.on_end(1), vec![Complete(1)]);
        // A barrier on an ended channel is ignored.
        assert_eq!(g.on_barrier(2, prio(2)), vec![]);
    }

    #[test]
    fn a_newer_checkpoint_supersedes_the_pending_one() {
        let mut g = UnalignedGate::new(2);
        g.on_barrier(0, prio(1));
        g.on_barrier(0, marker(1));
        assert_eq!(g.on_barrier(0, prio(2)), vec![Abort(1), Snapshot(prio(2))]);
        assert!(g.is_recording(0) && g.is_recording(1));
        // Stale barriers of the aborted checkpoint change nothing.
        assert_eq!(g.on_barrier(1, prio(1)), vec![]);
        assert_eq!(g.on_barrier(1, marker(1)), vec![]);
        assert!(g.is_recording(1));
        assert_eq!(g.on_barrier(1, marker(2)), vec![]);
        assert_eq!(g.on_barrier(0, marker(2)), vec![Complete(2)]);
        // An out-of-range channel is ignored rather than a panic.
        assert_eq!(g.on_barrier(9, prio(3)), vec![]);
    }
}
