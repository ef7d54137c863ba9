//! The Mesos v1 scheduler client: a sans-IO state machine, its async HTTP shell, and
//! leading-master detection.
//!
//! - [`client`]: [`SchedulerClient`], the pure state machine (events in, HTTP requests, timers
//!   and owner events out; `now` passed in). All protocol rules live here.
//! - [`endpoint`]: master URLs, `Location` resolution, the request description.
//! - [`events`]: what the owner receives ([`SchedulerEvent`], [`FatalError`], [`AckToken`]).
//! - [`reconcile`]: the explicit/implicit reconciliation loop.
//! - retry delays come from [`mesoflow_dataplane::backoff`] (exponential, seeded jitter).
//! - [`detector`]: `mesos.master` parsing and ZooKeeper leader detection.
//! - [`shell`]: the tokio/reqwest driver running the machine ([`shell::spawn`],
//!   [`SchedulerHandle`]).
//!
//! # Using it
//!
//! ```no_run
//! use mesoflow_proto::mesos::v1::FrameworkInfo;
//! use mesoflow_scheduler::mesos::{MasterSpec, SchedulerConfig, SchedulerEvent, spawn};
//!
//! # async fn run(stored_framework_id: Option<mesoflow_proto::mesos::v1::FrameworkId>) -> anyhow::Result<()> {
//! // `-Dmesos.master=...`: host:port list, zk://..., or file://...
//! let (masters, source, _detector) = MasterSpec::load("zk://node:2181/mesos")?.into_source();
//! let mut config = SchedulerConfig::new(
//!     FrameworkInfo {
//!         user: "mesoflow".into(),
//!         name: "mesoflow".into(),
//!         failover_timeout: Some(7.0 * 24.0 * 3600.0),
//!         checkpoint: Some(true),
//!         ..Default::default()
//!     },
//!     masters,
//! );
//! config.framework_id = stored_framework_id; // fail over to the persisted id, if any
//! let (handle, mut events, _task) = spawn(config, source)?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         SchedulerEvent::Subscribed { framework_id, .. } => { /* persist framework_id first */ }
//!         SchedulerEvent::Offers(offers) => {
//!             let ids = offers.into_iter().map(|o| o.id).collect();
//!             handle.decline(ids, Some(300.0)).await?;
//!         }
//!         SchedulerEvent::Update { status, ack } => {
//!             // persist the task's new state, then:
//!             if let Some(token) = ack {
//!                 handle.acknowledge(token).await?;
//!             }
//!         }
//!         SchedulerEvent::Fatal(error) => return Err(error.into()),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

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
