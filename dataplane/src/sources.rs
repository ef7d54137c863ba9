//! Source operators: generated streams (pure functions of an index, split across subtasks as
//! `i, i + p, i + 2p, ...`, count-bounded or unbounded, at full speed or rate-limited) and text
//! files or directories read as lines (split into byte ranges across subtasks).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::checkpoint::codec::{decode_vec, encode_vec};
use crate::context::{JobMetrics, TaskContext};
use crate::element::{Batch, Rec};
use crate::error::{EngineError, Result};
use crate::source::{Source, SourcePoll};

/// How many indices a generated source covers, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorBounds {
    /// Number of indices over all subtasks; `None` is unbounded.
    pub events: Option<u64>,
    /// Indices per second over all subtasks; `0` is as fast as possible.
    pub rate: u64,
}

/// A source over `generate(index)` for this subtask's share of the index space. Indices for
/// which `generate` returns `None` are skipped (a bid-only query over Nexmark events).
pub struct GeneratorSource<G> {
    generate: G,
    next: u64,
    step: u64,
    end: u64,
    /// Indices emitted before the job was rescaled, which this subtask must skip (see
    /// [`Emitted`]); empty unless it was restored at another parallelism.
    emitted_before: Vec<Emitted>,
    /// No index at or above this was emitted before the rescale.
    skip_below: u64,
    rate_per_subtask: f64,
    started: Option<Instant>,
    produced: u64,
    unthrottled_below: u64,
}

impl<G> GeneratorSource<G> {
    /// The share of subtask `ctx.subtask` of `ctx.parallelism`.
    pub fn new(generate: G, bounds: GeneratorBounds, ctx: &TaskContext) -> Self {
        let p = u64::from(ctx.parallelism.max(1));
        Self {
            generate,
            next: u64::from(ctx.subtask),
            step: p,
            end: bounds.events.unwrap_or(u64::MAX),
            emitted_before: Vec::new(),
            skip_below: 0,
            rate_per_subtask: bounds.rate as f64 / p as f64,
            started: None,
            produced: 0,
            unthrottled_below: 0,
        }
    }

    /// Indices below `index` are produced as fast as possible; the rate applies from `index`
    /// on (a state-loading prefix before a paced stream), its clock starting there.
    #[must_use]
    pub fn unthrottled_below(mut self, index: u64) -> Self {
        self.unthrottled_below = index;
        self
    }
}

