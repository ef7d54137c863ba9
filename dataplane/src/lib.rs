//! The mesoflow engine: DataStream API, operators, event time and windows, keyed state, exchanges
//! inside a process and the QUIC shuffle between processes.
//!
//! A job is a builder function over a [`StreamEnvironment`]; building it yields a [`Job`]: a
//! serialisable [`JobGraph`] plus the factories of its operators. [`plan::plan`] turns the graph
//! into chained subtasks and channels; [`runtime::run_local`] runs them on threads in this
//! process, and executors build the subtasks they are assigned with [`runtime::build_subtask`].

pub mod checksum;
pub mod context;
pub mod element;
pub mod emitter;
pub mod error;
pub mod exchange;
pub mod input_gate;
pub mod jobgraph;
pub mod jobs;
pub mod key_groups;
pub mod keyed;
pub mod operators;
pub mod plan;
pub mod registry;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod source;
pub mod state;
pub mod stream;
pub mod timers;
pub mod watermarks;
pub mod window;

pub mod generators;
pub mod shuffle;

pub use context::{CancelToken, JobMetrics, RuntimeConfig, TaskContext};
pub use element::{Batch, Control, Data, Message, Rec};
pub use error::{EngineError, Result};
pub use jobgraph::{JobGraph, Partitioning};
pub use runtime::{Job, JobResult, run_local, start_local};
pub use stream::{DataStream, EnvConfig, KeyedStream, OutputTag, SinkSpec, StreamEnvironment};
pub use watermarks::WatermarkStrategy;
