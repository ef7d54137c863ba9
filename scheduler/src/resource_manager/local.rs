//! The local-process driver: every worker is a `mesoflow-executor standalone` child process on
//! this machine (local mode, tests, a single-box cluster).
//!
//! One tokio task per child owns its [`tokio::process::Child`] and waits on it, so an exit is
//! noticed as it happens and reported as [`WorkerEvent::Exited`]. Releasing a worker asks that
//! task to stop the child (SIGTERM, then SIGKILL after a grace period); dropping the driver kills
//! every child at once, so a crashed or finished JobManager leaves no orphans behind.

use std::{
    collections::HashMap,
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    process::{Child, Command},
    sync::{mpsc::UnboundedSender, oneshot},
};
use tracing::{debug, info, warn};

use super::{ResourceError, ResourceManagerDriver, WorkerEvent, WorkerId, WorkerSpec};

/// Environment variable naming the executor binary, overriding the search beside the current
/// executable.
pub const EXECUTOR_BIN_ENV: &str = "MESOFLOW_EXECUTOR_BIN";
/// File name of the executor binary.
const EXECUTOR_BIN_NAME: &str = "mesoflow-executor";

/// Builds a worker's command line from its id and spec.
pub type ArgsFn = Box<dyn Fn(&WorkerId, &WorkerSpec) -> Vec<String> + Send>;
/// Builds the bootstrap bytes written to a worker's stdin (then closed).
pub type StdinFn = Box<dyn Fn(&WorkerId, &WorkerSpec) -> Vec<u8> + Send>;

/// How to start a local worker.
pub struct LocalDriverConfig {
    /// The executable (normally `mesoflow-executor`, see [`find_executor_binary`]).
    pub executor_binary: PathBuf,
    /// Its arguments (e.g. `standalone --id ...`).
    pub args_for: ArgsFn,
    /// Bootstrap bytes for its stdin (e.g. the registration token and CA), written then closed
    /// so secrets never appear in `ps`.
    pub stdin_for: StdinFn,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory of the children.
    pub work_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL when a worker is released.
    pub kill_grace: Duration,
}

impl std::fmt::Debug for LocalDriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDriverConfig")
            .field("executor_binary", &self.executor_binary)
            .field("env", &self.env)
            .field("work_dir", &self.work_dir)
            .field("kill_grace", &self.kill_grace)
            .finish_non_exhaustive()
    }
}

/// What the driver keeps of a live child: its pid and the way to ask its task to stop it.
struct ChildHandle {
    pid: u32,
    stop: Option<oneshot::Sender<()>>,
}

type ChildTable = Arc<Mutex<HashMap<WorkerId, ChildHandle>>>;

/// Starts workers as child processes of this one (see the module docs).
pub struct LocalProcessDriver {
    config: LocalDriverConfig,
    events: UnboundedSender<WorkerEvent>,
    children: ChildTable,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for LocalProcessDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProcessDriver")
            .field("config", &self.config)
            .field("pids", &self.pids())
            .finish_non_exhaustive()
    }
}

impl LocalProcessDriver {
    /// A driver reporting on `events`. Must be called inside a tokio runtime: the children are
    /// watched by tasks on it.
    pub fn new(
        config: LocalDriverConfig,
        events: UnboundedSender<WorkerEvent>,
    ) -> Result<Self, ResourceError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ResourceError::Unavailable(
                "the local-process driver must be created inside a tokio runtime".into(),
            )
        })?;
        Ok(Self {
            config,
            events,
            children: Arc::default(),
            runtime,
        })
    }

    /// Live workers and their process ids.
    pub fn pids(&self) -> Vec<(WorkerId, u32)> {
        let children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pids: Vec<_> = children
            .iter()
            .map(|(id, child)| (id.clone(), child.pid))
            .collect();
        pids.sort();
        pids
    }
}

impl ResourceManagerDriver for LocalProcessDriver {
    fn request_worker(&mut self, id: &WorkerId, spec: &WorkerSpec) -> Result<(), ResourceError> {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        if children.contains_key(id) {
            return Err(ResourceError::DuplicateWorker(id.clone()));
        }
        let _guard = self.runtime.enter();
        let mut command = Command::new(&self.config.executor_binary);
        command
            .args((self.config.args_for)(id, spec))
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.config.work_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // A group of its own: a terminal's Ctrl-C reaches only the JobManager, which cancels
            // the job and releases its TaskManagers in order (the executor's parent-death signal
            // covers a JobManager that dies).
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ResourceError::Spawn {
            id: id.clone(),
            binary: self.config.executor_binary.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        info!(worker = %id, pid, slots = spec.slots, "started local worker");

        if let Some(mut stdin) = child.stdin.take() {
            let bootstrap = (self.config.stdin_for)(id, spec);
            let worker = id.clone();
            // Its own task: a child that never reads must not keep its watcher from noticing
            // the exit or a release.
            tokio::spawn(async move {
                if let Err(e) = stdin.write_all(&bootstrap).await {
                    debug!(%worker, error = %e, "could not write the bootstrap to the worker's stdin");
                }
                drop(stdin);
            });
        }

        let (stop_tx, stop_rx) = oneshot::channel();
        children.insert(
            id.clone(),
            ChildHandle {
                pid,
                stop: Some(stop_tx),
            },
        );
        drop(children);
        // Before the watcher exists, so `Started` always precedes `Exited`.
        let _ = self.events.send(WorkerEvent::Started {
            id: id.clone(),
            pid: Some(pid),
        });
        tokio::spawn(watch(
            id.clone(),
            child,
            stop_rx,
            self.config.kill_grace,
            Arc::clone(&self.children),
            self.events.clone(),
        ));
        Ok(())
    }

    fn release_worker(&mut self, id: &WorkerId) {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stop) = children.get_mut(id).and_then(|c| c.stop.take()) {
            info!(worker = %id, "releasing local worker");
            let _ = stop.send(());
        }
    }
}

