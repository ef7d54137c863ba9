//! Session windows: per key, records closer than the gap form one window; a record that bridges
//! two sessions merges them (their accumulators are merged, nothing is replayed).

use std::sync::Arc;

use crate::context::TaskContext;
use crate::element::{Batch, Control, NO_TIMESTAMP, Rec};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::Result;
use crate::key_groups::Key;
use crate::keyed::AggregateFunction;
use crate::keyed::{StateIds, VALUES};
use crate::state::{KeyedStore, StateCodec};
use crate::timers::{TimeDomain, TimerQueue};
use crate::window::TimeWindow;

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Inactivity gap (ms).
    pub gap: i64,
    /// Event or processing time.
    pub domain: TimeDomain,
    /// Allowed lateness (ms).
    pub lateness: i64,
}

#[derive(Debug, Clone)]
struct Session<Acc> {
    window: TimeWindow,
    acc: Acc,
    fired: bool,
}

/// A key's sessions as snapshots and the cold tier store them: (start, end, acc, fired).
type StoredSessions<Acc> = Vec<(i64, i64, Acc, bool)>;

fn to_stored<Acc: Clone>(sessions: &[Session<Acc>]) -> StoredSessions<Acc> {
    sessions
        .iter()
        .map(|s| (s.window.start, s.window.end, s.acc.clone(), s.fired))
        .collect()
}

fn from_stored<Acc>(stored: StoredSessions<Acc>) -> Vec<Session<Acc>> {
    stored
        .into_iter()
        .map(|(start, end, acc, fired)| Session {
            window: TimeWindow { start, end },
            acc,
            fired,
        })
        .collect()
}

/// The session window operator.
pub struct SessionWindowOp<T, K, KF, A: AggregateFunction<T>, O, WF> {
    key: KF,
    agg: A,
    window_fn: Arc<WF>,
    config: SessionConfig,
    store: KeyedStore<K, Vec<Session<A::Acc>>>,
    timers: TimerQueue<K>,
    watermark: i64,
    processing_time: i64,
    state: StateIds,
    out: BoxEmitter<O>,
    late: BoxEmitter<T>,
}

/// Name of the session timers in a snapshot.
const TIMERS: &str = "timers";

