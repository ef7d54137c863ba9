//! The source interface and the loop that drives a source subtask.

use std::time::{Duration, Instant};

use crate::checkpoint::subtask::OperatorIds;
use crate::context::{TaskContext, wall_clock_ms};
use crate::element::{Batch, Control, MAX_WATERMARK};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::{EngineError, Result};
use crate::runtime::task::{Mailbox, TaskMail};

/// What a source says after it was polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// More records are ready; poll again.
    More,
    /// Nothing before this much time has passed (rate limit, or waiting for input).
    Wait(Duration),
    /// The source is exhausted (bounded input).
    Finished,
}

/// A parallel source instance: fills batches.
pub trait Source<T>: Send {
    /// Appends up to `max` records to `out`.
    fn poll(&mut self, out: &mut Batch<T>, max: usize) -> Result<SourcePoll>;

    /// Where the source is, as bytes: what a checkpoint stores so that a restored job resumes
    /// right after the last record emitted before the barrier. `None`: the source cannot
    /// rewind (a restored job starts it from the beginning).
    fn position(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Resumes from the positions a checkpoint stored: `(snapshotted subtask, bytes)` of every
    /// earlier instance this one takes over (its own when the parallelism is unchanged).
    fn rewind(&mut self, positions: Vec<(u32, Vec<u8>)>) -> Result<()> {
        let _ = positions;
        Ok(())
    }

    /// Resumes after a rescale: `positions` are those of all `old_parallelism` earlier
    /// instances, and this instance must emit exactly its share of what none of them emitted.
    /// Sources that cannot say so refuse.
    fn rewind_rescaled(
        &mut self,
        old_parallelism: u32,
        positions: Vec<(u32, Vec<u8>)>,
    ) -> Result<()> {
        let _ = positions;
        Err(EngineError::InvalidArgument(format!(
            "this source cannot be restored at another parallelism than {old_parallelism}"
        )))
    }
}

/// A runnable source subtask (type-erased for the runtime).
pub trait SourceTask: Send {
    /// Runs until the source finishes or the job is cancelled; reads control messages (cancel,
    /// checkpoint triggers) from `mailbox` between batches.
    fn run(&mut self, mailbox: &Mailbox) -> Result<()>;
}

/// Polls a source, pushes its batches into the chain, ticks processing time, and ends the
/// stream with the final watermark and end of input.
pub struct SourceDriver<T, S> {
    source: S,
    out: BoxEmitter<T>,
    ctx: TaskContext,
}

impl<T, S> SourceDriver<T, S> {
    /// Drives `source` into `out`.
    pub fn new(source: S, out: BoxEmitter<T>, ctx: TaskContext) -> Self {
        Self { source, out, ctx }
    }
}

impl<T: Send, S: Source<T>> SourceDriver<T, S> {
    /// Rewinds the source to its restored position, if the job was restored.
    fn restore(&mut self) -> Result<()> {
        let ids = OperatorIds::of(&self.ctx);
        if self.ctx.checkpoint.restored_from().is_none() {
            return Ok(());
        }
        let rescaled = self
            .ctx
            .checkpoint
            .restored_parallelism(&ids.id)
            .filter(|p| *p != ids.shape.parallelism);
        match rescaled {
            Some(old) => {
                let all = self.ctx.checkpoint.restored_operator_all(&ids.id, POSITION);
                self.source
                    .rewind_rescaled(old, all)
                    .map_err(|e| EngineError::State {
                        operator: ids.id.clone(),
                        message: format!("cannot rescale from parallelism {old}: {e}"),
                    })
            }
            None => {
                let positions = self.ctx.checkpoint.restored_operator(&ids, POSITION);
                if positions.is_empty() {
                    return Ok(());
                }
                self.source.rewind(positions)
            }
        }
    }

