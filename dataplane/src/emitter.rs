//! The interface between chained operators: an operator is an [`Emitter`] of its input type that
//! holds the emitter of its output type.
//!
//! Chained operators call each other through this trait directly, one call per batch; exchanges to
//! other subtasks (local crossbeam channels, or the QUIC shuffle) implement the same trait, so an
//! operator does not know whether its output is chained or shipped.

use crate::element::{Batch, Control};
use crate::error::Result;

/// Receives batches and control elements.
pub trait Emitter<T>: Send {
    /// Takes a batch of records (ownership passes, so a stage can reuse the allocation).
    fn batch(&mut self, batch: Batch<T>) -> Result<()>;
    /// Takes a control element. Operators act on the ones they care about and forward all of
    /// them downstream (a window fires on a watermark and then forwards it).
    fn control(&mut self, control: Control) -> Result<()>;
}

/// A type-erased emitter: what the runtime wires together.
pub type BoxEmitter<T> = Box<dyn Emitter<T>>;

impl<T> Emitter<T> for BoxEmitter<T> {
    #[inline]
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        (**self).batch(batch)
    }
    #[inline]
    fn control(&mut self, control: Control) -> Result<()> {
        (**self).control(control)
    }
}

/// Drops everything: the output of a side output nobody consumes.
pub struct DiscardEmitter;

impl<T> Emitter<T> for DiscardEmitter {
    fn batch(&mut self, _batch: Batch<T>) -> Result<()> {
        Ok(())
    }
    fn control(&mut self, _control: Control) -> Result<()> {
        Ok(())
    }
}

/// Sends every batch and control element to several emitters (a stream consumed more than once).
pub struct FanOut<T> {
    outputs: Vec<BoxEmitter<T>>,
}

impl<T> FanOut<T> {
    /// Fans out to `outputs`.
    pub fn new(outputs: Vec<BoxEmitter<T>>) -> Self {
        Self { outputs }
    }
}

impl<T: Clone + Send> Emitter<T> for FanOut<T> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        let n = self.outputs.len();
        if n == 0 {
            return Ok(());
        }
        for out in &mut self.outputs[..n - 1] {
            out.batch(batch.clone())?;
        }
        self.outputs[n - 1].batch(batch)
    }

    fn control(&mut self, control: Control) -> Result<()> {
        for out in &mut self.outputs {
            out.control(control)?;
        }
        Ok(())
    }
}

/// Collects what it receives; used by tests of single operators.
#[derive(Debug)]
pub struct VecEmitter<T> {
    /// Records in arrival order.
    pub records: Batch<T>,
    /// Control elements in arrival order.
    pub controls: Vec<Control>,
}

impl<T> Default for VecEmitter<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            controls: Vec::new(),
        }
    }
}

impl<T: Send> Emitter<T> for VecEmitter<T> {
    fn batch(&mut self, mut batch: Batch<T>) -> Result<()> {
        self.records.append(&mut batch);
        Ok(())
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.controls.push(control);
        Ok(())
    }
}

/// A [`VecEmitter`] shared with the test that reads it (the operator owns a handle).
#[derive(Debug)]
pub struct SharedVecEmitter<T>(pub std::sync::Arc<parking_lot::Mutex<VecEmitter<T>>>);

impl<T> Clone for SharedVecEmitter<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for SharedVecEmitter<T> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<T: Send> Emitter<T> for SharedVecEmitter<T> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.0.lock().batch(batch)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.0.lock().control(control)
    }
}
