//! Runs the tasks the agent launches, by kind, as tokio tasks, and reports their progress.
//!
//! The client state machine decides *when* to start, stop gracefully or force-stop a task; this
//! module does it. Every task reports through one channel back to the shell, which feeds the
//! reports to the client (which turns them into status updates).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use mesoflow_proto::internal::Probe;
use mesoflow_proto::mesos::v1::{TaskInfo, task_status};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::TaskReport;
use crate::task_manager;
use crate::task_spec::{TaskKind, decode_task_spec};

/// A task's progress, on its way to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProgress {
    /// The task's id.
    pub task_id: String,
    /// What happened.
    pub report: TaskReport,
}

/// Starts and stops tasks for the shell.
pub trait TaskRunner: Send {
    /// Starts a task; its progress must come back as [`TaskProgress`], ending with a terminal one.
    fn launch(&mut self, task: TaskInfo);
    /// Asks a task to stop gracefully.
    fn kill(&mut self, task_id: &str);
    /// Stops a task now (its grace period is over).
    fn force_kill(&mut self, task_id: &str);
    /// Opaque bytes from the scheduler.
    fn scheduler_message(&mut self, data: Bytes);
}

struct RunningTask {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// The production runner: runs `Probe` and `TaskManager` tasks decoded from `TaskInfo.data`.
pub struct KindRunner {
    sandbox: PathBuf,
    reports: mpsc::UnboundedSender<TaskProgress>,
    tasks: HashMap<String, RunningTask>,
}

impl KindRunner {
    /// A runner whose tasks work in `sandbox` and report on `reports`.
    pub fn new(sandbox: PathBuf, reports: mpsc::UnboundedSender<TaskProgress>) -> Self {
        Self {
            sandbox,
            reports,
            tasks: HashMap::new(),
        }
    }
}

impl TaskRunner for KindRunner {
    fn launch(&mut self, task: TaskInfo) {
        self.tasks.retain(|_, t| !t.handle.is_finished());
        let task_id = task.task_id.value.clone();
        let reporter = Reporter {
            task_id: task_id.clone(),
            reports: self.reports.clone(),
        };
        let kind = match decode_task_spec(&task) {
            Ok(kind) => kind,
            Err(error) => {
                tracing::error!(task_id, %error, "cannot run task");
                reporter.send(TaskReport::Failed {
                    message: error.to_string(),
                    reason: Some(task_status::Reason::TaskInvalid),
                });
                return;
            }
        };
        let stop = CancellationToken::new();
        let sandbox = self.sandbox.clone();
        let task_stop = stop.clone();
        let handle = tokio::spawn(async move {
            let end = match kind {
                TaskKind::Probe(probe) => run_probe(probe, task_stop, &reporter).await,
                TaskKind::TaskManager(spec) => {
                    // STARTING until the JobManager accepts it, then RUNNING.
                    reporter.send(TaskReport::Starting);
                    let running = || reporter.send(TaskReport::Running);
                    match task_manager::host(*spec, &sandbox, task_stop, running).await {
                        Ok(()) => TaskReport::Finished {
                            message: Some("TaskManager stopped".to_owned()),
                        },
                        Err(error) => TaskReport::Failed {
                            message: error.to_string(),
                            reason: None,
                        },
                    }
                }
            };
            reporter.send(end);
        });
        self.tasks.insert(task_id, RunningTask { stop, handle });
    }

    fn kill(&mut self, task_id: &str) {
        match self.tasks.get(task_id) {
            Some(task) => task.stop.cancel(),
            None => tracing::debug!(task_id, "kill of a task that is not running"),
        }
    }

    fn force_kill(&mut self, task_id: &str) {
        if let Some(task) = self.tasks.remove(task_id) {
            task.handle.abort();
            Reporter {
                task_id: task_id.to_owned(),
                reports: self.reports.clone(),
            }
            .send(TaskReport::Failed {
                message: "stopped forcibly after the kill grace period".to_owned(),
                reason: None,
            });
        }
    }

