//! Keyed operators without windows: rolling reduce/aggregate and the keyed process function with
//! per-key state and timers.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::subtask::{OperatorIds, SubtaskCheckpoint};
use crate::context::TaskContext;
use crate::element::{Batch, Control, Data, Rec};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::Result;
use crate::key_groups::Key;
use crate::state::{KeyedStore, StateCodec};
use crate::timers::{TimeDomain, TimerQueue};

/// Rolling reduce: per key, folds each record into the running value and emits the new value.
pub struct RollingReduce<T, K, KF, R> {
    key: KF,
    reduce: Arc<R>,
    store: KeyedStore<K, T>,
    state: StateIds,
    out: BoxEmitter<T>,
}

/// Where a keyed operator's state goes in a checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct StateIds {
    pub(crate) checkpoint: SubtaskCheckpoint,
    pub(crate) op: OperatorIds,
}

impl StateIds {
    pub(crate) fn of(ctx: &TaskContext) -> Self {
        Self {
            checkpoint: ctx.checkpoint.clone(),
            op: OperatorIds::of(ctx),
        }
    }
}

/// Name of a keyed operator's per-key values in a snapshot.
pub(crate) const VALUES: &str = "values";
/// Name of a keyed operator's event-time timers in a snapshot.
pub(crate) const EVENT_TIMERS: &str = "event-timers";
/// Name of a keyed operator's processing-time timers in a snapshot.
pub(crate) const PROCESSING_TIMERS: &str = "processing-timers";

impl<T: Data, K: Key, KF, R> RollingReduce<T, K, KF, R> {
    /// Reduces into `out`, keyed by `key`; starts from the restored state, if any.
    pub fn new(key: KF, reduce: Arc<R>, ctx: &TaskContext, out: BoxEmitter<T>) -> Result<Self> {
        let state = StateIds::of(ctx);
        let mut store = KeyedStore::for_operator(ctx, StateCodec::identity())?;
        store.restore_as(&state.checkpoint, &state.op, VALUES, |v: T| v)?;
        Ok(Self {
            key,
            reduce,
            store,
            state,
            out,
        })
    }
}

impl<T, K, KF, R> Emitter<T> for RollingReduce<T, K, KF, R>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send,
    R: Fn(&T, T) -> T + Send + Sync,
{
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let mut out = Vec::with_capacity(batch.len());
        let reduce = &*self.reduce;
        for r in batch {
            let k = (self.key)(&r.value);
            let value = self.store.upsert(&k, |acc| match acc {
                Some(acc) => {
                    *acc = reduce(acc, r.value);
                    (None, acc.clone())
                }
                None => (Some(r.value.clone()), r.value),
            })?;
            out.push(Rec::new(r.ts, value));
        }
        self.out.batch(out)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        if let Control::Barrier(_) = control {
            let s = &self.state;
            self.store
                .snapshot_as(&s.checkpoint, &s.op, VALUES, T::clone)?;
        }
        self.out.control(control)
    }
}

/// Incremental aggregation: accumulators are created, fed and merged (merging is what lets
/// windows combine slices and sessions).
pub trait AggregateFunction<T>: Clone + Send + Sync + 'static {
    /// The running state (checkpointed, hence serializable like a record).
    type Acc: Data;
    /// The result.
    type Out: Data;
    /// A fresh accumulator.
    fn create(&self) -> Self::Acc;
    /// Folds a record in.
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Folds another accumulator in.
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    /// The result of an accumulator.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
    /// True when [`AggregateFunction::retract`] undoes a merge (count, sum): sliding windows
    /// then keep one running accumulator per key instead of re-merging every slice per window.
    const RETRACTABLE: bool = false;
    /// Removes `other`, previously merged, from `acc` (only called when `RETRACTABLE`).
    fn retract(&self, _acc: &mut Self::Acc, _other: &Self::Acc) {}
}

/// Counts records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;
    #[inline]
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: &T) {
        *acc += 1;
    }
    #[inline]
    fn merge(&self, acc: &mut u64, other: &u64) {
        *acc += other;
    }
    #[inline]
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
    const RETRACTABLE: bool = true;
    #[inline]
    fn retract(&self, acc: &mut u64, other: &u64) {
        *acc -= other;
    }
}

/// An aggregate from a reduce function.
pub struct Reduce<T, R> {
    f: Arc<R>,
    _t: PhantomData<fn() -> T>,
}

impl<T, R> Clone for Reduce<T, R> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, R> Reduce<T, R> {
    /// Wraps `f`.
    pub fn new(f: R) -> Self {
        Self {
            f: Arc::new(f),
            _t: PhantomData,
        }
    }
}

impl<T: Data, R: Fn(&T, &T) -> T + Send + Sync + 'static> AggregateFunction<T> for Reduce<T, R> {
    type Acc = Option<T>;
    type Out = Option<T>;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.f)(&a, value),
            None => value.clone(),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: &Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }
    fn result(&self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
}

