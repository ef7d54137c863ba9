//! Sinks that write one formatted line per record: stdout, part files, checksum, discard, and a
//! collector for tests. When the job checkpoints, part files are exactly-once
//! ([`two_phase`]); stdout and the checksum are at-least-once. Lines are formatted into one reused buffer per batch; files and stdout are
//! written through buffered writers and flushed on flush ticks and at the end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::checkpoint::subtask::FINAL_CHECKPOINT;
use crate::checksum::fnv1a64;
use crate::context::{JobMetrics, TaskContext};
use crate::element::{Batch, Control};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::{EngineError, Result};
use crate::stream::SinkSpec;

pub mod two_phase;
use two_phase::TwoPhaseFiles;

/// Formats a record as its output line (without newline).
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

enum Target {
    Stdout(StdoutLines),
    File(std::io::BufWriter<std::fs::File>, PathBuf),
    /// Exactly-once part files (the job checkpoints).
    Committing(TwoPhaseFiles),
    Checksum {
        sum: u64,
    },
    Discard,
    Collect(Arc<parking_lot::Mutex<Vec<String>>>),
}

/// The most bytes a pipe writes in one piece (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;

/// Lines bound for stdout, written in line-aligned chunks of at most [`PIPE_BUF`] bytes. The
/// TaskManagers of a local cluster share the CLI's stdout, and a pipe keeps a write of at most
/// `PIPE_BUF` bytes in one piece, so lines of different processes never interleave mid-line.
#[derive(Default)]
struct StdoutLines {
    buf: Vec<u8>,
}

impl StdoutLines {
    /// Appends one line (with its newline).
    fn push_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + line.len() > PIPE_BUF {
            self.flush()?;
        }
        self.buf.extend_from_slice(line);
        if self.buf.len() >= PIPE_BUF {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered, in one write of whole lines.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()?;
        self.buf.clear();
        Ok(())
    }
}

/// The error of a failed write to stdout: a closed pipe is not a failure of the job.
fn stdout_error(cause: std::io::Error) -> EngineError {
    if cause.kind() == std::io::ErrorKind::BrokenPipe {
        EngineError::OutputClosed
    } else {
        EngineError::Output {
            path: "stdout".into(),
            cause,
        }
    }
}

/// Writes lines to the configured target.
pub struct LineSink<T, F> {
    format: Arc<F>,
    target: Target,
    line: String,
    count: u64,
    metrics: Arc<JobMetrics>,
    _t: std::marker::PhantomData<fn(T)>,
}

/// Builds the line sink of one subtask for `spec`.
pub fn line_sink<T: Send + 'static, F: Fn(&T, &mut String) + Send + Sync + 'static>(
    spec: &SinkSpec,
    name: &str,
    format: Arc<F>,
    ctx: &TaskContext,
) -> Result<BoxEmitter<T>> {
    let target = match spec {
        SinkSpec::Print => Target::Stdout(StdoutLines::default()),
        SinkSpec::Files(dir) if ctx.checkpoint.enabled() => {
            Target::Committing(TwoPhaseFiles::open(dir, name, ctx)?)
        }
        SinkSpec::Files(dir) => {
            std::fs::create_dir_all(dir).map_err(|cause| EngineError::Output {
                path: dir.clone(),
                cause,
            })?;
            let file = if name == "output" {
                format!("part-{}", ctx.subtask)
            } else {
                format!("{name}-part-{}", ctx.subtask)
            };
            let path = dir.join(file);
            let f = std::fs::File::create(&path).map_err(|cause| EngineError::Output {
                path: path.clone(),
                cause,
            })?;
            Target::File(std::io::BufWriter::with_capacity(1 << 16, f), path)
        }
        SinkSpec::Checksum => Target::Checksum { sum: 0 },
        SinkSpec::Discard => Target::Discard,
        SinkSpec::Collect(v) => Target::Collect(v.clone()),
    };
    Ok(Box::new(LineSink {
        format,
        target,
        line: String::with_capacity(128),
        count: 0,
        metrics: ctx.metrics.clone(),
        _t: std::marker::PhantomData,
    }))
}

impl<T: Send, F: Fn(&T, &mut String) + Send + Sync> LineSink<T, F> {
    fn flush(&mut self) -> Result<()> {
        match &mut self.target {
            Target::Stdout(w) => w.flush().map_err(stdout_error),
            Target::File(w, p) => w.flush().map_err(|cause| EngineError::Output {
                path: p.clone(),
                cause,
            }),
            Target::Committing(files) => files.flush(),
            Target::Checksum { sum } => {
                self.metrics.checksum.fetch_add(*sum, Ordering::Relaxed);
                *sum = 0;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl<T: Send, F: Fn(&T, &mut String) + Send + Sync> Emitter<T> for LineSink<T, F> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let n = batch.len() as u64;
        let fmt = &*self.format;
        match &mut self.target {
            Target::Stdout(w) => {
                for r in &batch {
                    self.line.clear();
                    fmt(&r.value, &mut self.line);
                    self.line.push('\n');
                    w.push_line(self.line.as_bytes()).map_err(stdout_error)?;
                }
            }
            Target::File(w, p) => {
                for r in &batch {
                    self.line.clear();
                    fmt(&r.value, &mut self.line);
                    self.line.push('\n');
                    w.write_all(self.line.as_bytes())
                        .map_err(|cause| EngineError::Output {
                            path: p.clone(),
                            cause,
                        })?;
                }
            }
            Target::Committing(files) => {
                for r in &batch {
                    self.line.clear();
                    fmt(&r.value, &mut self.line);
                    self.line.push('\n');
                    files.write(self.line.as_bytes())?;
                }
            }
            Target::Checksum { sum } => {
                for r in &batch {
                    self.line.clear();
                    fmt(&r.value, &mut self.line);
                    *sum = sum.wrapping_add(fnv1a64(self.line.as_bytes()));
                }
            }
            Target::Discard => {}
            Target::Collect(v) => {
                let mut lines = Vec::with_capacity(batch.len());
                for r in &batch {
                    let mut s = String::new();
                    fmt(&r.value, &mut s);
                    lines.push(s);
                }
                v.lock().extend(lines);
            }
        }
        self.count += n;
        self.metrics.records_out.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match (&mut self.target, control) {
            // The part file written since the last barrier becomes pending: committed when
            // this checkpoint completes (or, at the end, when the job has finished).
            (Target::Committing(files), Control::Barrier(b)) => files.seal(b.checkpoint_id),
            (Target::Committing(files), Control::EndOfInput) => files.seal(FINAL_CHECKPOINT),
            (_, Control::Flush | Control::EndOfInput | Control::Barrier(_)) => self.flush(),
            _ => Ok(()),
        }
    }
}

impl<T, F> Drop for LineSink<T, F> {
    fn drop(&mut self) {
        // A cancelled job still leaves complete lines behind.
        match &mut self.target {
            Target::Stdout(w) => {
                let _ = w.flush();
            }
            Target::File(w, _) => {
                let _ = w.flush();
            }
            Target::Checksum { sum } => {
                self.metrics.checksum.fetch_add(*sum, Ordering::Relaxed);
                *sum = 0;
            }
            _ => {}
        }
    }
}
