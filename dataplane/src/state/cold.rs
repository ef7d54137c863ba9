//! The cold tier of the `mmap` state backend: an append-only log of rkyv archives in one
//! file-backed memory map per store.
//!
//! Why one file per store and not one per key group: a subtask owns up to hundreds of key
//! groups, and every file is grown (and prefaulted) in large steps, so per-key-group files would
//! reserve hundreds of steps for a handful of values each. Key groups stay separate in the
//! store's per-key-group indexes, which is all snapshots and rescaling need.
//!
//! The file is a sequence of chunks, each mapped on its own: growing appends a chunk (the first
//! step, doubled each time up to [`MAX_STEP`]) without remapping the others, so offsets handed out
//! stay valid. A new chunk is zero-filled through `write` before it is mapped, so the file
//! system has allocated its blocks (a full disk is an error here, not a `SIGBUS` on a later
//! store through the map), and mapped with `populate`, so appends do not fault page by page.
//!
//! A record is `[len: u32][crc32: u32][8 reserved bytes][archive]`, padded to 16 bytes: the
//! archive starts 16-byte aligned, so it is validated and read in place. The CRC catches damage
//! that still forms a valid archive (a flipped bit in a counter).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};

/// Largest step a file grows by.
pub const MAX_STEP: u64 = 1 << 30;
/// Record header: length, CRC-32 of the archive, reserved.
const HEADER: usize = 16;
/// Alignment of records (and so of archives).
const ALIGN: u64 = 16;
/// Chunks start at multiples of this (covers 4 KiB and 64 KiB pages).
const CHUNK_ALIGN: u64 = 64 * 1024;

/// Why the cold tier failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file could not be created, grown or mapped.
    #[error("cannot {action} state file '{path}': {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A record read back is not what was written (the file was damaged).
    #[error("corrupt state in '{path}' at offset {offset}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A value could not be serialized.
    #[error("cannot serialize a state value: {0}")]
    Encode(String),
    /// A record does not fit the format (a value larger than 4 GiB).
    #[error("a state value of {0} bytes is too large for the mmap state backend")]
    TooLarge(usize),
}

struct Chunk {
    /// Offset of the chunk in the file.
    start: u64,
    map: MmapMut,
}

/// An append-only log of records in a private, memory-mapped file, removed on drop.
pub struct ColdLog {
    path: PathBuf,
    file: File,
    chunks: Vec<Chunk>,
    /// Where the next record goes (file offset).
    end: u64,
    next_step: u64,
    /// Bytes of records still referenced.
    live: u64,
    /// Bytes of released records and chunk tails.
    dead: u64,
}

impl std::fmt::Debug for ColdLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdLog")
            .field("path", &self.path)
            .field("chunks", &self.chunks.len())
            .field("end", &self.end)
            .field("live", &self.live)
            .field("dead", &self.dead)
            .finish()
    }
}

/// Distinguishes the files of the stores of one process.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// Maps `len` bytes of `file` from `offset`, prefaulted.
fn map_chunk(file: &File, offset: u64, len: usize) -> std::io::Result<MmapMut> {
    // SAFETY: the file was created by this process with `create_new` under a unique name, is
    // private to the store that owns this `ColdLog` (never shared or reopened) and is not
    // truncated while mapped: the only other access is `grow` extending it past every mapped
    // chunk. No other process is expected to write a TaskManager's state directory.
    unsafe {
        MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map_mut(file)
    }
}