impl<T: Send, G: FnMut(u64) -> Option<T> + Send> Source<T> for GeneratorSource<G> {
    fn poll(&mut self, out: &mut Batch<T>, max: usize) -> Result<SourcePoll> {
        let mut budget = max as u64;
        let unthrottled = self.next < self.unthrottled_below;
        if unthrottled {
            // Not beyond the prefix: the paced part starts on a poll of its own.
            let left = (self.unthrottled_below - self.next).div_ceil(self.step);
            budget = budget.min(left);
        } else if self.rate_per_subtask > 0.0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * self.rate_per_subtask) as u64 + 1;
            if self.produced >= allowed {
                let wait = (self.produced + 1) as f64 / self.rate_per_subtask
                    - started.elapsed().as_secs_f64();
                return Ok(SourcePoll::Wait(Duration::from_secs_f64(
                    wait.clamp(0.0005, 0.1),
                )));
            }
            budget = budget.min(allowed - self.produced);
        }
        let mut taken = 0;
        while taken < budget && self.next < self.end {
            let i = self.next;
            self.next = self.next.saturating_add(self.step);
            taken += 1;
            if i < self.skip_below && self.emitted_before.iter().any(|e| e.contains(i)) {
                continue;
            }
            if let Some(v) = (self.generate)(i) {
                out.push(Rec::untimed(v));
            }
        }
        if !unthrottled {
            self.produced += taken;
        }
        Ok(if self.next >= self.end {
            SourcePoll::Finished
        } else {
            SourcePoll::More
        })
    }

    fn position(&self) -> Result<Option<Vec<u8>>> {
        // What was emitted before a rescale stops mattering once this subtask is past it.
        let before: Vec<(u64, Vec<u64>)> = if self.next < self.skip_below {
            self.emitted_before
                .iter()
                .map(|e| (e.modulus, e.frontiers.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let position = GeneratorPosition {
            next: self.next,
            step: self.step,
            before,
        };
        encode_vec(std::slice::from_ref(&position))
            .map(Some)
            .map_err(|e| EngineError::InvalidArgument(format!("generator position: {e}")))
    }

    fn rewind(&mut self, positions: Vec<(u32, Vec<u8>)>) -> Result<()> {
        let [(_, bytes)] = positions.as_slice() else {
            return Err(EngineError::InvalidArgument(format!(
                "a generator subtask resumes from exactly one position, got {}",
                positions.len()
            )));
        };
        let p = GeneratorPosition::decode(bytes)?;
        if p.step != self.step || p.next % self.step != self.next % self.step {
            return Err(EngineError::InvalidArgument(format!(
                "generator position {} (every {}th index) belongs to another subtask",
                p.next, p.step
            )));
        }
        self.next = p.next;
        self.set_emitted_before(p.before.into_iter().map(Emitted::from).collect());
        Ok(())
    }

    fn rewind_rescaled(
        &mut self,
        old_parallelism: u32,
        positions: Vec<(u32, Vec<u8>)>,
    ) -> Result<()> {
        let mut frontiers = vec![None; old_parallelism as usize];
        let mut before = Vec::new();
        for (j, bytes) in positions {
            let p = GeneratorPosition::decode(&bytes)?;
            let slot = frontiers.get_mut(j as usize).ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "position of subtask {j} of a generator with parallelism {old_parallelism}"
                ))
            })?;
            *slot = Some(p.next);
            before.extend(p.before.into_iter().map(Emitted::from));
        }
        let frontiers = frontiers
            .into_iter()
            .enumerate()
            .map(|(j, f)| {
                f.ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "the snapshot has no position of generator subtask {j}"
                    ))
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        before.push(Emitted {
            modulus: u64::from(old_parallelism),
            frontiers,
        });
        before.sort_by(|a, b| (a.modulus, &a.frontiers).cmp(&(b.modulus, &b.frontiers)));
        before.dedup();
        self.set_emitted_before(before);
        Ok(())
    }
}

impl<G> GeneratorSource<G> {
    fn set_emitted_before(&mut self, before: Vec<Emitted>) {
        self.skip_below = before
            .iter()
            .flat_map(|e| e.frontiers.iter().copied())
            .max()
            .unwrap_or(0);
        self.emitted_before = before;
    }
}

/// Indices a generator emitted at an earlier parallelism `modulus`: subtask `j` had emitted
/// every index `i` with `i % modulus == j` below `frontiers[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Emitted {
    modulus: u64,
    frontiers: Vec<u64>,
}

impl Emitted {
    #[inline]
    fn contains(&self, i: u64) -> bool {
        self.frontiers
            .get((i % self.modulus) as usize)
            .is_some_and(|f| i < *f)
    }
}

impl From<(u64, Vec<u64>)> for Emitted {
    fn from((modulus, frontiers): (u64, Vec<u64>)) -> Self {
        Self {
            modulus: modulus.max(1),
            frontiers,
        }
    }
}

/// A generator subtask's position in a checkpoint.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct GeneratorPosition {
    /// The next index it emits.
    next: u64,
    /// Its stride (the parallelism it ran at).
    step: u64,
    /// What was emitted before an earlier rescale, while it still matters.
    before: Vec<(u64, Vec<u64>)>,
}

impl GeneratorPosition {
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut v = decode_vec::<GeneratorPosition>(bytes)
            .map_err(|e| EngineError::InvalidArgument(format!("generator position: {e}")))?;
        match (v.pop(), v.is_empty()) {
            (Some(p), true) if p.step > 0 => Ok(p),
            _ => Err(EngineError::InvalidArgument(
                "a generator position holds exactly one entry with a stride".into(),
            )),
        }
    }
}

/// One byte range of one file: the unit a text source subtask reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSplit {
    /// File to read.
    pub path: PathBuf,
    /// First byte; a line that starts before it belongs to the previous split.
    pub start: u64,
    /// A line that starts at or after this byte belongs to the next split.
    pub end: u64,
}

/// Size of a split of a large file.
pub const SPLIT_BYTES: u64 = 32 << 20;