    /// Starts checkpoint `barrier`: the position after the records emitted so far, then the
    /// barrier downstream.
    fn checkpoint(&mut self, mut barrier: crate::element::Barrier) -> Result<()> {
        // Unaligned: the barrier leaves as a priority event that overtakes queued data.
        barrier.priority = self.ctx.config.unaligned_checkpoints;
        let id = barrier.checkpoint_id;
        let began = self.ctx.checkpoint.begin(id);
        if began && let Some(position) = self.source.position()? {
            let ids = OperatorIds::of(&self.ctx);
            self.ctx
                .checkpoint
                .snapshot_operator(&ids, POSITION, position);
        }
        self.out.control(Control::Barrier(barrier))?;
        if began {
            self.ctx.checkpoint.finish(id);
        }
        Ok(())
    }
}

impl<T: Send, S: Source<T>> SourceDriver<T, S> {
    /// After the last record and the final watermark: takes part in checkpoints (its position
    /// now the end) until the job's final one completes, the one taken after every source
    /// ended. Only then does the stream end, so what the sinks wrote last is committed by a
    /// checkpoint a restart would resume from, never lost in between (Flink's final
    /// checkpoint).
    fn await_final_checkpoint(&mut self, mailbox: &Mailbox) -> Result<()> {
        loop {
            if self.ctx.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            match mailbox.next_within(Duration::from_millis(50)) {
                None => {}
                Some(TaskMail::Cancel) => return Err(EngineError::Cancelled),
                Some(TaskMail::TriggerCheckpoint(barrier)) => {
                    self.checkpoint(barrier)?;
                    self.out.control(Control::Flush)?;
                }
                Some(TaskMail::CheckpointComplete {
                    checkpoint_id,
                    end_of_input,
                }) => {
                    self.ctx.checkpoint.notify_complete(checkpoint_id)?;
                    if end_of_input {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Name of a source's position in a snapshot.
const POSITION: &str = "position";

impl<T: Send, S: Source<T>> SourceTask for SourceDriver<T, S> {
    fn run(&mut self, mailbox: &Mailbox) -> Result<()> {
        self.restore()?;
        let tick = Duration::from_millis(self.ctx.config.buffer_timeout_ms.max(1));
        let batch_size = self.ctx.config.batch_size.max(1);
        self.out.control(Control::ProcessingTime(wall_clock_ms()))?;
        let mut next_tick = Instant::now() + tick;
        loop {
            if self.ctx.cancel.is_cancelled() {
                let _ = self.out.control(Control::Flush);
                return Err(EngineError::Cancelled);
            }
            while let Some(mail) = mailbox.try_next() {
                match mail {
                    TaskMail::Cancel => {
                        let _ = self.out.control(Control::Flush);
                        return Err(EngineError::Cancelled);
                    }
                    // Sources start checkpoints: the barrier follows the records emitted so far.
                    TaskMail::TriggerCheckpoint(barrier) => self.checkpoint(barrier)?,
                    TaskMail::CheckpointComplete { checkpoint_id, .. } => {
                        self.ctx.checkpoint.notify_complete(checkpoint_id)?
                    }
                }
            }
            let mut batch = Vec::with_capacity(batch_size);
            let poll = self.source.poll(&mut batch, batch_size)?;
            if !batch.is_empty() {
                self.ctx
                    .metrics
                    .records_in
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                self.out.batch(batch)?;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.out.control(Control::ProcessingTime(wall_clock_ms()))?;
                self.out.control(Control::Flush)?;
                next_tick = now + tick;
            }
            match poll {
                SourcePoll::More => {}
                SourcePoll::Wait(d) => {
                    self.out.control(Control::Flush)?;
                    std::thread::sleep(d.min(tick));
                }
                SourcePoll::Finished => {
                    self.out.control(Control::ProcessingTime(wall_clock_ms()))?;
                    self.out.control(Control::Watermark(MAX_WATERMARK))?;
                    self.out.control(Control::Flush)?;
                    if self.ctx.checkpoint.input_ended() {
                        self.await_final_checkpoint(mailbox)?;
                    }
                    self.out.control(Control::EndOfInput)?;
                    self.out.control(Control::Flush)?;
                    return Ok(());
                }
            }
        }
    }
}

/// A source over an in-memory vector, split across subtasks round robin; for tests and examples.
pub struct VecSource<T> {
    items: std::vec::IntoIter<crate::element::Rec<T>>,
}

impl<T: Clone> VecSource<T> {
    /// The share of `items` subtask `index` of `parallelism` emits (`index, index + p, ...`).
    pub fn new(items: &[crate::element::Rec<T>], index: u32, parallelism: u32) -> Self {
        let mine: Vec<_> = items
            .iter()
            .skip(index as usize)
            .step_by(parallelism.max(1) as usize)
            .cloned()
            .collect();
        Self {
            items: mine.into_iter(),
        }
    }
}

impl<T: Send> Source<T> for VecSource<T> {
    fn poll(&mut self, out: &mut Batch<T>, max: usize) -> Result<SourcePoll> {
        out.extend(self.items.by_ref().take(max));
        Ok(if self.items.len() == 0 {
            SourcePoll::Finished
        } else {
            SourcePoll::More
        })
    }
}
