//! Event time: timestamp assignment and watermark generation.
//!
//! A watermark `w` promises that no record with a timestamp `<= w` follows. With a bounded
//! out-of-orderness `d`, the generator emits `max_timestamp - d - 1` (as Flink does). A source
//! that sees no records for `idle_timeout` declares itself idle, so downstream operators with
//! several inputs do not wait for it.

use std::sync::Arc;

use crate::element::{Batch, Control, MAX_WATERMARK};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::Result;

/// How watermarks are generated from the assigned timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// Maximum expected lateness of a record behind the largest timestamp seen so far (ms).
    pub max_out_of_orderness_ms: i64,
    /// Declare the input idle after this long without records (ms); `None` never does.
    pub idle_timeout_ms: Option<i64>,
}

impl WatermarkStrategy {
    /// Timestamps never go backwards.
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(0)
    }

    /// Timestamps may be up to `ms` behind the largest seen.
    pub fn bounded_out_of_orderness(ms: i64) -> Self {
        Self {
            max_out_of_orderness_ms: ms.max(0),
            idle_timeout_ms: None,
        }
    }

    /// Declares the input idle after `ms` without records.
    pub fn with_idleness(mut self, ms: i64) -> Self {
        self.idle_timeout_ms = Some(ms.max(1));
        self
    }
}

/// Pure watermark generator state: fed timestamps and processing time, says what to emit.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    max_ts: i64,
    emitted: i64,
    last_record_at: Option<i64>,
    idle: bool,
}

impl WatermarkGenerator {
    /// A generator following `strategy`.
    pub fn new(strategy: WatermarkStrategy) -> Self {
        Self {
            strategy,
            max_ts: i64::MIN,
            emitted: i64::MIN,
            last_record_at: None,
            idle: false,
        }
    }

    /// Records with these timestamps arrived at processing time `now` (if known).
    #[inline]
    pub fn on_timestamp(&mut self, ts: i64) {
        if ts > self.max_ts {
            self.max_ts = ts;
        }
    }

    /// After a batch: the watermark to emit if it advanced.
    pub fn on_batch_end(&mut self, now: Option<i64>) -> Option<i64> {
        if let Some(now) = now {
            self.last_record_at = Some(now);
        }
        self.idle = false;
        if self.max_ts == i64::MIN {
            return None;
        }
        let w = self
            .max_ts
            .saturating_sub(self.strategy.max_out_of_orderness_ms)
            .saturating_sub(1);
        if w > self.emitted {
            self.emitted = w;
            Some(w)
        } else {
            None
        }
    }

    /// Processing time advanced: returns true when the input just became idle.
    pub fn on_processing_time(&mut self, now: i64) -> bool {
        let Some(timeout) = self.strategy.idle_timeout_ms else {
            return false;
        };
        let last = *self.last_record_at.get_or_insert(now);
        if !self.idle && now - last >= timeout {
            self.idle = true;
            return true;
        }
        false
    }
}

/// Assigns each record its event timestamp and emits watermarks after each batch.
pub struct TimestampAssigner<F, T> {
    extract: Arc<F>,
    generator: WatermarkGenerator,
    now: Option<i64>,
    out: BoxEmitter<T>,
}

impl<F, T> TimestampAssigner<F, T> {
    /// Assigns with `extract` and generates watermarks by `strategy`.
    pub fn new(extract: Arc<F>, strategy: WatermarkStrategy, out: BoxEmitter<T>) -> Self {
        Self {
            extract,
            generator: WatermarkGenerator::new(strategy),
            now: None,
            out,
        }
    }
}

impl<T: Send, F: Fn(&T) -> i64 + Send + Sync> Emitter<T> for TimestampAssigner<F, T> {
    fn batch(&mut self, mut batch: Batch<T>) -> Result<()> {
        let f = &*self.extract;
        let mut max = i64::MIN;
        for r in &mut batch {
            r.ts = f(&r.value);
            max = max.max(r.ts);
        }
        self.generator.on_timestamp(max);
        self.out.batch(batch)?;
        if let Some(w) = self.generator.on_batch_end(self.now) {
            self.out.control(Control::Watermark(w))?;
        }
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            // Upstream watermarks are replaced by ours, except the final one.
            Control::Watermark(w) if w < MAX_WATERMARK => Ok(()),
            Control::Idle => Ok(()),
            Control::ProcessingTime(now) => {
                self.now = Some(now);
                if self.generator.on_processing_time(now) {
                    self.out.control(Control::Idle)?;
                }
                self.out.control(control)
            }
            c => self.out.control(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Rec;
    use crate::emitter::SharedVecEmitter;

    #[test]
    fn bounded_out_of_orderness_watermark_is_max_minus_delay_minus_one() {
        let sink = SharedVecEmitter::<i64>::default();
        let mut op = TimestampAssigner::new(
            Arc::new(|v: &i64| *v),
            WatermarkStrategy::bounded_out_of_orderness(5),
            Box::new(sink.clone()),
        );
        op.batch(vec![Rec::untimed(100), Rec::untimed(90)]).unwrap();
        op.batch(vec![Rec::untimed(95)]).unwrap(); // no advance, no watermark
        op.batch(vec![Rec::untimed(120)]).unwrap();
        op.control(Control::Watermark(7)).unwrap(); // upstream watermark swallowed
        op.control(Control::Watermark(MAX_WATERMARK)).unwrap();
        let got = sink.0.lock();
        assert_eq!(
            got.records.iter().map(|r| r.ts).collect::<Vec<_>>(),
            vec![100, 90, 95, 120]
        );
        assert_eq!(
            got.controls,
            vec![
                Control::Watermark(94),
                Control::Watermark(114),
                Control::Watermark(MAX_WATERMARK)
            ]
        );
    }

    #[test]
    fn idleness_is_declared_after_timeout_and_cleared_by_records() {
        let mut g = WatermarkGenerator::new(WatermarkStrategy::monotonous().with_idleness(100));
        assert!(!g.on_processing_time(1_000));
        g.on_timestamp(5);
        assert_eq!(g.on_batch_end(Some(1_050)), Some(4));
        assert!(!g.on_processing_time(1_100));
        assert!(g.on_processing_time(1_150));
        assert!(!g.on_processing_time(1_300)); // only once
        g.on_timestamp(6);
        assert_eq!(g.on_batch_end(Some(1_400)), Some(5));
        assert!(g.on_processing_time(1_500));
    }
}
