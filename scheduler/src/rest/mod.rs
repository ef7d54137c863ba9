//! The JobManager's REST API, with Flink's paths and JSON shapes so Flink habits and tools carry
//! over: cluster and job overviews, job details, TaskManagers, configuration, Prometheus
//! metrics, job submission and cancellation.
//!
//! - [`api`]: the JSON bodies and [`api::RestBackend`], the seam to the dispatcher;
//! - [`server`]: routes, bearer tokens, TLS, Flink-style errors;
//! - [`metrics`]: the Prometheus text format.
//!
//! It is not the web dashboard, and it never blocks on the JobManager: the backend answers
//! from snapshots.

pub mod api;
pub mod metrics;
pub mod server;

#[cfg(test)]
pub(crate) mod tests;

pub use api::{JobId, RestBackend, RestError};
pub use server::{RestConfig, RestServer, ServeError, TlsFiles, serve};
