//! Exactly-once part files: a two-phase commit driven by checkpoints.
//!
//! Lines go to a hidden in-progress file. When a barrier passes, that file is closed and
//! renamed to a hidden *pending* name, and the list of pending files goes into the checkpoint.
//! When the checkpoint completes, its pending files are committed: renamed to their visible
//! `part-*` names. A restored subtask commits the pending files of the checkpoint it restores
//! (the notification may have been lost in the crash) and deletes the in-progress and pending
//! files of older attempts, which hold lines the restored job will write again.
//!
//! Every step is a rename within one directory, so it is atomic, and a commit is idempotent: a
//! pending file already renamed is found under its final name. The committed files therefore
//! hold exactly the lines of a run without failures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::checkpoint::codec::{decode_vec, encode_vec};
use crate::checkpoint::subtask::{OperatorIds, SubtaskCheckpoint, restore_error};
use crate::context::TaskContext;
use crate::error::{EngineError, Result};

/// Name of the pending files in a snapshot.
const PENDING: &str = "pending-files";

/// A closed part file waiting for its checkpoint: (checkpoint id, hidden name, final name).
type Pending = (u64, String, String);

struct Shared {
    dir: PathBuf,
    pending: Vec<Pending>,
}

/// The two-phase part files of one sink subtask.
pub struct TwoPhaseFiles {
    shared: Arc<Mutex<Shared>>,
    /// Prefix of this subtask's files: `part-<i>` (or `<sink>-part-<i>`).
    prefix: String,
    /// Distinguishes this attempt's files from those of earlier attempts.
    token: String,
    seq: u64,
    current: Option<(BufWriter<File>, PathBuf, String)>,
    checkpoint: SubtaskCheckpoint,
    op: OperatorIds,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |cause| EngineError::Output {
        path: path.to_path_buf(),
        cause,
    }
}

impl TwoPhaseFiles {
    /// Opens the part files of `ctx`'s subtask of sink `name` in `dir`: commits what the
    /// restored checkpoint left pending and removes what earlier attempts left unfinished.
    pub fn open(dir: &Path, name: &str, ctx: &TaskContext) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let prefix = if name == "output" {
            format!("part-{}", ctx.subtask)
        } else {
            format!("{name}-part-{}", ctx.subtask)
        };
        let base = prefix
            .trim_end_matches(&format!("-{}", ctx.subtask))
            .to_owned();
        let op = OperatorIds::of(ctx);
        let shared = Arc::new(Mutex::new(Shared {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
        }));
        // What the restored checkpoint covers is complete: commit it.
        let mut restored = Vec::new();
        for (_, bytes) in ctx.checkpoint.restored_operator(&op, PENDING) {
            restored
                .extend(decode_vec::<Pending>(&bytes).map_err(|e| restore_error(&op, PENDING, e))?);
        }
        for p in &restored {
            tracing::debug!(checkpoint = p.0, file = %p.2, "committing a restored pending file");
            commit_one(dir, p)?;
        }
        // Files of earlier attempts of this subtask (and, for subtask 0, of subtasks that no
        // longer exist after rescaling) that no completed checkpoint covers.
        let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
        for e in entries {
            let e = e.map_err(io_error(dir))?;
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix('.') else {
                continue;
            };
            if !(rest.ends_with(".inprogress") || rest.ends_with(".pending")) {
                continue;
            }
            let mine = rest.starts_with(&format!("{prefix}-"));
            let orphan = ctx.subtask == 0
                && rest
                    .strip_prefix(&format!("{base}-"))
                    .and_then(|r| r.split('-').next())
                    .and_then(|i| i.parse::<u32>().ok())
                    .is_some_and(|i| i >= ctx.parallelism);
            if mine || orphan {
                let path = dir.join(&file);
                tracing::debug!(file = %path.display(), "removing a part file of an earlier attempt");
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        let hook_shared = shared.clone();
        ctx.checkpoint
            .on_complete(move |id| commit_upto(&hook_shared, id));
        let token = format!("{:08x}", rand::random::<u32>());
        Ok(Self {
            shared,
            prefix,
            token,
            seq: 0,
            current: None,
            checkpoint: ctx.checkpoint.clone(),
            op,
        })
    }

    /// Appends bytes to the in-progress file (opened on first use).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.current.is_none() {
            let name = format!("{}-{}-{}", self.prefix, self.token, self.seq);
            self.seq += 1;
            let dir = self.shared.lock().dir.clone();
            let path = dir.join(format!(".{name}.inprogress"));
            let f = File::create(&path).map_err(io_error(&path))?;
            self.current = Some((BufWriter::with_capacity(1 << 16, f), path, name));
        }
        if let Some((w, path, _)) = &mut self.current {
            w.write_all(bytes).map_err(io_error(path))?;
        }
        Ok(())
    }

    /// Flushes the in-progress file's buffer (nothing becomes visible).
    pub fn flush(&mut self) -> Result<()> {
        if let Some((w, path, _)) = &mut self.current {
            w.flush().map_err(io_error(path))?;
        }
        Ok(())
    }

    /// A barrier of checkpoint `id` (or the end of input): the in-progress file becomes
    /// pending for it, and the pending list goes into the snapshot.
    pub fn seal(&mut self, id: u64) -> Result<()> {
        if let Some((w, path, name)) = self.current.take() {
            let f = w.into_inner().map_err(|e| EngineError::Output {
                path: path.clone(),
                cause: e.into_error(),
            })?;
            f.sync_all().map_err(io_error(&path))?;
            let pending = path.with_file_name(format!(".{name}.pending"));
            std::fs::rename(&path, &pending).map_err(io_error(&path))?;
            tracing::debug!(checkpoint = id, file = %name, "part file pending");
            self.shared
                .lock()
                .pending
                .push((id, format!(".{name}.pending"), name));
        }
        if id != crate::checkpoint::subtask::FINAL_CHECKPOINT {
            let list = self.shared.lock().pending.clone();
            let bytes = encode_vec(&list).map_err(|e| restore_error(&self.op, PENDING, e))?;
            self.checkpoint.snapshot_operator(&self.op, PENDING, bytes);
        }
        Ok(())
    }
}

/// Commits every pending file of checkpoints up to `id`.
fn commit_upto(shared: &Mutex<Shared>, id: u64) -> Result<()> {
    let mut s = shared.lock();
    let dir = s.dir.clone();
    let (due, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut s.pending)
        .into_iter()
        .partition(|p| p.0 <= id);
    s.pending = keep;
    drop(s);
    for p in &due {
        tracing::debug!(checkpoint = p.0, completed = id, file = %p.2, "committing a part file");
        commit_one(&dir, p)?;
    }
    Ok(())
}

/// Renames one pending file to its final name; done already is fine.
fn commit_one(dir: &Path, (_, hidden, name): &Pending) -> Result<()> {
    let from = dir.join(hidden);
    let to = dir.join(name);
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(()),
        Err(cause) => Err(EngineError::Output { path: from, cause }),
    }
}