impl Drop for LocalProcessDriver {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, child) in children.iter_mut() {
            debug!(worker = %id, pid = child.pid, "killing local worker");
            // Synchronously, so no child outlives the driver even if the runtime is going away;
            // the watcher then reaps it and reports the exit.
            signal(child.pid, libc::SIGKILL);
            child.stop = None;
        }
    }
}

/// Owns one child: waits for it to exit, stops it when asked, reports the exit.
async fn watch(
    id: WorkerId,
    mut child: Child,
    stop: oneshot::Receiver<()>,
    grace: Duration,
    children: ChildTable,
    events: UnboundedSender<WorkerEvent>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        request = stop => {
            match (request, child.id()) {
                // Released: ask politely first.
                (Ok(()), Some(pid)) if !grace.is_zero() => {
                    signal(pid, libc::SIGTERM);
                    match tokio::time::timeout(grace, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            warn!(worker = %id, pid, ?grace, "worker ignored SIGTERM; killing it");
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    }
                }
                // Released without grace, or the driver was dropped.
                _ => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    children
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    let reason = match status {
        Ok(status) => describe(status),
        Err(e) => format!("could not wait for the process: {e}"),
    };
    info!(worker = %id, %reason, "local worker exited");
    let _ = events.send(WorkerEvent::Exited { id, reason });
}

/// "exited with status 1", "killed by signal 9".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our children.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Where the executor binary is: `$MESOFLOW_EXECUTOR_BIN`, else `mesoflow-executor` beside the
/// current executable, else (for test binaries in `target/<profile>/deps`) in its parent.
pub fn find_executor_binary() -> Result<PathBuf, ResourceError> {
    let exe = std::env::current_exe().map_err(|e| {
        ResourceError::ExecutorNotFound(format!("cannot locate the current executable: {e}"))
    })?;
    find_executor_binary_from(std::env::var_os(EXECUTOR_BIN_ENV), &exe)
}

fn find_executor_binary_from(
    env: Option<OsString>,
    current_exe: &Path,
) -> Result<PathBuf, ResourceError> {
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ResourceError::ExecutorNotFound(format!(
                "{EXECUTOR_BIN_ENV}={} is not a file",
                path.display()
            )))
        };
    }
    let dir = current_exe.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![dir.join(EXECUTOR_BIN_NAME)];
    if dir.file_name().is_some_and(|name| name == "deps")
        && let Some(profile_dir) = dir.parent()
    {
        candidates.push(profile_dir.join(EXECUTOR_BIN_NAME));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<_> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(ResourceError::ExecutorNotFound(format!(
        "{EXECUTOR_BIN_NAME} not found (tried {}); build it with \
         `cargo build --release -p mesoflow-executor` or set {EXECUTOR_BIN_ENV}",
        tried.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn sh_driver(
        script: &str,
        grace: Duration,
    ) -> (LocalProcessDriver, mpsc::UnboundedReceiver<WorkerEvent>) {
        let script = script.to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        let config = LocalDriverConfig {
            executor_binary: "/bin/sh".into(),
            args_for: Box::new(move |_, _| vec!["-c".into(), script.clone()]),
            stdin_for: Box::new(|id, _| format!("hello {id}\n").into_bytes()),
            env: vec![("MESOFLOW_TEST".into(), "1".into())],
            work_dir: std::env::temp_dir(),
            kill_grace: grace,
        };
        (LocalProcessDriver::new(config, tx).unwrap(), rx)
    }

    const SPEC: WorkerSpec = WorkerSpec {
        slots: 2,
        cpus: 1.0,
        memory_mb: 512,
    };

    async fn next(rx: &mut mpsc::UnboundedReceiver<WorkerEvent>) -> WorkerEvent {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("no worker event within 20 s")
            .expect("event channel closed")
    }

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[tokio::test]
    async fn a_killed_child_is_reported_and_forgotten() {
        let (mut driver, mut rx) = sh_driver("sleep 30", Duration::from_secs(5));
        let id = WorkerId::from("tm-1");
        driver.request_worker(&id, &SPEC).unwrap();
        let WorkerEvent::Started {
            id: started,
            pid: Some(pid),
        } = next(&mut rx).await
        else {
            panic!("expected Started with a pid");
        };
        assert_eq!(started, id);
        assert_eq!(driver.pids(), vec![(id.clone(), pid)]);
        assert!(matches!(
            driver.request_worker(&id, &SPEC),
            Err(ResourceError::DuplicateWorker(_))
        ));

        signal(pid, libc::SIGKILL);
        assert_eq!(
            next(&mut rx).await,
            WorkerEvent::Exited {
                id: id.clone(),
                reason: "killed by signal 9".into()
            }
        );
        assert!(driver.pids().is_empty());
        // Releasing a dead worker is a no-op.
        driver.release_worker(&id);
    }

    #[tokio::test]
    async fn release_terminates_and_the_exit_status_is_reported() {
        let (mut driver, mut rx) = sh_driver(
            "read line; echo \"$line\" >&2; sleep 30",
            Duration::from_secs(5),
        );
        let id = WorkerId::from("tm-2");
        driver.request_worker(&id, &SPEC).unwrap();
        assert!(matches!(next(&mut rx).await, WorkerEvent::Started { .. }));
        driver.release_worker(&id);
        let WorkerEvent::Exited { id: exited, reason } = next(&mut rx).await else {
            panic!("expected Exited");
        };
        assert_eq!(exited, id);
        assert_eq!(reason, "killed by signal 15");
    }

    #[tokio::test]
    async fn release_kills_a_child_that_ignores_sigterm() {
        let (mut driver, mut rx) = sh_driver(
            "trap '' TERM; while :; do sleep 1; done",
            Duration::from_millis(200),
        );
        let id = WorkerId::from("tm-3");
        driver.request_worker(&id, &SPEC).unwrap();
        assert!(matches!(next(&mut rx).await, WorkerEvent::Started { .. }));
        // Give the shell time to install its trap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        driver.release_worker(&id);
        let WorkerEvent::Exited { reason, .. } = next(&mut rx).await else {
            panic!("expected Exited");
        };
        assert_eq!(reason, "killed by signal 9");
    }

    #[tokio::test]
    async fn normal_exit_and_drop_kills_the_rest() {
        let (mut driver, mut rx) = sh_driver("exit 3", Duration::from_secs(5));
        driver.request_worker(&"quick".into(), &SPEC).unwrap();
        assert!(matches!(next(&mut rx).await, WorkerEvent::Started { .. }));
        assert_eq!(
            next(&mut rx).await,
            WorkerEvent::Exited {
                id: "quick".into(),
                reason: "exited with status 3".into()
            }
        );

        let (mut driver, mut rx) = sh_driver("sleep 30", Duration::from_secs(5));
        let mut pids = Vec::new();
        for n in 0..2 {
            driver
                .request_worker(&WorkerId(format!("tm-{n}")), &SPEC)
                .unwrap();
            let WorkerEvent::Started { pid: Some(pid), .. } = next(&mut rx).await else {
                panic!("expected Started");
            };
            pids.push(pid);
        }
        drop(driver);
        for _ in 0..2 {
            assert!(matches!(next(&mut rx).await, WorkerEvent::Exited { .. }));
        }
        for pid in pids {
            assert!(!alive(pid), "child {pid} outlived the driver");
        }
    }

    #[test]
    fn spawn_errors_name_the_binary() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut driver = LocalProcessDriver::new(
            LocalDriverConfig {
                executor_binary: "/nonexistent/mesoflow-executor".into(),
                args_for: Box::new(|_, _| Vec::new()),
                stdin_for: Box::new(|_, _| Vec::new()),
                env: Vec::new(),
                work_dir: std::env::temp_dir(),
                kill_grace: Duration::ZERO,
            },
            tx,
        )
        .unwrap();
        let e = driver
            .request_worker(&"tm".into(), &SPEC)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/mesoflow-executor"), "{e}");
        assert!(driver.pids().is_empty());
    }

    #[test]
    fn finding_the_executor_binary() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("release");
        let deps = profile.join("deps");
        std::fs::create_dir_all(&deps).unwrap();
        let in_profile = profile.join(EXECUTOR_BIN_NAME);

        let e = find_executor_binary_from(None, &deps.join("test-bin"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cargo build --release -p mesoflow-executor"),
            "{e}"
        );
        assert!(e.contains(EXECUTOR_BIN_ENV), "{e}");

        std::fs::write(&in_profile, b"").unwrap();
        assert_eq!(
            find_executor_binary_from(None, &deps.join("test-bin")).unwrap(),
            in_profile
        );
        assert_eq!(
            find_executor_binary_from(None, &profile.join("mesoflow")).unwrap(),
            in_profile
        );

        let beside = deps.join(EXECUTOR_BIN_NAME);
        std::fs::write(&beside, b"").unwrap();
        assert_eq!(
            find_executor_binary_from(None, &deps.join("test-bin")).unwrap(),
            beside
        );

        let explicit = dir.path().join("custom");
        std::fs::write(&explicit, b"").unwrap();
        assert_eq!(
            find_executor_binary_from(Some(explicit.clone().into()), &deps.join("x")).unwrap(),
            explicit
        );
        let e = find_executor_binary_from(Some("/nope".into()), &deps.join("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MESOFLOW_EXECUTOR_BIN=/nope"), "{e}");
    }
}