/// Rolling aggregate: per key, adds each record and emits `(key, result)`.
pub struct RollingAggregate<T, K, KF, A: AggregateFunction<T>> {
    key: KF,
    agg: A,
    store: KeyedStore<K, A::Acc>,
    state: StateIds,
    out: BoxEmitter<(K, A::Out)>,
}

impl<T, K: Key, KF, A: AggregateFunction<T>> RollingAggregate<T, K, KF, A> {
    /// Aggregates into `out`; starts from the restored state, if any.
    pub fn new(key: KF, agg: A, ctx: &TaskContext, out: BoxEmitter<(K, A::Out)>) -> Result<Self> {
        let state = StateIds::of(ctx);
        let mut store = KeyedStore::for_operator(ctx, StateCodec::identity())?;
        store.restore_as(&state.checkpoint, &state.op, VALUES, |v: A::Acc| v)?;
        Ok(Self {
            key,
            agg,
            store,
            state,
            out,
        })
    }
}

impl<T, K, KF, A> Emitter<T> for RollingAggregate<T, K, KF, A>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send,
    A: AggregateFunction<T>,
{
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            let k = (self.key)(&r.value);
            let agg = &self.agg;
            let acc = self.store.get_or_insert_with(&k, || agg.create())?;
            agg.add(acc, &r.value);
            let res = agg.result(acc);
            out.push(Rec::new(r.ts, (k, res)));
        }
        self.out.batch(out)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        if let Control::Barrier(_) = control {
            let s = &self.state;
            self.store
                .snapshot_as(&s.checkpoint, &s.op, VALUES, A::Acc::clone)?;
        }
        self.out.control(control)
    }
}

/// A function over a keyed stream with per-key state and timers (Flink's KeyedProcessFunction).
///
/// Its per-key state is a struct of [`ValueState`](crate::state::ValueState),
/// [`ListState`](crate::state::ListState) and [`MapState`](crate::state::MapState) fields; one
/// instance per key lives in the operator's key-grouped store.
pub trait KeyedProcessFunction<K, I>: Clone + Send + Sync + 'static {
    /// Per-key state (checkpointed, hence serializable like a record).
    type State: Default + Data;
    /// Output records.
    type Out: Data;
    /// Called for every record.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut ProcessContext<'_, K, Self::State, Self::Out>,
    );
    /// Called when a timer of the current key fires.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _domain: TimeDomain,
        _ctx: &mut ProcessContext<'_, K, Self::State, Self::Out>,
    ) {
    }
}

/// What a process function sees for the current key.
pub struct ProcessContext<'a, K, S, O> {
    key: &'a K,
    timestamp: i64,
    watermark: i64,
    processing_time: i64,
    state: &'a mut S,
    clear: bool,
    event_timers: &'a mut TimerQueue<K>,
    processing_timers: &'a mut TimerQueue<K>,
    out: &'a mut Vec<Rec<O>>,
}

impl<K: Key, S: Default, O> ProcessContext<'_, K, S, O> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }
    /// Timestamp of the current record (or of the firing timer).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    /// The current processing time.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }
    /// The current key's state.
    pub fn state(&mut self) -> &mut S {
        self.state
    }
    /// Drops the current key's state after this call.
    pub fn clear_state(&mut self) {
        self.clear = true;
        *self.state = S::default();
    }
    /// Emits a record with the current timestamp.
    pub fn collect(&mut self, value: O) {
        self.out.push(Rec::new(self.timestamp, value));
    }
    /// Emits a record with an explicit timestamp.
    pub fn collect_at(&mut self, ts: i64, value: O) {
        self.out.push(Rec::new(ts, value));
    }
    /// Registers an event-time timer for the current key.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.event_timers.register(self.key, time);
    }
    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.processing_timers.register(self.key, time);
    }
    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.event_timers.delete(self.key, time);
    }
    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.processing_timers.delete(self.key, time);
    }
}

/// Runs a [`KeyedProcessFunction`].
pub struct KeyedProcessOp<I, K, KF, P: KeyedProcessFunction<K, I>> {
    key: KF,
    function: P,
    store: KeyedStore<K, P::State>,
    event_timers: TimerQueue<K>,
    processing_timers: TimerQueue<K>,
    watermark: i64,
    processing_time: i64,
    state: StateIds,
    out: BoxEmitter<P::Out>,
    _i: PhantomData<fn(I)>,
}

impl<I, K: Key, KF, P: KeyedProcessFunction<K, I>> KeyedProcessOp<I, K, KF, P> {
    /// Runs `function` keyed by `key`; starts from the restored state and timers, if any.
    pub fn new(key: KF, function: P, ctx: &TaskContext, out: BoxEmitter<P::Out>) -> Result<Self> {
        let state = StateIds::of(ctx);
        let mut store = KeyedStore::for_operator(ctx, StateCodec::identity())?;
        store.restore_as(&state.checkpoint, &state.op, VALUES, |v: P::State| v)?;
        let mut event_timers = TimerQueue::default();
        event_timers.restore(&state.checkpoint, &state.op, EVENT_TIMERS)?;
        let mut processing_timers = TimerQueue::default();
        processing_timers.restore(&state.checkpoint, &state.op, PROCESSING_TIMERS)?;
        Ok(Self {
            key,
            function,
            store,
            event_timers,
            processing_timers,
            watermark: i64::MIN,
            processing_time: i64::MIN,
            state,
            out,
            _i: PhantomData,
        })
    }

