//! The Mesos v1 scheduler client: a sans-IO state machine, its async HTTP shell, and
//! leading-master detection.
//!
//! - [`client`]: [`SchedulerClient`], the pure state machine (events in, HTTP requests, timers
//!   and owner events out; `now` passed in). All protocol rules live here.
//! - [`endpoint`]: master URLs, `Location` resolution, the request description.
//! - [`events`]: what the owner receives ([`SchedulerEvent`], [`FatalError`], [`AckToken`]).
//! - [`reconcile`]: the explicit/implicit reconciliation loop.
//! - [`backoff`]: exponential backoff with seeded jitter.
//! - [`detector`]: `mesos.master` parsing and ZooKeeper leader detection.
//! - [`shell`]: the tokio/reqwest driver running the machine ([`shell::spawn`],
//!   [`SchedulerHandle`]).

pub mod backoff;
pub mod client;
pub mod detector;
pub mod endpoint;
pub mod events;
pub mod reconcile;
pub mod shell;

pub use client::{
    Action, CallId, CommandError, ConnectionId, Credentials, SchedulerClient, SchedulerConfig,
    SubscribeResponse,
};
pub use detector::{MasterSpec, ZkUrl};
pub use endpoint::{HttpRequest, MasterEndpoint, RequestKind};
pub use events::{AckToken, DisconnectReason, ExitStatus, FatalError, SchedulerEvent};
pub use shell::{DriverError, MasterSource, SchedulerHandle, spawn};