    fn scheduler_message(&mut self, data: Bytes) {
        tracing::info!(
            len = data.len(),
            "message from the scheduler (no handler yet)"
        );
    }
}

/// Sends one task's reports; a closed channel means the executor is exiting, so it is ignored.
struct Reporter {
    task_id: String,
    reports: mpsc::UnboundedSender<TaskProgress>,
}

impl Reporter {
    fn send(&self, report: TaskReport) {
        let _ = self.reports.send(TaskProgress {
            task_id: self.task_id.clone(),
            report,
        });
    }
}

/// The diagnostic task: STARTING, RUNNING, wait, then the configured outcome.
async fn run_probe(probe: Probe, stop: CancellationToken, reporter: &Reporter) -> TaskReport {
    reporter.send(TaskReport::Starting);
    reporter.send(TaskReport::Running);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(probe.duration_ms)) => {}
        () = stop.cancelled() => {
            return TaskReport::Finished { message: Some("probe stopped by a kill".to_owned()) };
        }
    }
    if probe.exit_code == 0 {
        TaskReport::Finished {
            message: Some(format!("probe finished after {} ms", probe.duration_ms)),
        }
    } else {
        TaskReport::Failed {
            message: format!("probe exited with code {}", probe.exit_code),
            reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesoflow_proto::internal::{TaskManager, TaskSpec, task_spec};
    use mesoflow_proto::mesos::v1::TaskId;
    use prost::Message;

    fn task(id: &str, kind: task_spec::Kind) -> TaskInfo {
        TaskInfo {
            task_id: TaskId {
                value: id.to_owned(),
            },
            data: Some(
                TaskSpec {
                    version: 1,
                    kind: Some(kind),
                }
                .encode_to_vec()
                .into(),
            ),
            ..TaskInfo::default()
        }
    }

    async fn collect(rx: &mut mpsc::UnboundedReceiver<TaskProgress>, n: usize) -> Vec<TaskReport> {
        let mut out = Vec::new();
        for _ in 0..n {
            let progress = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("no report in time")
                .expect("channel closed");
            out.push(progress.report);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn probe_reports_running_then_its_exit_code() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut runner = KindRunner::new(std::env::temp_dir(), tx);
        runner.launch(task(
            "p",
            task_spec::Kind::Probe(Probe {
                duration_ms: 1500,
                exit_code: 7,
            }),
        ));
        let started = tokio::time::Instant::now();
        let reports = collect(&mut rx, 3).await;
        assert_eq!(
            reports,
            [
                TaskReport::Starting,
                TaskReport::Running,
                TaskReport::Failed {
                    message: "probe exited with code 7".to_owned(),
                    reason: None
                }
            ]
        );
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_killed_probe_stops_early() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut runner = KindRunner::new(std::env::temp_dir(), tx);
        runner.launch(task(
            "p",
            task_spec::Kind::Probe(Probe {
                duration_ms: 60_000,
                exit_code: 0,
            }),
        ));
        assert_eq!(
            collect(&mut rx, 2).await,
            [TaskReport::Starting, TaskReport::Running]
        );
        runner.kill("p");
        let end = collect(&mut rx, 1).await;
        assert!(matches!(end[0], TaskReport::Finished { .. }), "{end:?}");
    }

    #[tokio::test]
    async fn an_undecodable_spec_fails_the_task_as_invalid() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut runner = KindRunner::new(std::env::temp_dir(), tx);
        runner.launch(TaskInfo {
            task_id: TaskId {
                value: "bad".to_owned(),
            },
            data: Some(Bytes::from_static(
                b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            )),
            ..TaskInfo::default()
        });
        let reports = collect(&mut rx, 1).await;
        let TaskReport::Failed { message, reason } = &reports[0] else {
            panic!("{reports:?}")
        };
        assert_eq!(*reason, Some(task_status::Reason::TaskInvalid));
        assert!(message.contains("not a mesoflow TaskSpec"), "{message}");
    }

    #[tokio::test]
    async fn a_task_manager_runs_until_killed_and_can_be_forced() {
        let sandbox = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut runner = KindRunner::new(sandbox.path().to_owned(), tx);
        // Valid credentials, and a JobManager that never answers: it keeps trying to register.
        let ca = mesoflow_dataplane::shuffle::ClusterCa::generate("runner-test").unwrap();
        let (cert, key, ca_pem) = ca.issue("tm-1").unwrap().to_pem();
        let spec = TaskManager {
            slots: 2,
            task_manager_id: "tm-1".to_owned(),
            job_manager_endpoint: "127.0.0.1:9".to_owned(),
            ca_certificate_pem: ca_pem,
            certificate_pem: cert,
            private_key_pem: key,
            ..TaskManager::default()
        };
        runner.launch(task("tm", task_spec::Kind::TaskManager(spec.clone())));
        // Not registered (nobody answers), so STARTING and never RUNNING.
        assert_eq!(collect(&mut rx, 1).await, [TaskReport::Starting]);
        // STARTING is reported as the task begins; its directory follows at once.
        let dir = task_manager::work_dir(sandbox.path(), &spec);
        for _ in 0..200 {
            if dir.is_dir() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(dir.is_dir());
        runner.kill("tm");
        assert_eq!(
            collect(&mut rx, 1).await,
            [TaskReport::Finished {
                message: Some("TaskManager stopped".to_owned())
            }]
        );

        runner.launch(task("tm2", task_spec::Kind::TaskManager(spec)));
        assert_eq!(collect(&mut rx, 1).await, [TaskReport::Starting]);
        runner.force_kill("tm2");
        let end = collect(&mut rx, 1).await;
        assert!(matches!(end[0], TaskReport::Failed { .. }), "{end:?}");
    }
}
