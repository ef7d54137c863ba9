//! Task execution: one thread per subtask, a mailbox through which control messages reach it
//! while it runs, and a panic turned into a subtask failure.
//!
//! A running subtask owns its input channels and its chain of operators; nothing else may touch
//! them. Whoever supervises it (the local runtime, a TaskManager) talks to it only through its
//! [`MailboxSender`]: cancel now, or (for sources) start checkpoint `n` by injecting a barrier.
//! Posting mail wakes a subtask parked in its input loop.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::subtask::SubtaskCheckpoint;
use crate::element::Barrier;
use crate::error::{EngineError, Result};
use crate::plan::SubtaskId;
use crate::runtime::channel::{InputParker, InputWaker};

/// A control message for one running subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMail {
    /// Stop now (the subtask ends with [`EngineError::Cancelled`]).
    Cancel,
    /// Start a checkpoint: a source emits this barrier after the records it emitted so far.
    TriggerCheckpoint(Barrier),
    /// A checkpoint completed: two-phase-commit sinks commit what it covers.
    CheckpointComplete {
        /// The checkpoint.
        checkpoint_id: u64,
        /// The job's final checkpoint: sources waiting for it end their streams.
        end_of_input: bool,
    },
}

/// The subtask's side of its mailbox.
pub struct Mailbox {
    rx: Receiver<TaskMail>,
}

impl Mailbox {
    /// The next message, if any; never blocks.
    #[inline]
    pub fn try_next(&self) -> Option<TaskMail> {
        self.rx.try_recv().ok()
    }

    /// The next message, waiting at most `timeout` for one.
    pub fn next_within(&self, timeout: std::time::Duration) -> Option<TaskMail> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// Posts to one subtask's mailbox. Cheap to clone.
#[derive(Clone)]
pub struct MailboxSender {
    tx: Sender<TaskMail>,
    waker: InputWaker,
}

impl MailboxSender {
    /// Delivers `mail` and wakes the subtask. A subtask that already ended ignores it.
    pub fn post(&self, mail: TaskMail) {
        if self.tx.send(mail).is_ok() {
            self.waker.wake();
        }
    }
}

/// What a subtask's thread owns besides its operators: the parker its input loop sleeps on and
/// its mailbox.
pub struct SubtaskIo {
    /// Where the input loop sleeps while no channel has data.
    pub parker: InputParker,
    /// Control messages from the supervisor.
    pub mailbox: Mailbox,
}

/// A subtask's I/O, the waker its input channels must wake, and the sender of its mailbox.
pub fn subtask_io() -> (SubtaskIo, InputWaker, MailboxSender) {
    let (parker, waker) = InputParker::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mail = MailboxSender {
        tx,
        waker: waker.clone(),
    };
    (
        SubtaskIo {
            parker,
            mailbox: Mailbox { rx },
        },
        waker,
        mail,
    )
}

/// A built subtask, ready to run on a thread.
pub struct SubtaskRunner {
    pub(crate) id: SubtaskId,
    pub(crate) name: String,
    pub(crate) run: Box<dyn FnOnce(SubtaskIo) -> Result<()> + Send>,
    pub(crate) io: SubtaskIo,
    pub(crate) mail: MailboxSender,
    pub(crate) checkpoint: SubtaskCheckpoint,
}

impl SubtaskRunner {
    /// `chain-head-name (i/p)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which subtask of the plan this is.
    pub fn id(&self) -> SubtaskId {
        self.id
    }

    /// Its checkpointing (outlives the subtask's thread: a finished sink still commits).
    pub fn checkpoint(&self) -> SubtaskCheckpoint {
        self.checkpoint.clone()
    }

    /// Runs the subtask to completion on the current thread.
    pub fn run(self) -> Result<()> {
        (self.run)(self.io)
    }
}

/// A subtask running on its own thread.
pub struct RunningSubtask {
    /// Which subtask.
    pub id: SubtaskId,
    /// `chain-head-name (i/p)`.
    pub name: String,
    mail: MailboxSender,
    thread: JoinHandle<Result<()>>,
}

impl RunningSubtask {
    /// Posts a control message to the subtask.
    pub fn post(&self, mail: TaskMail) {
        self.mail.post(mail);
    }

    /// A handle on the subtask's mailbox that outlives this value.
    pub fn mailbox(&self) -> MailboxSender {
        self.mail.clone()
    }

    /// True once the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the subtask; its result (a panic was already turned into a failure).
    pub fn join(self) -> Result<()> {
        self.thread.join().unwrap_or_else(|panic| {
            Err(EngineError::TaskFailed {
                task: self.name,
                message: panic_message(&*panic),
            })
        })
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Starts `runner` on a thread of its own. `on_exit` runs on that thread with the subtask's
/// result as soon as it ends (before anyone joins it), so a supervisor can react to a failure at
/// once, e.g. by cancelling the other subtasks.
pub fn spawn_subtask(
    runner: SubtaskRunner,
    on_exit: impl FnOnce(SubtaskId, &str, &Result<()>) + Send + 'static,
) -> Result<RunningSubtask> {
    let name = runner.name.clone();
    let id = runner.id;
    let mail = runner.mail.clone();
    let task = name.clone();
    let thread_name: String = name.chars().take(15).collect();
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // A panic in user code fails the subtask instead of leaving its peers waiting.
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run()))
                .unwrap_or_else(|panic| {
                    Err(EngineError::TaskFailed {
                        task: task.clone(),
                        message: format!("panicked: {}", panic_message(&*panic)),
                    })
                });
            on_exit(id, &task, &res);
            res
        })
        .map_err(|e| EngineError::TaskFailed {
            task: name.clone(),
            message: format!("cannot start thread: {e}"),
        })?;
    Ok(RunningSubtask {
        id,
        name,
        mail,
        thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn runner(run: impl FnOnce(SubtaskIo) -> Result<()> + Send + 'static) -> SubtaskRunner {
        let (io, _waker, mail) = subtask_io();
        SubtaskRunner {
            id: SubtaskId { chain: 0, index: 3 },
            name: "op (4/4)".into(),
            run: Box::new(run),
            io,
            mail,
            checkpoint: SubtaskCheckpoint::disabled(),
        }
    }

    #[test]
    fn a_panic_becomes_a_failure_reported_on_exit() {
        let (tx, rx) = mpsc::channel();
        let running = spawn_subtask(runner(|_| panic!("boom")), move |id, name, res| {
            let _ = tx.send((id, name.to_string(), format!("{res:?}")));
        })
        .unwrap();
        let (id, name, res) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(id, SubtaskId { chain: 0, index: 3 });
        assert_eq!(name, "op (4/4)");
        assert!(res.contains("panicked: boom"), "{res}");
        assert!(matches!(
            running.join(),
            Err(EngineError::TaskFailed { .. })
        ));
    }

    #[test]
    fn mail_wakes_a_parked_subtask_and_cancels_it() {
        let running = spawn_subtask(
            runner(|io| {
                loop {
                    if let Some(TaskMail::Cancel) = io.mailbox.try_next() {
                        return Err(EngineError::Cancelled);
                    }
                    // Parks far longer than the test waits: only the mail's wake-up ends it.
                    io.parker.park_timeout(Duration::from_secs(600));
                }
            }),
            |_, _, _| {},
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        running.post(TaskMail::Cancel);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(running.join(), Err(EngineError::Cancelled)));
    }
}
