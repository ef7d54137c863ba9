//! Tumbling and sliding windows over shared slices.
//!
//! Time is cut into slices of `gcd(size, slide)`; per key the operator keeps one accumulator per
//! slice that holds data (a short vector sorted by slice end). A record is added to exactly one
//! accumulator. When the clock passes a window's end, the accumulators of the slices inside the
//! window are merged and the result is emitted; a slice is dropped once the last window that
//! contains it is past its allowed lateness.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::checkpoint::codec::{decode_vec, encode_vec};
use crate::checkpoint::subtask::restore_error;
use crate::context::TaskContext;
use crate::element::{Batch, Control, NO_TIMESTAMP, Rec};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::Result;
use crate::key_groups::Key;
use crate::keyed::AggregateFunction;
use crate::keyed::{StateIds, VALUES};
use crate::state::{KeyedStore, StateCodec};
use crate::timers::TimeDomain;
use crate::window::{TimeWindow, gcd};

/// Window geometry and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceConfig {
    /// Window size (ms).
    pub size: i64,
    /// Window slide (ms); equal to `size` for tumbling windows.
    pub slide: i64,
    /// Event or processing time.
    pub domain: TimeDomain,
    /// Allowed lateness (ms).
    pub lateness: i64,
}

/// Slice geometry: which windows contain which slice.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    size: i64,
    slide: i64,
    slice: i64,
    /// Window ends are `≡ end_phase (mod slide)`.
    end_phase: i64,
}

impl Geometry {
    fn new(size: i64, slide: i64) -> Self {
        Self {
            size,
            slide,
            slice: gcd(size, slide),
            end_phase: size.rem_euclid(slide),
        }
    }

    /// End of the slice holding `ts`.
    #[inline]
    fn slice_end(&self, ts: i64) -> i64 {
        ts.saturating_sub(ts.rem_euclid(self.slice))
            .saturating_add(self.slice)
    }

    /// End of the first window containing the slice ending at `s`.
    #[inline]
    fn first_end(&self, s: i64) -> i64 {
        s.saturating_add((self.end_phase - s).rem_euclid(self.slide))
    }

    /// End of the last window containing the slice ending at `s`.
    #[inline]
    fn last_end(&self, s: i64) -> i64 {
        let x = s.saturating_sub(self.slice).saturating_add(self.size);
        x.saturating_sub((x - self.end_phase).rem_euclid(self.slide))
    }

    /// Smallest window end strictly after `t`.
    fn next_end_after(&self, t: i64) -> i64 {
        let t1 = t.saturating_add(1);
        t1.saturating_add((self.end_phase - t1).rem_euclid(self.slide))
    }
}

/// One key's accumulators, by slice end (ascending). The newest slice lives inline, so the
/// common case (records in time order, one slice per tumbling window) touches no second
/// allocation; older slices (sliding windows, lateness) follow in a vector.
#[derive(Debug, Clone)]
pub struct KeySlices<Acc> {
    newest: Option<(i64, Acc)>,
    older: VecDeque<(i64, Acc)>,
    running: Option<Running<Acc>>,
}

/// The merge of the slices in `(window end - size, added_upto]`, kept when the aggregation can
/// retract: firing the next window then adds the slices that enter and retracts those that
/// leave, instead of merging every slice of the window again.
#[derive(Debug, Clone)]
struct Running<Acc> {
    acc: Acc,
    slices: u32,
    added_upto: i64,
}

impl<Acc> KeySlices<Acc> {
    fn new() -> Self {
        Self {
            newest: None,
            older: VecDeque::new(),
            running: None,
        }
    }

