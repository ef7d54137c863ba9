//! Stateless operators: map, filter, flat_map. Each processes a whole batch per call and calls
//! the user's function (monomorphised, never boxed) per record.

use std::sync::Arc;

use crate::element::{Batch, Control, Rec};
use crate::emitter::{BoxEmitter, Emitter};
use crate::error::Result;

/// Applies `f` to every record, keeping its timestamp.
pub struct MapOp<F, U> {
    f: Arc<F>,
    out: BoxEmitter<U>,
}

impl<F, U> MapOp<F, U> {
    /// Maps into `out`.
    pub fn new(f: Arc<F>, out: BoxEmitter<U>) -> Self {
        Self { f, out }
    }
}

impl<T: Send, U: Send, F: Fn(T) -> U + Send + Sync> Emitter<T> for MapOp<F, U> {
    #[inline]
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let f = &*self.f;
        let mapped: Batch<U> = batch
            .into_iter()
            .map(|r| Rec {
                ts: r.ts,
                value: f(r.value),
            })
            .collect();
        self.out.batch(mapped)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.out.control(control)
    }
}

/// Keeps the records `f` accepts.
pub struct FilterOp<F, T> {
    f: Arc<F>,
    out: BoxEmitter<T>,
}

impl<F, T> FilterOp<F, T> {
    /// Filters into `out`.
    pub fn new(f: Arc<F>, out: BoxEmitter<T>) -> Self {
        Self { f, out }
    }
}

impl<T: Send, F: Fn(&T) -> bool + Send + Sync> Emitter<T> for FilterOp<F, T> {
    #[inline]
    fn batch(&mut self, mut batch: Batch<T>) -> Result<()> {
        let f = &*self.f;
        batch.retain(|r| f(&r.value));
        if batch.is_empty() {
            return Ok(());
        }
        self.out.batch(batch)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.out.control(control)
    }
}

/// Calls `f` with each record and a buffer; every value `f` pushes becomes a record with the
/// input's timestamp.
pub struct FlatMapOp<F, U> {
    f: Arc<F>,
    scratch: Vec<U>,
    out: BoxEmitter<U>,
}

impl<F, U> FlatMapOp<F, U> {
    /// Flat-maps into `out`.
    pub fn new(f: Arc<F>, out: BoxEmitter<U>) -> Self {
        Self {
            f,
            scratch: Vec::new(),
            out,
        }
    }
}

impl<T: Send, U: Send, F: Fn(T, &mut Vec<U>) + Send + Sync> Emitter<T> for FlatMapOp<F, U> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let f = &*self.f;
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            f(r.value, &mut self.scratch);
            out.extend(self.scratch.drain(..).map(|v| Rec::new(r.ts, v)));
        }
        if out.is_empty() {
            return Ok(());
        }
        self.out.batch(out)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.out.control(control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emitter::SharedVecEmitter;

    #[test]
    fn chained_map_filter_flat_map_call_each_other_directly() {
        let sink = SharedVecEmitter::<String>::default();
        let flat = FlatMapOp::new(
            Arc::new(|s: String, out: &mut Vec<String>| {
                out.extend(s.split(' ').map(str::to_string))
            }),
            Box::new(sink.clone()),
        );
        // The filter sees whole lines: the one built from 3 is dropped.
        let filter = FilterOp::new(Arc::new(|s: &String| !s.starts_with("a3")), Box::new(flat));
        let mut map = MapOp::new(Arc::new(|n: u32| format!("a{n} b c{n}")), Box::new(filter));
        map.batch(vec![Rec::new(5, 1), Rec::new(7, 3), Rec::new(6, 22)])
            .unwrap();
        map.control(Control::Watermark(6)).unwrap();
        let got = sink.0.lock();
        let words: Vec<_> = got
            .records
            .iter()
            .map(|r| (r.ts, r.value.as_str()))
            .collect();
        assert_eq!(
            words,
            vec![
                (5, "a1"),
                (5, "b"),
                (5, "c1"),
                (6, "a22"),
                (6, "b"),
                (6, "c22")
            ]
        );
        assert_eq!(got.controls, vec![Control::Watermark(6)]);
    }
}
