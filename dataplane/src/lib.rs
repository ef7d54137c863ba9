//! The mesoflow engine: DataStream API, operators, event time and windows, keyed state, exchanges
//! inside a process and the QUIC shuffle between processes.
//!
//! A job is a builder function over a [`StreamEnvironment`]; building it yields a [`Job`]: a
//! serialisable [`JobGraph`] (operators with stable ids, parallelism, max parallelism, edges with
//! their partitioning) plus the factories of its operators ([`registry::Registry`]).
//! [`plan::plan`] turns the graph into chained subtasks and channels; [`runtime::run_local`] runs
//! them on threads in this process. A TaskManager rebuilds the same program from the job's name
//! and parameters ([`jobs::build`]), adopts the graph the JobManager shipped
//! ([`Job::adopt_graph`]) and wires the subtasks placed on it with [`runtime::wiring::wire`]:
//! local channels between its own subtasks, QUIC channels to the others.
//!
//! ```
//! use std::sync::Arc;
//! use mesoflow_dataplane::source::VecSource;
//! use mesoflow_dataplane::window::WindowAssigner;
//! use mesoflow_dataplane::{EnvConfig, Rec, RuntimeConfig, SinkSpec, StreamEnvironment};
//! use mesoflow_dataplane::{WatermarkStrategy, run_local};
//!
//! let lines = Arc::new(parking_lot::Mutex::new(Vec::new()));
//! let mut env = StreamEnvironment::new(EnvConfig {
//!     parallelism: 2,
//!     sink: SinkSpec::Collect(lines.clone()),
//!     ..Default::default()
//! });
//! // (sensor, time in ms)
//! let readings = Arc::new(vec![Rec::untimed((1u32, 5i64)), Rec::untimed((1, 7)), Rec::untimed((2, 12))]);
//! env.add_source("readings", move |ctx| Ok(VecSource::new(&readings, ctx.subtask, ctx.parallelism)))
//!     .assign_timestamps_and_watermarks(|r| r.1, WatermarkStrategy::bounded_out_of_orderness(0))
//!     .key_by(|r: &(u32, i64)| r.0)
//!     .window(WindowAssigner::tumbling_event_time(10))
//!     .count()?
//!     .sink_lines("output", |(sensor, w, n), out| out.push_str(&format!("{sensor} {} {n}", w.end)));
//! run_local(env.build()?, RuntimeConfig::default())?;
//! let mut got = lines.lock().clone();
//! got.sort();
//! assert_eq!(got, vec!["1 10 2", "2 20 1"]);
//! # Ok::<(), mesoflow_dataplane::EngineError>(())
//! ```
//!
//! Records travel in batches with in-band events ([`ChannelEvent`]: watermarks, idleness,
//! checkpoint barriers, end of partition, cancel), the same on a local crossbeam channel and on
//! a QUIC stream; both implement [`runtime::channel::ChannelSender`] and
//! [`runtime::channel::ChannelReceiver`].
//!
//! [`control`] is the channel between the JobManager and its TaskManagers (registration,
//! heartbeats, deployments) over mutually authenticated QUIC, separate from the shuffle.

pub mod backoff;
pub mod checkpoint;
pub mod checksum;
pub mod context;
pub mod control;
pub mod duration;
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
pub mod source;
pub mod sources;
pub mod state;
pub mod stream;
pub mod timers;
pub mod unaligned;
pub mod watermarks;
pub mod window;

pub mod generators;
pub mod shuffle;

pub use context::{CancelToken, JobMetrics, RuntimeConfig, TaskContext};
pub use element::{Barrier, Batch, ChannelEvent, Control, Data, Message, Rec};
pub use error::{EngineError, Result};
pub use jobgraph::{JobGraph, Partitioning};
pub use runtime::{
    Job, JobResult, run_local, run_local_with_state, start_local, start_local_with_state,
};
pub use state::StateBackend;
pub use stream::{DataStream, EnvConfig, KeyedStream, OutputTag, SinkSpec, StreamEnvironment};
pub use watermarks::WatermarkStrategy;