    /// Keys with state (for tests and metrics).
    pub fn keys_with_state(&self) -> usize {
        self.store.len()
    }

    fn fire(&mut self, domain: TimeDomain, upto: i64) -> Result<()> {
        let due = match domain {
            TimeDomain::EventTime => self.event_timers.pop_due(upto),
            TimeDomain::ProcessingTime => self.processing_timers.pop_due(upto),
        };
        if due.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for (t, k) in due {
            let state = self.store.get_or_insert_with(&k, P::State::default)?;
            let mut ctx = ProcessContext {
                key: &k,
                timestamp: t,
                watermark: self.watermark,
                processing_time: self.processing_time,
                state,
                clear: false,
                event_timers: &mut self.event_timers,
                processing_timers: &mut self.processing_timers,
                out: &mut out,
            };
            self.function.on_timer(t, domain, &mut ctx);
            if ctx.clear {
                self.store.remove(&k)?;
            }
        }
        self.out.batch(out)
    }
}

impl<I, K, KF, P> Emitter<I> for KeyedProcessOp<I, K, KF, P>
where
    I: Data,
    K: Key,
    KF: Fn(&I) -> K + Send,
    P: KeyedProcessFunction<K, I>,
{
    fn batch(&mut self, batch: Batch<I>) -> Result<()> {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            let k = (self.key)(&r.value);
            let state = self.store.get_or_insert_with(&k, P::State::default)?;
            let mut ctx = ProcessContext {
                key: &k,
                timestamp: r.ts,
                watermark: self.watermark,
                processing_time: self.processing_time,
                state,
                clear: false,
                event_timers: &mut self.event_timers,
                processing_timers: &mut self.processing_timers,
                out: &mut out,
            };
            self.function.process_element(r.value, &mut ctx);
            if ctx.clear {
                self.store.remove(&k)?;
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        self.out.batch(out)
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::Watermark(w) => {
                self.watermark = w;
                self.fire(TimeDomain::EventTime, w)?;
            }
            Control::ProcessingTime(now) => {
                self.processing_time = now;
                self.fire(TimeDomain::ProcessingTime, now)?;
            }
            Control::Barrier(_) => {
                let s = &self.state;
                self.store
                    .snapshot_as(&s.checkpoint, &s.op, VALUES, P::State::clone)?;
                self.event_timers
                    .snapshot(&s.checkpoint, &s.op, EVENT_TIMERS)?;
                self.processing_timers
                    .snapshot(&s.checkpoint, &s.op, PROCESSING_TIMERS)?;
            }
            _ => {}
        }
        self.out.control(control)
    }
}

impl<T, K, F> crate::stream::KeyedStream<T, K, F>
where
    T: Data,
    K: Key,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// Rolling reduce: emits the key's running value after every record.
    pub fn reduce<R: Fn(&T, T) -> T + Send + Sync + 'static>(
        &self,
        f: R,
    ) -> crate::stream::DataStream<T> {
        let f = Arc::new(f);
        let key = self.key_selector();
        self.transform_keyed(
            "reduce",
            move |ctx, mut outs| {
                Ok(Box::new(RollingReduce::new(
                    key.clone(),
                    f.clone(),
                    ctx,
                    outs.main::<T>()?,
                )?))
            },
            Default::default(),
        )
    }

    /// Rolling aggregate: emits `(key, result)` after every record.
    pub fn aggregate<A: AggregateFunction<T>>(
        &self,
        agg: A,
    ) -> crate::stream::DataStream<(K, A::Out)>
    where
        K: Data,
    {
        let key = self.key_selector();
        self.transform_keyed(
            "aggregate",
            move |ctx, mut outs| {
                Ok(Box::new(RollingAggregate::new(
                    key.clone(),
                    agg.clone(),
                    ctx,
                    outs.main::<(K, A::Out)>()?,
                )?))
            },
            Default::default(),
        )
    }

    /// Runs a keyed process function (per-key state and timers).
    pub fn process<P: KeyedProcessFunction<K, T>>(
        &self,
        function: P,
    ) -> crate::stream::DataStream<P::Out> {
        let key = self.key_selector();
        self.transform_keyed(
            "process",
            move |ctx, mut outs| {
                Ok(Box::new(KeyedProcessOp::new(
                    key.clone(),
                    function.clone(),
                    ctx,
                    outs.main::<P::Out>()?,
                )?))
            },
            Default::default(),
        )
    }
}