    /// Slice ends held, ascending.
    pub fn slice_ends(&self) -> impl Iterator<Item = i64> + '_ {
        self.iter().map(|(s, _)| *s)
    }

    fn iter(&self) -> impl Iterator<Item = &(i64, Acc)> + '_ {
        self.older.iter().chain(self.newest.iter())
    }

    fn len(&self) -> usize {
        self.older.len() + usize::from(self.newest.is_some())
    }

    fn is_empty(&self) -> bool {
        self.newest.is_none()
    }

    /// The accumulator of slice `s`, created by `create` if absent; true if it was created.
    #[inline]
    fn slot(&mut self, s: i64, create: impl FnOnce() -> Acc) -> (&mut Acc, bool) {
        let newest = self.newest.as_ref().map(|(e, _)| *e);
        match newest {
            Some(e) if e > s => match self.older.binary_search_by_key(&s, |(e, _)| *e) {
                Ok(i) => (&mut self.older[i].1, false),
                Err(i) => {
                    self.older.insert(i, (s, create()));
                    (&mut self.older[i].1, true)
                }
            },
            Some(e) if e == s => {
                // `newest` is Some here; get_or_insert_with only satisfies the borrow checker.
                let (_, acc) = self.newest.get_or_insert_with(|| (s, create()));
                (acc, false)
            }
            _ => {
                if let Some(prev) = self.newest.take() {
                    self.older.push_back(prev);
                }
                (&mut self.newest.insert((s, create())).1, true)
            }
        }
    }

    /// Keeps the slices for which `keep` is true. Expiry is monotone in the slice end, so when
    /// the newest slice goes, all go.
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        self.older.retain(|(s, _)| keep(*s));
        if let Some((s, _)) = &self.newest
            && !keep(*s)
        {
            self.newest = self.older.pop_back();
        }
    }

    /// The oldest slice end.
    fn first_end(&self) -> Option<i64> {
        self.older.front().or(self.newest.as_ref()).map(|(s, _)| *s)
    }

    /// Removes the oldest slice.
    fn pop_first(&mut self) -> Option<(i64, Acc)> {
        self.older.pop_front().or_else(|| self.newest.take())
    }
}

/// The tumbling/sliding window operator.
pub struct SliceWindowOp<T, K, KF, A: AggregateFunction<T>, O, WF> {
    key: KF,
    agg: A,
    window_fn: Arc<WF>,
    geo: Geometry,
    domain: TimeDomain,
    lateness: i64,
    /// Sliding windows over a retractable aggregation without lateness keep running
    /// accumulators (see [`Running`]).
    incremental: bool,
    store: KeyedStore<K, KeySlices<A::Acc>>,
    /// Slice ends that hold data for some key (to find the next window to fire).
    live_slices: BTreeSet<i64>,
    last_registered: i64,
    /// End of the last window fired.
    last_fired: Option<i64>,
    watermark: i64,
    processing_time: i64,
    batch_size: usize,
    pending: Batch<O>,
    late_count: u64,
    state: StateIds,
    out: BoxEmitter<O>,
    late: BoxEmitter<T>,
}

/// Name of the end of the last window fired, per key group, in a snapshot.
const LAST_FIRED: &str = "last-fired";

/// A key's slices as a snapshot stores them: (slice end, accumulator) ascending, and the
/// running accumulator (accumulator, slices, added up to).
type StoredSlices<Acc> = (Vec<(i64, Acc)>, Option<(Acc, u32, i64)>);

impl<Acc: Clone> KeySlices<Acc> {
    fn to_stored(&self) -> StoredSlices<Acc> {
        (
            self.iter().cloned().collect(),
            self.running
                .as_ref()
                .map(|r| (r.acc.clone(), r.slices, r.added_upto)),
        )
    }

    fn from_stored((slices, running): StoredSlices<Acc>) -> Self {
        let mut older: VecDeque<(i64, Acc)> = slices.into();
        let newest = older.pop_back();
        Self {
            newest,
            older,
            running: running.map(|(acc, slices, added_upto)| Running {
                acc,
                slices,
                added_upto,
            }),
        }
    }
}

