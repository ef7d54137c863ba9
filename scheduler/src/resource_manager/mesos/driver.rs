//! [`MesosDriver`]: the tokio shell around [`MesosResourceManager`].
//!
//! It owns the scheduler client ([`crate::mesos::spawn`]) and one task that feeds the machine
//! the client's events and the clock, performs the machine's actions through the
//! [`SchedulerHandle`], acknowledges each status update after the machine has applied it, and
//! forwards [`WorkerEvent`]s to the owner. The machine sits behind a mutex shared with the
//! [`ResourceManagerDriver`] methods, so a refused request (duplicate id, failure budget spent,
//! shutting down) is refused synchronously; the lock is never held across an `await`.
//!
//! A fatal client error (credentials refused, framework removed, ...) stops the driver: it is
//! logged once, published on [`MesosDriver::exit`], and later requests are refused with it. No
//! retry loop: those errors need an operator.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use mesoflow_proto::mesos::v1::{Filters, FrameworkInfo, framework_info};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use super::{
    MesosDriverConfig,
    launch::TaskSpecBuilder,
    machine::{Action, MesosMetrics, MesosResourceManager},
};
use crate::mesos::{
    Credentials, FatalError, MasterSpec, SchedulerConfig, SchedulerEvent, SchedulerHandle,
    detector::DetectorError, shell::SpawnError, spawn,
};
use crate::resource_manager::{
    ResourceError, ResourceManagerDriver, WorkerEvent, WorkerId, WorkerSpec,
};