impl ColdLog {
    /// A new, empty log in `dir` (created if missing), its name starting with `name`; the file
    /// first grows by `first_step` bytes.
    pub fn create(dir: &Path, name: &str, first_step: u64) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            action: "create the directory of",
            path: dir.to_path_buf(),
            source,
        })?;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!(
            "{safe}-{}-{}.state",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        tracing::debug!(path = %path.display(), "created a cold state file");
        Ok(Self {
            path,
            file,
            chunks: Vec::new(),
            end: 0,
            next_step: first_step.next_multiple_of(CHUNK_ALIGN).max(CHUNK_ALIGN),
            live: 0,
            dead: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file (the sum of the steps it grew by).
    pub fn file_len(&self) -> u64 {
        self.chunks
            .last()
            .map_or(0, |c| c.start + c.map.len() as u64)
    }

    /// Bytes of records still referenced.
    pub fn live_bytes(&self) -> u64 {
        self.live
    }

    /// Bytes no record references any more.
    pub fn dead_bytes(&self) -> u64 {
        self.dead
    }

    /// The first step of a file that grows like this one (for its compacted successor).
    pub fn first_step(&self) -> u64 {
        self.chunks
            .first()
            .map_or(self.next_step, |c| c.map.len() as u64)
    }

    fn record_len(archive: usize) -> u64 {
        (HEADER as u64 + archive as u64).next_multiple_of(ALIGN)
    }

    /// Appends one archive; returns the record's offset.
    pub fn append(&mut self, archive: &[u8]) -> Result<u64, StateError> {
        let len = u32::try_from(archive.len()).map_err(|_| StateError::TooLarge(archive.len()))?;
        let need = Self::record_len(archive.len());
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| self.end + need <= c.start + c.map.len() as u64);
        if !fits {
            self.grow(need)?;
        }
        let off = self.end;
        let Some(chunk) = self.chunks.last_mut() else {
            return Err(self.corrupt(off, "no chunk after growing"));
        };
        let at = (off - chunk.start) as usize;
        let rec = &mut chunk.map[at..at + need as usize];
        rec[0..4].copy_from_slice(&len.to_le_bytes());
        rec[4..8].copy_from_slice(&crc32fast::hash(archive).to_le_bytes());
        rec[8..HEADER].fill(0);
        rec[HEADER..HEADER + archive.len()].copy_from_slice(archive);
        self.end += need;
        self.live += need;
        Ok(off)
    }

    /// Adds a chunk that holds at least `need` bytes.
    fn grow(&mut self, need: u64) -> Result<(), StateError> {
        if let Some(c) = self.chunks.last() {
            // The tail of the full chunk is never used.
            self.dead += c.start + c.map.len() as u64 - self.end;
        }
        let start = self.file_len();
        let step = self.next_step.max(need.next_multiple_of(CHUNK_ALIGN));
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        let len = usize::try_from(step).map_err(|_| StateError::TooLarge(usize::MAX))?;
        self.file
            .set_len(start + step)
            .map_err(io("grow", &self.path))?;
        // Allocates the blocks now: a full disk fails here rather than faulting in a store.
        self.file
            .seek(SeekFrom::Start(start))
            .map_err(io("grow", &self.path))?;
        let zeros = vec![0u8; (1 << 20).min(len)];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len());
            self.file
                .write_all(&zeros[..n])
                .map_err(io("grow", &self.path))?;
            left -= n;
        }
        let map = map_chunk(&self.file, start, len).map_err(io("map", &self.path))?;
        tracing::debug!(path = %self.path.display(), start, step, "cold state file grew");
        self.chunks.push(Chunk { start, map });
        self.end = start;
        self.next_step = (step * 2).min(MAX_STEP.max(step));
        Ok(())
    }

    /// A corruption error about the record at `offset`.
    pub fn corrupt(&self, offset: u64, why: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            offset,
            why: why.into(),
        }
    }

    /// The archive of the record at `off`, checked against its CRC; 16-byte aligned.
    pub fn read(&self, off: u64) -> Result<&[u8], StateError> {
        let i = self.chunks.partition_point(|c| c.start <= off);
        let Some(chunk) = i.checked_sub(1).and_then(|i| self.chunks.get(i)) else {
            return Err(self.corrupt(off, "offset outside the file"));
        };
        let at = (off - chunk.start) as usize;
        let Some(header) = chunk.map.get(at..at + HEADER) else {
            return Err(self.corrupt(off, "header outside the file"));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(archive) = chunk.map.get(at + HEADER..at + HEADER + len) else {
            return Err(self.corrupt(off, format!("a record of {len} bytes overruns the file")));
        };
        if crc32fast::hash(archive) != crc {
            return Err(self.corrupt(off, "checksum mismatch"));
        }
        Ok(archive)
    }

    /// The record at `off` is no longer referenced.
    pub fn release(&mut self, off: u64) -> Result<(), StateError> {
        let len = self.read(off)?.len();
        let n = Self::record_len(len);
        self.live = self.live.saturating_sub(n);
        self.dead += n;
        Ok(())
    }

    /// Flips the bits of `len` bytes at file offset `off` (tests of corruption handling).
    #[cfg(test)]
    pub fn damage(&mut self, off: u64, len: usize) {
        for c in &mut self.chunks {
            let range = c.start..c.start + c.map.len() as u64;
            for o in off..off + len as u64 {
                if range.contains(&o) {
                    c.map[(o - c.start) as usize] ^= 0xff;
                }
            }
        }
    }
}

impl Drop for ColdLog {
    fn drop(&mut self) {
        // Unmap before removing (required on some platforms, tidy everywhere).
        self.chunks.clear();
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a cold state file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ColdLog::create(dir.path(), "t/../x", 1).unwrap();
        assert!(log.path().starts_with(dir.path()));
        let mut offs = Vec::new();
        for i in 0..20_000u32 {
            let bytes = vec![(i % 251) as u8; (i % 40) as usize];
            offs.push((log.append(&bytes).unwrap(), bytes));
        }
        for (off, bytes) in &offs {
            let got = log.read(*off).unwrap();
            assert_eq!(got, &bytes[..]);
            assert_eq!(got.as_ptr() as usize % 16, 0);
        }
        // 64 KiB, 128 KiB, 256 KiB, ...: each step doubles.
        let mut expected = 0;
        let mut step = CHUNK_ALIGN;
        while expected < log.file_len() {
            expected += step;
            step *= 2;
        }
        assert_eq!(log.file_len(), expected);
        assert!(log.chunks.len() >= 3);
        log.release(offs[0].0).unwrap();
        assert!(log.dead_bytes() > 0);
        let path = log.path().to_path_buf();
        drop(log);
        assert!(!path.exists());
    }

    #[test]
    fn damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ColdLog::create(dir.path(), "t", 1).unwrap();
        let off = log.append(b"0123456789").unwrap();
        log.damage(off + HEADER as u64 + 3, 1);
        assert!(matches!(log.read(off), Err(StateError::Corrupt { .. })));
        log.damage(off, 2);
        assert!(matches!(log.read(off), Err(StateError::Corrupt { .. })));
        assert!(matches!(log.read(1 << 40), Err(StateError::Corrupt { .. })));
    }
}