/// Lists the files of `path` (a file, or a directory whose regular non-hidden files are read in
/// name order) and cuts them into splits. A missing path is an error naming it.
pub fn file_splits(path: &Path) -> Result<Vec<FileSplit>> {
    let meta = std::fs::metadata(path).map_err(|cause| EngineError::Input {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|cause| EngineError::Input {
            path: path.to_path_buf(),
            cause,
        })?;
        for e in entries {
            let e = e.map_err(|cause| EngineError::Input {
                path: path.to_path_buf(),
                cause,
            })?;
            let name = e.file_name();
            let hidden = name.to_string_lossy().starts_with('.');
            let p = e.path();
            if !hidden && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut splits = Vec::new();
    for f in files {
        let len = std::fs::metadata(&f)
            .map_err(|cause| EngineError::Input {
                path: f.clone(),
                cause,
            })?
            .len();
        let mut start = 0;
        loop {
            let end = (start + SPLIT_BYTES).min(len);
            splits.push(FileSplit {
                path: f.clone(),
                start,
                end,
            });
            if end >= len {
                break;
            }
            start = end;
        }
    }
    Ok(splits)
}

/// Reads the lines of its splits (split `j` goes to subtask `j % p`). Lines that are not valid
/// UTF-8 are counted, skipped and warned about.
pub struct TextFileSource {
    splits: std::vec::IntoIter<FileSplit>,
    /// Splits of this subtask taken so far (the current one included).
    taken: u64,
    current: Option<(BufReader<File>, u64, u64, PathBuf)>,
    line_number: u64,
    buf: Vec<u8>,
    metrics: Arc<JobMetrics>,
    skipped: u64,
}

impl TextFileSource {
    /// This subtask's share of `splits`.
    pub fn new(splits: &[FileSplit], ctx: &TaskContext) -> Self {
        let p = ctx.parallelism.max(1) as usize;
        let mine: Vec<_> = splits
            .iter()
            .skip(ctx.subtask as usize)
            .step_by(p)
            .cloned()
            .collect();
        Self {
            splits: mine.into_iter(),
            taken: 0,
            current: None,
            line_number: 0,
            buf: Vec::with_capacity(256),
            metrics: ctx.metrics.clone(),
            skipped: 0,
        }
    }

    fn open(split: &FileSplit) -> Result<(BufReader<File>, u64)> {
        let err = |cause| EngineError::Input {
            path: split.path.clone(),
            cause,
        };
        let mut f = File::open(&split.path).map_err(err)?;
        let mut pos = split.start;
        if split.start > 0 {
            // Start after the first newline at or after `start - 1`: a line that began in the
            // previous split is read by that split.
            f.seek(SeekFrom::Start(split.start - 1)).map_err(err)?;
            let mut r = BufReader::with_capacity(1 << 16, f);
            let mut skip = Vec::new();
            let n = r.read_until(b'\n', &mut skip).map_err(err)?;
            pos = split.start - 1 + n as u64;
            return Ok((r, pos));
        }
        Ok((BufReader::with_capacity(1 << 16, f), pos))
    }
}

impl Source<String> for TextFileSource {
    fn poll(&mut self, out: &mut Batch<String>, max: usize) -> Result<SourcePoll> {
        while out.len() < max {
            if self.current.is_none() {
                let Some(split) = self.splits.next() else {
                    return Ok(SourcePoll::Finished);
                };
                let (r, pos) = Self::open(&split)?;
                self.taken += 1;
                self.line_number = 0;
                self.current = Some((r, pos, split.end, split.path));
            }
            let Some((reader, pos, end, path)) = self.current.as_mut() else {
                continue;
            };
            if *pos >= *end {
                self.current = None;
                continue;
            }
            self.buf.clear();
            let n =
                reader
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|cause| EngineError::Input {
                        path: path.clone(),
                        cause,
                    })?;
            if n == 0 {
                self.current = None;
                continue;
            }
            *pos += n as u64;
            self.line_number += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            match std::str::from_utf8(&self.buf) {
                Ok(s) => out.push(Rec::untimed(s.to_string())),
                Err(e) => {
                    self.skipped += 1;
                    self.metrics.skipped_records.fetch_add(1, Ordering::Relaxed);
                    if self.skipped <= 10 {
                        tracing::warn!(
                            file = %path.display(),
                            "skipping a line that is not valid UTF-8 ({e}); line {} of this split",
                            self.line_number
                        );
                    }
                }
            }
        }
        Ok(SourcePoll::More)
    }

    /// (splits taken, byte offset in the current split or `u64::MAX` between splits).
    fn position(&self) -> Result<Option<Vec<u8>>> {
        let offset = self.current.as_ref().map_or(u64::MAX, |c| c.1);
        let mut b = self.taken.to_le_bytes().to_vec();
        b.extend_from_slice(&offset.to_le_bytes());
        Ok(Some(b))
    }

    fn rewind(&mut self, positions: Vec<(u32, Vec<u8>)>) -> Result<()> {
        let bad = |why: String| EngineError::InvalidArgument(format!("text file position: {why}"));
        let [(_, bytes)] = positions.as_slice() else {
            return Err(bad(format!(
                "expected one position, got {}",
                positions.len()
            )));
        };
        if bytes.len() != 16 {
            return Err(bad(format!("{} bytes, expected 16", bytes.len())));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (taken, offset) = (word(0), word(8));
        let mut split = None;
        for _ in 0..taken {
            split =
                Some(self.splits.next().ok_or_else(|| {
                    bad(format!("{taken} splits taken, but this subtask has fewer"))
                })?);
        }
        self.taken = taken;
        self.current = None;
        if let (Some(split), true) = (split, offset != u64::MAX) {
            let err = |cause| EngineError::Input {
                path: split.path.clone(),
                cause,
            };
            let mut f = File::open(&split.path).map_err(err)?;
            f.seek(SeekFrom::Start(offset)).map_err(err)?;
            self.current = Some((
                BufReader::with_capacity(1 << 16, f),
                offset,
                split.end,
                split.path,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, p: u32) -> Vec<String> {
        let splits = file_splits(path).unwrap();
        let mut all = Vec::new();
        for i in 0..p {
            let mut ctx = TaskContext::for_test();
            ctx.subtask = i;
            ctx.parallelism = p;
            let mut src = TextFileSource::new(&splits, &ctx);
            loop {
                let mut b = Vec::new();
                let done = src.poll(&mut b, 3).unwrap() == SourcePoll::Finished;
                all.extend(b.into_iter().map(|r| r.value));
                if done {
                    break;
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn splits_read_every_line_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("line {i} {}\n", "x".repeat(i % 37)));
        }
        std::fs::write(dir.path().join("a.txt"), &text).unwrap();
        std::fs::write(dir.path().join("b.txt"), "last line without newline").unwrap();
        std::fs::write(dir.path().join(".hidden"), "ignored\n").unwrap();
        let mut expected: Vec<String> = text.lines().map(str::to_string).collect();
        expected.push("last line without newline".into());
        expected.sort();
        for p in [1, 3] {
            assert_eq!(read_all(dir.path(), p), expected);
        }
    }

    #[test]
    fn byte_range_splits_do_not_lose_or_duplicate_lines() {
        // Exercise the split boundary logic directly with tiny splits.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, "aa\nbbb\n\nc\ndddd\n").unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        for size in 1..=len {
            let mut splits = Vec::new();
            let mut s = 0;
            while s < len {
                splits.push(FileSplit {
                    path: path.clone(),
                    start: s,
                    end: (s + size).min(len),
                });
                s += size;
            }
            let ctx = TaskContext::for_test();
            let mut src = TextFileSource::new(&splits, &ctx);
            let mut b = Vec::new();
            while src.poll(&mut b, 100).unwrap() != SourcePoll::Finished {}
            let got: Vec<_> = b.into_iter().map(|r| r.value).collect();
            assert_eq!(got, vec!["aa", "bbb", "", "c", "dddd"], "split size {size}");
        }
    }

    #[test]
    fn invalid_utf8_lines_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"good\n\xff\xfe bad\nalso good\n").unwrap();
        let ctx = TaskContext::for_test();
        let mut src = TextFileSource::new(&file_splits(&path).unwrap(), &ctx);
        let mut b = Vec::new();
        while src.poll(&mut b, 100).unwrap() != SourcePoll::Finished {}
        let got: Vec<_> = b.into_iter().map(|r| r.value).collect();
        assert_eq!(got, vec!["good", "also good"]);
        assert_eq!(ctx.metrics.skipped(), 1);
    }

    #[test]
    fn a_text_source_resumes_after_the_last_line_it_emitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let splits = vec![
            FileSplit {
                path: path.clone(),
                start: 0,
                end: 1000,
            },
            FileSplit {
                path: path.clone(),
                start: 1000,
                end: text.len() as u64,
            },
        ];
        let ctx = TaskContext::for_test();
        for stop_after in [0, 1, 7, 120, 499] {
            let mut src = TextFileSource::new(&splits, &ctx);
            let mut first = Vec::new();
            while first.len() < stop_after {
                let mut b = Vec::new();
                src.poll(&mut b, 1).unwrap();
                first.extend(b.into_iter().map(|r| r.value));
            }
            let pos = src.position().unwrap().unwrap();
            let mut resumed = TextFileSource::new(&splits, &ctx);
            resumed.rewind(vec![(0, pos)]).unwrap();
            loop {
                let mut b = Vec::new();
                let done = resumed.poll(&mut b, 64).unwrap() == SourcePoll::Finished;
                first.extend(b.into_iter().map(|r| r.value));
                if done {
                    break;
                }
            }
            let expected: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
            assert_eq!(first, expected, "stopped after {stop_after}");
        }
    }

    #[test]
    fn missing_input_is_a_clear_error() {
        let err = file_splits(Path::new("/nonexistent/input.txt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/input.txt"), "{err}");
    }

    /// Positions of a generator's subtasks: (subtask, bytes).
    type Positions = [(u32, Vec<u8>)];

    /// Runs every subtask of a generator at parallelism `p` until it emitted about `upto`
    /// indices (each stops at a different point), restored from `positions` at parallelism
    /// `from`; returns what they emitted and their positions.
    fn run_generators(
        p: u32,
        from: Option<(u32, &Positions)>,
        stop_after: impl Fn(u32) -> usize,
    ) -> (Vec<u64>, Vec<(u32, Vec<u8>)>) {
        let mut emitted = Vec::new();
        let mut positions = Vec::new();
        for i in 0..p {
            let mut ctx = TaskContext::for_test();
            ctx.subtask = i;
            ctx.parallelism = p;
            let bounds = GeneratorBounds {
                events: Some(1000),
                rate: 0,
            };
            let mut g = GeneratorSource::new(|i: u64| Some(i), bounds, &ctx);
            match from {
                Some((old, all)) if old != p => g.rewind_rescaled(old, all.to_vec()).unwrap(),
                Some((_, all)) => g
                    .rewind(all.iter().filter(|(j, _)| *j == i).cloned().collect())
                    .unwrap(),
                None => {}
            }
            let mut b = Vec::new();
            while b.len() < stop_after(i) && g.poll(&mut b, 7).unwrap() != SourcePoll::Finished {}
            emitted.extend(b.into_iter().map(|r| r.value));
            positions.push((i, g.position().unwrap().unwrap()));
        }
        (emitted, positions)
    }

    #[test]
    fn a_generator_rescaled_2_3_1_emits_every_index_exactly_once() {
        // Subtasks stop at different points, as they would at a savepoint.
        let (mut all, pos2) = run_generators(2, None, |i| 100 + 60 * i as usize);
        let (more, pos3) = run_generators(3, Some((2, &pos2)), |i| 50 + 40 * i as usize);
        all.extend(more);
        let (rest, _) = run_generators(1, Some((3, &pos3)), |_| usize::MAX);
        all.extend(rest);
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<u64>>());
    }

    #[test]
    fn generator_splits_indices_across_subtasks() {
        let mut all = Vec::new();
        for i in 0..3 {
            let mut ctx = TaskContext::for_test();
            ctx.subtask = i;
            ctx.parallelism = 3;
            let mut g = GeneratorSource::new(
                |i: u64| (!i.is_multiple_of(5)).then_some(i),
                GeneratorBounds {
                    events: Some(20),
                    rate: 0,
                },
                &ctx,
            );
            let mut b = Vec::new();
            while g.poll(&mut b, 4).unwrap() != SourcePoll::Finished {}
            all.extend(b.into_iter().map(|r| r.value));
        }
        all.sort();
        let expected: Vec<u64> = (0..20).filter(|i| i % 5 != 0).collect();
        assert_eq!(all, expected);
    }
}
