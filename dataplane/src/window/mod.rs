//! Windows over keyed streams: tumbling, sliding and session; event time and processing time;
//! allowed lateness with a side output for records that come too late; incremental aggregation
//! with an optional function over the whole window's result.
//!
//! Tumbling and sliding windows share one operator ([`slicing::SliceWindowOp`]) that keeps one
//! accumulator per key and *slice* of `gcd(size, slide)` ms, and combines the slices of a window
//! when it fires: a record is added once, never copied into each of the windows it belongs to.

pub mod session;
pub mod slicing;

use std::collections::HashMap;
use std::sync::Arc;

use crate::element::Data;
use crate::key_groups::Key;
use crate::keyed::{AggregateFunction, Count, Reduce};
use crate::stream::{DataStream, KeyedStream, OutputTag};
use crate::timers::TimeDomain;

/// A half-open time interval `[start, end)`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The largest timestamp in the window; results carry it as their timestamp.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// Which windows a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows aligned to the epoch.
    Tumbling {
        /// Size (ms).
        size: i64,
        /// Clock.
        domain: TimeDomain,
    },
    /// Fixed-size windows starting every `slide` ms.
    Sliding {
        /// Size (ms).
        size: i64,
        /// Distance between window starts (ms).
        slide: i64,
        /// Clock.
        domain: TimeDomain,
    },
    /// Per key, records closer than `gap` ms join one window.
    Session {
        /// Inactivity gap (ms).
        gap: i64,
        /// Clock.
        domain: TimeDomain,
    },
}

impl WindowAssigner {
    /// Tumbling event-time windows of `size` ms.
    pub fn tumbling_event_time(size: i64) -> Self {
        Self::Tumbling {
            size,
            domain: TimeDomain::EventTime,
        }
    }
    /// Tumbling processing-time windows of `size` ms.
    pub fn tumbling_processing_time(size: i64) -> Self {
        Self::Tumbling {
            size,
            domain: TimeDomain::ProcessingTime,
        }
    }
    /// Sliding event-time windows.
    pub fn sliding_event_time(size: i64, slide: i64) -> Self {
        Self::Sliding {
            size,
            slide,
            domain: TimeDomain::EventTime,
        }
    }
    /// Sliding processing-time windows.
    pub fn sliding_processing_time(size: i64, slide: i64) -> Self {
        Self::Sliding {
            size,
            slide,
            domain: TimeDomain::ProcessingTime,
        }
    }
    /// Event-time session windows.
    pub fn session_event_time(gap: i64) -> Self {
        Self::Session {
            gap,
            domain: TimeDomain::EventTime,
        }
    }
    /// Processing-time session windows.
    pub fn session_processing_time(gap: i64) -> Self {
        Self::Session {
            gap,
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// Checks sizes; an error names the bad value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str, v: i64| {
            Err(crate::EngineError::InvalidArgument(format!(
                "window {what} must be a positive number of milliseconds, got {v}"
            )))
        };
        match *self {
            Self::Tumbling { size, .. } if size <= 0 => bad("size", size),
            Self::Sliding { size, .. } if size <= 0 => bad("size", size),
            Self::Sliding { slide, .. } if slide <= 0 => bad("slide", slide),
            Self::Session { gap, .. } if gap <= 0 => bad("gap", gap),
            _ => Ok(()),
        }
    }
}

/// A keyed stream with a window assigner, waiting for its aggregation.
pub struct WindowedStream<T, K, F> {
    keyed: KeyedStream<T, K, F>,
    assigner: WindowAssigner,
    lateness: i64,
    late_tag: Option<OutputTag<T>>,
}

impl<T: Data, K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static> KeyedStream<T, K, F> {
    /// Groups the keyed stream into windows.
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<T, K, F> {
        WindowedStream {
            keyed: self.clone(),
            assigner,
            lateness: 0,
            late_tag: None,
        }
    }
}