impl<T, K, KF, A, O, WF> SliceWindowOp<T, K, KF, A, O, WF>
where
    T: Send + 'static,
    K: Key,
    KF: Fn(&T) -> K + Send,
    A: AggregateFunction<T>,
    O: Send + 'static,
    WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync,
{
    /// A window operator emitting to `out`, late records to `late`.
    pub fn new(
        key: KF,
        agg: A,
        window_fn: Arc<WF>,
        config: SliceConfig,
        ctx: &TaskContext,
        out: BoxEmitter<O>,
        late: BoxEmitter<T>,
    ) -> Result<Self> {
        let state = StateIds::of(ctx);
        let mut op = Self {
            key,
            agg,
            window_fn,
            geo: Geometry::new(config.size.max(1), config.slide.max(1)),
            domain: config.domain,
            lateness: config.lateness.max(0),
            incremental: A::RETRACTABLE && config.lateness <= 0 && config.size != config.slide,
            store: KeyedStore::for_operator(
                ctx,
                StateCodec::new(KeySlices::to_stored, KeySlices::from_stored),
            )?,
            live_slices: BTreeSet::new(),
            last_registered: i64::MIN,
            last_fired: None,
            watermark: i64::MIN,
            processing_time: i64::MIN,
            batch_size: ctx.config.batch_size.max(1),
            pending: Vec::new(),
            late_count: 0,
            state,
            out,
            late,
        };
        op.restore()?;
        Ok(op)
    }

    /// Starts from the restored slices and firing progress, if the job was restored.
    fn restore(&mut self) -> Result<()> {
        let StateIds { checkpoint, op } = self.state.clone();
        if checkpoint.restored_from().is_none() {
            return Ok(());
        }
        self.store
            .restore_as(&checkpoint, &op, VALUES, |s: StoredSlices<A::Acc>| {
                KeySlices::from_stored(s)
            })?;
        let mut live = BTreeSet::new();
        self.store.for_each(|_, ks| live.extend(ks.slice_ends()))?;
        self.live_slices = live;
        // Key groups restored from several subtasks may have fired up to different windows:
        // resume from the earliest (a window is never skipped).
        for (_, bytes) in checkpoint.restored_keyed(&op, LAST_FIRED) {
            let fired = decode_vec::<i64>(&bytes).map_err(|e| restore_error(&op, LAST_FIRED, e))?;
            if let Some(&f) = fired.first() {
                self.last_fired = Some(self.last_fired.map_or(f, |l| l.min(f)));
            }
        }
        Ok(())
    }

    /// Hands the slices and the firing progress to the checkpoint passing through.
    fn snapshot(&mut self) -> Result<()> {
        self.flush_pending()?;
        let StateIds { checkpoint, op } = &self.state;
        self.store
            .snapshot_as(checkpoint, op, VALUES, KeySlices::to_stored)?;
        if let Some(fired) = self.last_fired {
            let bytes = encode_vec(&[fired]).map_err(|e| restore_error(op, LAST_FIRED, e))?;
            checkpoint.snapshot_keyed(op, LAST_FIRED, |_| true, |_| Ok(Some(bytes.clone())))?;
        }
        Ok(())
    }

    /// Number of (key, slice) accumulators held: with sliding windows this is at most one per
    /// key and slice, however many windows overlap.
    pub fn accumulator_count(&self) -> Result<usize> {
        let mut n = 0;
        self.store.for_each(|_, ks| n += ks.len())?;
        Ok(n)
    }

    /// Number of keys with state.
    pub fn key_count(&self) -> usize {
        self.store.len()
    }

    /// Records dropped or side-output as late.
    pub fn late_records(&self) -> u64 {
        self.late_count
    }

    /// The slice ends held for `key`.
    pub fn slices_of(&mut self, key: &K) -> Result<Vec<i64>> {
        Ok(self
            .store
            .get(key)?
            .map(|ks| ks.slice_ends().collect())
            .unwrap_or_default())
    }

    fn current_time(&self) -> i64 {
        match self.domain {
            TimeDomain::EventTime => self.watermark,
            TimeDomain::ProcessingTime => self.processing_time,
        }
    }

    fn emit(&mut self, rec: Rec<O>) -> Result<()> {
        self.pending.push(rec);
        if self.pending.len() >= self.batch_size {
            let b = std::mem::take(&mut self.pending);
            self.out.batch(b)?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            let b = std::mem::take(&mut self.pending);
            self.out.batch(b)?;
        }
        Ok(())
    }

    /// Result of `slices` for the window ending at `end`, if any slice is inside it.
    fn window_result(
        agg: &A,
        geo: &Geometry,
        slices: &KeySlices<A::Acc>,
        end: i64,
    ) -> Option<A::Acc> {
        let start = end - geo.size;
        let mut acc: Option<A::Acc> = None;
        for (s, a) in slices.iter() {
            if *s <= start {
                continue;
            }
            if *s > end {
                break;
            }
            match &mut acc {
                None => acc = Some(a.clone()),
                Some(x) => agg.merge(x, a),
            }
        }
        acc
    }

    /// Fires every window whose end - 1 is at or before `t`.
    fn advance(&mut self, t: i64) -> Result<()> {
        loop {
            let geo = self.geo;
            let lower = match self.last_fired {
                Some(f) => f.saturating_add(geo.slice).saturating_sub(geo.size),
                None => i64::MIN,
            };
            let Some(&s) = self
                .live_slices
                .range((Bound::Excluded(lower), Bound::Unbounded))
                .next()
            else {
                break;
            };
            let mut end = geo.first_end(s);
            if let Some(f) = self.last_fired {
                end = end.max(geo.next_end_after(f));
            }
            if end - 1 > t {
                break;
            }
            self.fire(end, t)?;
            self.last_fired = Some(end);
        }
        // Drop slices nothing needs any more.
        let (geo, lateness) = (self.geo, self.lateness);
        let fired = self.last_fired.unwrap_or(i64::MIN);
        let expired = |s: i64| {
            let last = geo.last_end(s);
            last <= fired && last.saturating_sub(1).saturating_add(lateness) <= t
        };
        let mut pruned = false;
        while let Some(&s) = self.live_slices.first() {
            if expired(s) {
                self.live_slices.pop_first();
                pruned = true;
            } else {
                break;
            }
        }
        if pruned {
            // Slices kept for the allowed lateness just expired: drop them from every key.
            self.store.retain(|_, ks| {
                ks.retain(|s| !expired(s));
                !ks.is_empty()
            })?;
        }
        self.flush_pending()
    }

    fn fire(&mut self, end: i64, t: i64) -> Result<()> {
        let window = TimeWindow {
            start: end - self.geo.size,
            end,
        };
        let (geo, lateness) = (self.geo, self.lateness);
        let mut results = std::mem::take(&mut self.pending);
        let agg = &self.agg;
        let wf = &*self.window_fn;
        if self.incremental {
            self.store.retain(|k, ks| {
                if let Some(acc) = Self::fire_incremental(agg, &geo, ks, end) {
                    results.push(Rec::new(
                        window.max_timestamp(),
                        wf(k, window, agg.result(&acc)),
                    ));
                }
                !ks.is_empty()
            })?;
            self.pending = results;
            if self.pending.len() >= self.batch_size {
                self.flush_pending()?;
            }
            return Ok(());
        }
        self.store.retain(|k, ks| {
            if let Some(acc) = Self::window_result(agg, &geo, ks, end) {
                results.push(Rec::new(
                    window.max_timestamp(),
                    wf(k, window, agg.result(&acc)),
                ));
            }
            ks.retain(|s| {
                let last = geo.last_end(s);
                !(last <= end && last.saturating_sub(1).saturating_add(lateness) <= t)
            });
            !ks.is_empty()
        })?;
        self.pending = results;
        if self.pending.len() >= self.batch_size {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Result of the window ending at `end` from the key's running accumulator: retract the
    /// slices that left, add those that entered, and after emitting drop the slices no later
    /// window contains (there is no lateness on this path).
    fn fire_incremental(
        agg: &A,
        geo: &Geometry,
        ks: &mut KeySlices<A::Acc>,
        end: i64,
    ) -> Option<A::Acc> {
        let mut run = ks.running.take().unwrap_or_else(|| Running {
            acc: agg.create(),
            slices: 0,
            added_upto: i64::MIN,
        });
        let retract_upto = |ks: &mut KeySlices<A::Acc>, run: &mut Running<A::Acc>, upto: i64| {
            while let Some(s) = ks.first_end() {
                if s > upto {
                    break;
                }
                if let Some((s, a)) = ks.pop_first()
                    && s <= run.added_upto
                {
                    agg.retract(&mut run.acc, &a);
                    run.slices -= 1;
                }
            }
        };
        retract_upto(ks, &mut run, end - geo.size);
        // Slices that entered: the newest ones, up to `end`.
        for (s, a) in ks.newest.iter().chain(ks.older.iter().rev()) {
            if *s <= run.added_upto {
                break;
            }
            if *s <= end {
                agg.merge(&mut run.acc, a);
                run.slices += 1;
            }
        }
        run.added_upto = run.added_upto.max(end);
        let result = (run.slices > 0).then(|| run.acc.clone());
        retract_upto(ks, &mut run, end + geo.slide - geo.size);
        if !ks.is_empty() {
            ks.running = Some(run);
        }
        result
    }

    fn on_record(&mut self, rec: Rec<T>) -> Result<()> {
        let geo = self.geo;
        let ts = match self.domain {
            TimeDomain::EventTime => rec.ts,
            TimeDomain::ProcessingTime => self.processing_time,
        };
        let now = self.current_time();
        let s = geo.slice_end(ts);
        let last_end = geo.last_end(s);
        if ts == NO_TIMESTAMP
            || (self.domain == TimeDomain::EventTime
                && last_end.saturating_sub(1).saturating_add(self.lateness) <= now)
        {
            self.late_count += 1;
            if self.late_count == 1 && ts == NO_TIMESTAMP {
                tracing::warn!(
                    "a record without timestamp reached an event-time window; assign timestamps \
                     (assign_timestamps_and_watermarks) before windowing"
                );
            }
            return self.late.batch(vec![rec]);
        }
        let k = (self.key)(&rec.value);
        let agg = &self.agg;
        let new_slice = self.store.upsert(&k, |ks| {
            let mut created = None;
            let ks = match ks {
                Some(ks) => ks,
                None => created.insert(KeySlices::new()),
            };
            let (acc, new_slice) = ks.slot(s, || agg.create());
            agg.add(acc, &rec.value);
            if let Some(run) = &mut ks.running
                && s <= run.added_upto
            {
                // Out of order into a slice the running accumulator already holds.
                agg.add(&mut run.acc, &rec.value);
                run.slices += u32::from(new_slice);
            }
            (created, new_slice)
        })?;
        if new_slice && s != self.last_registered {
            self.live_slices.insert(s);
            self.last_registered = s;
        }
        // Late but within the allowed lateness: windows that already fired fire again.
        if self.domain == TimeDomain::EventTime
            && let Some(fired) = self.last_fired
            && geo.first_end(s) <= fired
        {
            // Windows whose lateness already passed stay as they were (as in Flink).
            let mut end = geo.first_end(s);
            while end.saturating_sub(1).saturating_add(self.lateness) <= now {
                end += geo.slide;
            }
            let upto = fired.min(last_end);
            while end <= upto {
                if let Some(ks) = self.store.get(&k)?
                    && let Some(acc) = Self::window_result(&self.agg, &geo, ks, end)
                {
                    let window = TimeWindow {
                        start: end - geo.size,
                        end,
                    };
                    let out = (self.window_fn)(&k, window, self.agg.result(&acc));
                    self.emit(Rec::new(window.max_timestamp(), out))?;
                }
                end += geo.slide;
            }
        }
        Ok(())
    }
}

impl<T, K, KF, A, O, WF> Emitter<T> for SliceWindowOp<T, K, KF, A, O, WF>
where
    T: Send + 'static,
    K: Key,
    KF: Fn(&T) -> K + Send,
    A: AggregateFunction<T>,
    O: Send + 'static,
    WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync,
{
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        for rec in batch {
            self.on_record(rec)?;
        }
        self.flush_pending()
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::Watermark(w) => {
                self.watermark = w;
                if self.domain == TimeDomain::EventTime {
                    self.advance(w)?;
                }
            }
            Control::ProcessingTime(now) => {
                self.processing_time = now;
                if self.domain == TimeDomain::ProcessingTime {
                    self.advance(now)?;
                }
            }
            Control::EndOfInput => {
                // At the end of a bounded input every open window fires.
                self.advance(i64::MAX)?;
            }
            Control::Barrier(_) => self.snapshot()?,
            _ => {}
        }
        self.late.control(control)?;
        self.out.control(control)
    }
}