/// How long the driver waits for the master to confirm TEARDOWN.
const TEARDOWN_WAIT: Duration = Duration::from_secs(10);

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum MesosDriverError {
    /// `mesos.master` is not usable.
    #[error("mesos.master: {0}")]
    Master(#[from] DetectorError),
    /// The scheduler client could not start.
    #[error(transparent)]
    Client(#[from] SpawnError),
    /// A setting is invalid.
    #[error("invalid Mesos driver setting: {0}")]
    Config(String),
}

/// Why the driver stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverExit {
    /// The framework was torn down after [`MesosDriver::shutdown`].
    #[error("the Mesos framework was torn down")]
    TornDown,
    /// The scheduler client hit an error it cannot recover from.
    #[error(transparent)]
    Fatal(#[from] FatalError),
    /// The scheduler client's task ended unexpectedly.
    #[error("the Mesos scheduler client stopped unexpectedly")]
    ClientStopped,
    /// TEARDOWN could not be sent or was not confirmed (e.g. no master reachable); the
    /// framework ends only when its failover timeout expires.
    #[error("could not tear the Mesos framework down: {0}")]
    TeardownFailed(String),
}

/// The Mesos ResourceManager driver (see the module docs).
pub struct MesosDriver {
    machine: Arc<Mutex<MesosResourceManager>>,
    wake: Arc<Notify>,
    exit: watch::Receiver<Option<DriverExit>>,
    task: Option<JoinHandle<()>>,
    client_task: Option<JoinHandle<()>>,
    detector: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MesosDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MesosDriver")
            .field("metrics", &self.metrics())
            .field("exit", &*self.exit.borrow())
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<MesosResourceManager>) -> MutexGuard<'_, MesosResourceManager> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The client's configuration: one role with MULTI_ROLE, checkpointing on, offers suppressed
/// until there is demand.
fn scheduler_config(
    config: &MesosDriverConfig,
    masters: Vec<crate::mesos::MasterEndpoint>,
) -> Result<SchedulerConfig, MesosDriverError> {
    let fw = &config.framework;
    if fw.user.is_empty() || fw.name.is_empty() || fw.role.is_empty() {
        return Err(MesosDriverError::Config(
            "the framework's user, name and role must not be empty".into(),
        ));
    }
    let capability = |t: framework_info::capability::Type| framework_info::Capability {
        r#type: Some(t as i32),
    };
    let info = FrameworkInfo {
        user: fw.user.clone(),
        name: fw.name.clone(),
        failover_timeout: Some(fw.failover_timeout.as_secs_f64()),
        checkpoint: Some(true),
        roles: vec![fw.role.clone()],
        principal: fw.principal.clone(),
        capabilities: vec![
            capability(framework_info::capability::Type::MultiRole),
            capability(framework_info::capability::Type::TaskKillingState),
        ],
        ..Default::default()
    };
    let mut sc = SchedulerConfig::new(info, masters);
    sc.suppressed_roles = vec![fw.role.clone()];
    sc.credentials = match (&fw.principal, &fw.secret) {
        (Some(principal), Some(secret)) => Some(Credentials {
            principal: principal.clone(),
            secret: secret.clone(),
        }),
        (None, Some(_)) => {
            return Err(MesosDriverError::Config(
                "a framework secret needs a principal".into(),
            ));
        }
        _ => None,
    };
    Ok(sc)
}

impl MesosDriver {
    /// Subscribes to the master and starts the driver task; worker events go to `events`.
    /// Call inside a tokio runtime.
    pub fn start(
        config: MesosDriverConfig,
        builder: Box<dyn TaskSpecBuilder>,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Result<Self, MesosDriverError> {
        let (masters, source, detector) = MasterSpec::load(&config.master)?.into_source();
        let sc = scheduler_config(&config, masters)?;
        let (handle, client_events, client_task) = spawn(sc, source)?;
        let machine = Arc::new(Mutex::new(MesosResourceManager::new(&config, builder)));
        let wake = Arc::new(Notify::new());
        let (exit_tx, exit) = watch::channel(None);
        let shell = Shell {
            machine: Arc::clone(&machine),
            wake: Arc::clone(&wake),
            handle,
            client_events,
            owner: events,
            role: config.framework.role.clone(),
            exit: exit_tx,
        };
        let task = tokio::spawn(shell.run());
        Ok(Self {
            machine,
            wake,
            exit,
            task: Some(task),
            client_task: Some(client_task),
            detector,
        })
    }

    /// Current counters.
    pub fn metrics(&self) -> MesosMetrics {
        lock(&self.machine).metrics()
    }

    /// Reads the counters later, wherever the driver itself has gone (e.g. into the loop
    /// that owns it).
    pub fn metrics_source(&self) -> Box<dyn Fn() -> MesosMetrics + Send + Sync> {
        let machine = Arc::clone(&self.machine);
        Box::new(move || lock(&machine).metrics())
    }

    /// Why the driver stopped (`None` while it runs); wait on it with `changed()`.
    pub fn exit(&self) -> watch::Receiver<Option<DriverExit>> {
        self.exit.clone()
    }

    /// Kills every task, waits (at most `grace`) for their ends, then tears the framework
    /// down. `Ok` once torn down; the error says what stopped the driver otherwise.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), DriverExit> {
        lock(&self.machine).shutdown(Instant::now(), grace);
        self.wake.notify_one();
        let mut exit = self.exit.clone();
        let waited = tokio::time::timeout(grace + TEARDOWN_WAIT, exit.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| e.clone()));
        self.stop_tasks();
        match waited {
            Some(DriverExit::TornDown) => Ok(()),
            Some(other) => Err(other),
            None => Err(DriverExit::ClientStopped),
        }
    }

    fn stop_tasks(&mut self) {
        for task in [
            self.task.take(),
            self.client_task.take(),
            self.detector.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }

    fn stopped(&self) -> Option<DriverExit> {
        self.exit.borrow().clone()
    }
}

impl Drop for MesosDriver {
    fn drop(&mut self) {
        // Without `shutdown` the framework stays registered (until its failover timeout),
        // and its tasks keep running: that is what a failover needs.
        self.stop_tasks();
    }
}

impl ResourceManagerDriver for MesosDriver {
    fn request_worker(&mut self, id: &WorkerId, spec: &WorkerSpec) -> Result<(), ResourceError> {
        if let Some(exit) = self.stopped() {
            return Err(ResourceError::Unavailable(format!(
                "cannot start worker {id}: the Mesos driver stopped: {exit}"
            )));
        }
        lock(&self.machine).request_worker(Instant::now(), id, spec)?;
        self.wake.notify_one();
        Ok(())
    }

    fn release_worker(&mut self, id: &WorkerId) {
        lock(&self.machine).release_worker(Instant::now(), id);
        self.wake.notify_one();
    }
}

/// The driver task's state.
struct Shell {
    machine: Arc<Mutex<MesosResourceManager>>,
    wake: Arc<Notify>,
    handle: SchedulerHandle,
    client_events: mpsc::UnboundedReceiver<SchedulerEvent>,
    owner: mpsc::UnboundedSender<WorkerEvent>,
    role: String,
    exit: watch::Sender<Option<DriverExit>>,
}

impl Shell {
    async fn run(mut self) {
        let exit = self.run_loop().await;
        match &exit {
            DriverExit::TornDown => info!("Mesos driver stopped: framework torn down"),
            other => error!(error = %other, "Mesos driver stopped"),
        }
        let _ = self.exit.send(Some(exit));
    }

    async fn run_loop(&mut self) -> DriverExit {
        loop {
            if let Some(exit) = self.perform_actions().await {
                return exit;
            }
            let deadline = lock(&self.machine).poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.client_events.recv() => match event {
                    Some(event) => {
                        if let Some(exit) = self.handle_event(event).await {
                            return exit;
                        }
                    }
                    None => return DriverExit::ClientStopped,
                },
                _ = self.wake.notified() => {}
                _ = sleep => lock(&self.machine).handle_timeout(Instant::now()),
            }
        }
    }

    async fn handle_event(&mut self, event: SchedulerEvent) -> Option<DriverExit> {
        let now = Instant::now();
        match event {
            SchedulerEvent::Subscribed { framework_id, .. } => {
                info!(framework = %framework_id.value, "subscribed to the Mesos master");
                lock(&self.machine).handle_subscribed(now, framework_id);
            }
            SchedulerEvent::Disconnected { reason } => {
                warn!(?reason, "lost the Mesos master; reconnecting");
                lock(&self.machine).handle_disconnected();
            }
            SchedulerEvent::Offers(offers) => lock(&self.machine).handle_offers(now, offers),
            SchedulerEvent::Rescinded(id) => lock(&self.machine).handle_rescinded(&id),
            SchedulerEvent::Update { status, ack } => {
                lock(&self.machine).handle_update(now, &status);
                // After the machine has applied it (and before anything it caused, such as
                // TEARDOWN, goes out).
                if let Some(token) = ack
                    && let Err(e) = self.handle.acknowledge(token).await
                {
                    debug!(error = %e, "could not acknowledge a status update");
                }
            }
            SchedulerEvent::ExecutorExited {
                agent_id,
                executor_id,
                status,
            } => lock(&self.machine).handle_executor_failure(&agent_id, &executor_id, status),
            SchedulerEvent::AgentLost { agent_id } => {
                lock(&self.machine).handle_agent_lost(&agent_id)
            }
            SchedulerEvent::CallFailed {
                call_type, error, ..
            } => warn!(call = call_type, %error, "a Mesos call failed"),
            SchedulerEvent::Fatal(FatalError::TornDown) => return Some(DriverExit::TornDown),
            SchedulerEvent::Fatal(fatal) => return Some(DriverExit::Fatal(fatal)),
            _ => {}
        }
        None
    }

    /// Performs every queued action; `Some` once the framework is torn down.
    async fn perform_actions(&mut self) -> Option<DriverExit> {
        loop {
            let action = lock(&self.machine).poll_action()?;
            match action {
                Action::Report(event) => {
                    let _ = self.owner.send(event);
                }
                Action::Accept {
                    offer_ids,
                    operations,
                    refuse_seconds,
                    workers,
                } => {
                    let filters = Some(Filters {
                        refuse_seconds: Some(refuse_seconds),
                    });
                    if let Err(e) = self.handle.accept(offer_ids, operations, filters).await {
                        warn!(error = %e, "could not launch on an offer; workers wait for the next");
                        lock(&self.machine).launch_not_sent(Instant::now(), &workers);
                    }
                }
                Action::Decline {
                    offer_ids,
                    refuse_seconds,
                } => {
                    if let Err(e) = self.handle.decline(offer_ids, Some(refuse_seconds)).await {
                        debug!(error = %e, "could not decline offers");
                    }
                }
                Action::Suppress => {
                    if let Err(e) = self.handle.suppress(vec![self.role.clone()]).await {
                        debug!(error = %e, "could not suppress offers");
                    }
                }
                Action::Revive => {
                    if let Err(e) = self.handle.revive(vec![self.role.clone()]).await {
                        debug!(error = %e, "could not revive offers");
                    }
                }
                Action::Kill { task_id, agent_id } => {
                    if let Err(e) = self.handle.kill(task_id, agent_id, None).await {
                        debug!(error = %e, "could not kill a task (retried later)");
                    }
                }
                Action::Teardown => return Some(self.teardown().await),
            }
        }
    }

    /// TEARDOWN, then wait (bounded) for the client to confirm it.
    async fn teardown(&mut self) -> DriverExit {
        if let Err(e) = self.handle.teardown().await {
            return DriverExit::TeardownFailed(e.to_string());
        }
        let deadline = tokio::time::Instant::now() + TEARDOWN_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.client_events.recv()).await {
                Ok(Some(SchedulerEvent::Fatal(FatalError::TornDown))) => {
                    return DriverExit::TornDown;
                }
                Ok(None) => return DriverExit::ClientStopped,
                Err(_) => {
                    return DriverExit::TeardownFailed(format!(
                        "the master did not confirm within {TEARDOWN_WAIT:?}"
                    ));
                }
                Ok(Some(SchedulerEvent::Fatal(fatal))) => return DriverExit::Fatal(fatal),
                Ok(Some(SchedulerEvent::Update {
                    ack: Some(token), ..
                })) => {
                    let _ = self.handle.acknowledge(token).await;
                }
                Ok(Some(_)) => {}
            }
        }
    }
}