impl<T: Data, K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static> WindowedStream<T, K, F> {
    /// Keeps window state `ms` past the window's end; records arriving in that time update the
    /// window and fire it again.
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.lateness = ms.max(0);
        self
    }

    /// Sends records that arrive after their windows were purged to `tag` instead of dropping
    /// them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    /// Aggregates each window incrementally and passes the result with key and window to
    /// `window_fn`, whose return value is emitted.
    pub fn aggregate_with<A, O, WF>(&self, agg: A, window_fn: WF) -> crate::Result<DataStream<O>>
    where
        A: AggregateFunction<T>,
        O: Data,
        WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync + 'static,
    {
        self.assigner.validate()?;
        let window_fn = Arc::new(window_fn);
        let key = self.keyed.key.clone();
        let late = self.late_tag.as_ref().map(|t| t.name().to_string());
        let mut sides = HashMap::new();
        if let Some(t) = &self.late_tag {
            sides.insert(t.name().to_string(), crate::registry::TypeOf::<T>::shared());
        }
        let lateness = self.lateness;
        let stream = match self.assigner {
            WindowAssigner::Tumbling { size, domain } => self.slicing(
                size, size, domain, lateness, agg, window_fn, key, late, sides,
            ),
            WindowAssigner::Sliding {
                size,
                slide,
                domain,
            } => self.slicing(
                size, slide, domain, lateness, agg, window_fn, key, late, sides,
            ),
            WindowAssigner::Session { gap, domain } => self.keyed.transform_keyed(
                "session-window",
                move |ctx, mut outs| {
                    let late_out = match &late {
                        Some(tag) => outs.side::<T>(tag)?,
                        None => Box::new(crate::emitter::DiscardEmitter),
                    };
                    Ok(Box::new(session::SessionWindowOp::new(
                        key.clone(),
                        agg.clone(),
                        window_fn.clone(),
                        session::SessionConfig {
                            gap,
                            domain,
                            lateness,
                        },
                        ctx,
                        outs.main::<O>()?,
                        late_out,
                    )?))
                },
                sides,
            ),
        };
        Ok(stream)
    }

    #[allow(clippy::too_many_arguments)]
    fn slicing<A, O, WF>(
        &self,
        size: i64,
        slide: i64,
        domain: TimeDomain,
        lateness: i64,
        agg: A,
        window_fn: Arc<WF>,
        key: F,
        late: Option<String>,
        sides: HashMap<String, Arc<dyn crate::registry::StreamType>>,
    ) -> DataStream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
        WF: Fn(&K, TimeWindow, A::Out) -> O + Send + Sync + 'static,
    {
        let name = if size == slide {
            "tumbling-window"
        } else {
            "sliding-window"
        };
        self.keyed.transform_keyed(
            name,
            move |ctx, mut outs| {
                let late_out = match &late {
                    Some(tag) => outs.side::<T>(tag)?,
                    None => Box::new(crate::emitter::DiscardEmitter),
                };
                Ok(Box::new(slicing::SliceWindowOp::new(
                    key.clone(),
                    agg.clone(),
                    window_fn.clone(),
                    slicing::SliceConfig {
                        size,
                        slide,
                        domain,
                        lateness,
                    },
                    ctx,
                    outs.main::<O>()?,
                    late_out,
                )?))
            },
            sides,
        )
    }

    /// Aggregates each window; emits `(key, window, result)`.
    pub fn aggregate<A: AggregateFunction<T>>(
        &self,
        agg: A,
    ) -> crate::Result<DataStream<(K, TimeWindow, A::Out)>>
    where
        K: Data,
    {
        self.aggregate_with(agg, |k: &K, w, r| (k.clone(), w, r))
    }

    /// Counts records per key and window; emits `(key, window, count)`.
    pub fn count(&self) -> crate::Result<DataStream<(K, TimeWindow, u64)>> {
        self.aggregate(Count)
    }

    /// Reduces each window's records with `f`; emits `(key, window, reduced)`.
    pub fn reduce<R: Fn(&T, &T) -> T + Send + Sync + 'static>(
        &self,
        f: R,
    ) -> crate::Result<DataStream<(K, TimeWindow, T)>> {
        self.aggregate_with(Reduce::new(f), |k: &K, w, r: Option<T>| {
            // A window fires only when it holds at least one record, so `r` is set.
            (
                k.clone(),
                w,
                r.unwrap_or_else(|| unreachable!("window fired without records")),
            )
        })
    }
}

/// Greatest common divisor (slice length of a sliding window).
pub fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a.abs()
}
