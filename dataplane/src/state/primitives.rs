//! Per-key state primitives beyond value, list and map (see [`super`]): reducing and
//! aggregating state, and time-to-live for any of them.
//!
//! They are fields of a keyed process function's per-key state struct, checkpointed with it:
//! each holds only data (rkyv-serializable), and takes the function it applies as an argument,
//! since functions are code, rebuilt with the job, not state.

use crate::element::Data;
use crate::keyed::AggregateFunction;

/// A value per key that every added element is folded into with a reduce function.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReducingState<V>(Option<V>);

impl<V> Default for ReducingState<V> {
    fn default() -> Self {
        Self(None)
    }
}

impl<V: Clone> ReducingState<V> {
    /// Folds `v` in with `reduce`.
    pub fn add(&mut self, v: V, reduce: impl Fn(&V, &V) -> V) {
        self.0 = Some(match self.0.take() {
            Some(acc) => reduce(&acc, &v),
            None => v,
        });
    }
    /// The reduced value, if anything was added.
    pub fn get(&self) -> Option<&V> {
        self.0.as_ref()
    }
    /// Clears it.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// An accumulator per key that elements are added to with an [`AggregateFunction`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AggregatingState<Acc>(Option<Acc>);

impl<Acc> Default for AggregatingState<Acc> {
    fn default() -> Self {
        Self(None)
    }
}

impl<Acc: Data> AggregatingState<Acc> {
    /// Adds `value` with `agg`.
    pub fn add<T, A: AggregateFunction<T, Acc = Acc>>(&mut self, agg: &A, value: &T) {
        let acc = self.0.get_or_insert_with(|| agg.create());
        agg.add(acc, value);
    }
    /// The aggregate's result, if anything was added.
    pub fn get<T, A: AggregateFunction<T, Acc = Acc>>(&self, agg: &A) -> Option<A::Out> {
        self.0.as_ref().map(|acc| agg.result(acc))
    }
    /// Clears it.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// When reading or writing refreshes a state's time-to-live (Flink's `StateTtlConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// Only creating and writing refresh it.
    OnCreateAndWrite,
    /// Reading refreshes it too.
    OnReadAndWrite,
}

/// Time-to-live of a state: expired state is never returned (it reads as absent), and it is
/// dropped when next accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlConfig {
    /// How long the state lives after its last refresh, in milliseconds.
    pub ttl_ms: i64,
    /// What refreshes it.
    pub update: TtlUpdate,
}

impl TtlConfig {
    /// Expires `ttl_ms` after creation or the last write.
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            update: TtlUpdate::OnCreateAndWrite,
        }
    }
}

/// Any state `S` with a time-to-live. Time is the processing time the caller passes in (the
/// process context's `current_processing_time`), so that a restored job goes on from the
/// checkpointed timestamps.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Ttl<S> {
    state: Option<S>,
    refreshed_at: i64,
}

impl<S> Default for Ttl<S> {
    fn default() -> Self {
        Self {
            state: None,
            refreshed_at: i64::MIN,
        }
    }
}

impl<S: Default> Ttl<S> {
    fn expire(&mut self, config: &TtlConfig, now: i64) {
        if self.state.is_some() && now.saturating_sub(self.refreshed_at) >= config.ttl_ms {
            self.state = None;
        }
    }

    /// The state for reading: `None` when absent or expired.
    pub fn get(&mut self, config: &TtlConfig, now: i64) -> Option<&S> {
        self.expire(config, now);
        if self.state.is_some() && config.update == TtlUpdate::OnReadAndWrite {
            self.refreshed_at = now;
        }
        self.state.as_ref()
    }

    /// The state for writing (created if absent or expired); refreshes its time-to-live.
    pub fn get_mut(&mut self, config: &TtlConfig, now: i64) -> &mut S {
        self.expire(config, now);
        self.refreshed_at = now;
        self.state.get_or_insert_with(S::default)
    }

    /// True when the state expired (or was never set): the key's state can be dropped.
    pub fn is_expired(&self, config: &TtlConfig, now: i64) -> bool {
        self.state.is_none() || now.saturating_sub(self.refreshed_at) >= config.ttl_ms
    }

    /// Clears it.
    pub fn clear(&mut self) {
        self.state = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::codec::{decode_vec, encode_vec};
    use crate::keyed::Count;
    use crate::state::{ListState, MapState, ValueState};

    #[test]
    fn reducing_and_aggregating_state_fold_what_is_added() {
        let mut r = ReducingState::default();
        assert_eq!(r.get(), None);
        for v in [3, 9, 4] {
            r.add(v, |a: &i32, b: &i32| *a.max(b));
        }
        assert_eq!(r.get(), Some(&9));
        let mut a = AggregatingState::<u64>::default();
        for v in ["x", "y", "z"] {
            a.add(&Count, &v);
        }
        assert_eq!(a.get::<&str, Count>(&Count), Some(3));
        a.clear();
        assert_eq!(a.get::<&str, Count>(&Count), None);
    }

    #[test]
    fn ttl_never_returns_expired_state() {
        let cfg = TtlConfig::new(100);
        let mut t = Ttl::<ValueState<u32>>::default();
        assert!(t.get(&cfg, 0).is_none());
        t.get_mut(&cfg, 1_000).update(7);
        assert_eq!(t.get(&cfg, 1_050).and_then(|v| v.value()), Some(&7));
        // Reading does not refresh by default: it expires 100 ms after the write.
        assert!(t.get(&cfg, 1_100).is_none());
        assert!(t.is_expired(&cfg, 1_100));
        // A write after expiry starts from an empty state.
        assert_eq!(t.get_mut(&cfg, 2_000).value(), None);

        let read = TtlConfig {
            ttl_ms: 100,
            update: TtlUpdate::OnReadAndWrite,
        };
        let mut l = Ttl::<ListState<u8>>::default();
        l.get_mut(&read, 0).add(1);
        for now in [90, 180, 270] {
            assert_eq!(
                l.get(&read, now).map(|s| s.get().len()),
                Some(1),
                "at {now}"
            );
        }
        assert!(l.get(&read, 400).is_none());
    }

    #[test]
    fn primitives_survive_a_checkpoint_round_trip() {
        let cfg = TtlConfig::new(1_000);
        let mut state = (
            ReducingState::default(),
            Ttl::<ValueState<String>>::default(),
            MapState::<String, u32>::default(),
        );
        state.0.add(5u64, |a, b| a + b);
        state.0.add(6u64, |a, b| a + b);
        state.1.get_mut(&cfg, 10).update("kept".into());
        state.2.put("k".into(), 3);
        let bytes = encode_vec(std::slice::from_ref(&state)).unwrap();
        type Stored = (
            ReducingState<u64>,
            Ttl<ValueState<String>>,
            MapState<String, u32>,
        );
        let mut back = decode_vec::<Stored>(&bytes).unwrap();
        assert_eq!(back[0].2.get(&"k".to_string()), Some(&3));
        assert_eq!(back[0].0.get(), Some(&11));
        assert_eq!(
            back[0]
                .1
                .get(&cfg, 500)
                .and_then(|v| v.value())
                .map(String::as_str),
            Some("kept")
        );
        assert!(back[0].1.get(&cfg, 1_010).is_none());
    }
}