impl<T, K, KF, A, O, WF> SessionWindowOp<T, K, KF, A, O, WF>
where
    T: Send + 'static,
    K: Key,
    KF: Fn(&T) -> K + Send,
    A: AggregateFunction<T>,
    O: Send + 'static,
    WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync,
{
    /// A session operator emitting to `out`, late records to `late`.
    pub fn new(
        key: KF,
        agg: A,
        window_fn: Arc<WF>,
        config: SessionConfig,
        ctx: &TaskContext,
        out: BoxEmitter<O>,
        late: BoxEmitter<T>,
    ) -> Result<Self> {
        let state = StateIds::of(ctx);
        let mut store =
            KeyedStore::for_operator(ctx, StateCodec::new(|s: &Vec<_>| to_stored(s), from_stored))?;
        store.restore_as(&state.checkpoint, &state.op, VALUES, from_stored)?;
        let mut timers = TimerQueue::default();
        timers.restore(&state.checkpoint, &state.op, TIMERS)?;
        Ok(Self {
            key,
            agg,
            window_fn,
            config,
            store,
            timers,
            watermark: i64::MIN,
            processing_time: i64::MIN,
            state,
            out,
            late,
        })
    }

    /// Hands the sessions and their timers to the checkpoint passing through.
    fn snapshot(&mut self) -> Result<()> {
        let StateIds { checkpoint, op } = &self.state;
        self.store
            .snapshot_as(checkpoint, op, VALUES, |s| to_stored(s))?;
        self.timers.snapshot(checkpoint, op, TIMERS)
    }

    /// The open sessions of `key`.
    pub fn sessions_of(&mut self, key: &K) -> Result<Vec<TimeWindow>> {
        Ok(self
            .store
            .get(key)?
            .map(|v| v.iter().map(|s| s.window).collect())
            .unwrap_or_default())
    }

    fn now(&self) -> i64 {
        match self.config.domain {
            TimeDomain::EventTime => self.watermark,
            TimeDomain::ProcessingTime => self.processing_time,
        }
    }

    fn on_record(&mut self, rec: Rec<T>, out: &mut Batch<O>) -> Result<()> {
        let ts = match self.config.domain {
            TimeDomain::EventTime => rec.ts,
            TimeDomain::ProcessingTime => self.processing_time,
        };
        let now = self.now();
        let gap = self.config.gap;
        let end = ts.saturating_add(gap);
        if ts == NO_TIMESTAMP
            || (self.config.domain == TimeDomain::EventTime
                && (end - 1).saturating_add(self.config.lateness) <= now)
        {
            return self.late.batch(vec![rec]);
        }
        let k = (self.key)(&rec.value);
        let agg = &self.agg;
        let sessions = self.store.get_or_insert_with(&k, Vec::new)?;
        let mut merged = Session {
            window: TimeWindow { start: ts, end },
            acc: agg.create(),
            fired: false,
        };
        agg.add(&mut merged.acc, &rec.value);
        let mut i = 0;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.window.start < merged.window.end && merged.window.start < s.window.end {
                let s = sessions.swap_remove(i);
                merged.window.start = merged.window.start.min(s.window.start);
                merged.window.end = merged.window.end.max(s.window.end);
                agg.merge(&mut merged.acc, &s.acc);
            } else {
                i += 1;
            }
        }
        let window = merged.window;
        sessions.push(merged);
        if window.max_timestamp() <= now {
            // Within the allowed lateness after the session closed: fire the update now.
            self.fire_key(&k, now, out)?;
        } else {
            self.timers.register(&k, window.max_timestamp());
        }
        Ok(())
    }

    /// Fires the due sessions of `key` and drops those past their lateness.
    fn fire_key(&mut self, k: &K, now: i64, out: &mut Batch<O>) -> Result<()> {
        let lateness = self.config.lateness;
        let sessions = self.store.get_or_insert_with(k, Vec::new)?;
        for s in sessions.iter_mut() {
            if !s.fired && s.window.max_timestamp() <= now {
                s.fired = true;
                out.push(Rec::new(
                    s.window.max_timestamp(),
                    (self.window_fn)(k, s.window, self.agg.result(&s.acc)),
                ));
            }
        }
        let mut cleanup = None;
        sessions.retain(|s| {
            let purge_at = s.window.max_timestamp().saturating_add(lateness);
            if purge_at <= now {
                false
            } else {
                if s.fired {
                    cleanup = Some(cleanup.map_or(purge_at, |c: i64| c.min(purge_at)));
                }
                true
            }
        });
        let empty = sessions.is_empty();
        if empty {
            self.store.remove(k)?;
        }
        if let Some(c) = cleanup {
            self.timers.register(k, c);
        }
        Ok(())
    }

    fn advance(&mut self, t: i64) -> Result<()> {
        let mut out = Vec::new();
        for (_, k) in self.timers.pop_due(t) {
            self.fire_key(&k, t, &mut out)?;
        }
        if !out.is_empty() {
            self.out.batch(out)?;
        }
        Ok(())
    }
}

impl<T, K, KF, A, O, WF> Emitter<T> for SessionWindowOp<T, K, KF, A, O, WF>
where
    T: Send + 'static,
    K: Key,
    KF: Fn(&T) -> K + Send,
    A: AggregateFunction<T>,
    O: Send + 'static,
    WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync,
{
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let mut out = Vec::new();
        for rec in batch {
            self.on_record(rec, &mut out)?;
        }
        if !out.is_empty() {
            self.out.batch(out)?;
        }
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::Watermark(w) => {
                self.watermark = w;
                if self.config.domain == TimeDomain::EventTime {
                    self.advance(w)?;
                }
            }
            Control::ProcessingTime(now) => {
                self.processing_time = now;
                if self.config.domain == TimeDomain::ProcessingTime {
                    self.advance(now)?;
                }
            }
            Control::EndOfInput => self.advance(i64::MAX)?,
            Control::Barrier(_) => self.snapshot()?,
            _ => {}
        }
        self.late.control(control)?;
        self.out.control(control)
    }
}
