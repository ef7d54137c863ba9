//! Driving the real `mesoflow` CLI from tests: start it with its output piped, wait for
//! lines on its stderr, find the TaskManager processes it started.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::workspace::binary;

/// `mesoflow run <job> ...` (with `--sink checksum` unless `extra` names a sink), its output
/// piped.
pub fn mesoflow_run(job: &str, params: &[(&str, &str)], extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary("mesoflow"));
    cmd.arg("run").arg(job);
    if !extra.contains(&"--sink") {
        cmd.args(["--sink", "checksum"]);
    }
    for (k, v) in params {
        cmd.arg("-p").arg(format!("{k}={v}"));
    }
    cmd.args(extra)
        .env("MESOFLOW_EXECUTOR_BIN", binary("mesoflow-executor"))
        .env(
            "MESOFLOW_LOG",
            "warn,mesoflow_scheduler::cli=info,mesoflow_executor::task_manager=info",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs to the end; (exit code, stdout, stderr).
pub fn run_to_end(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("mesoflow runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running CLI whose stderr lines arrive on a channel (and are kept).
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("mesoflow starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The CLI's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with '{needle}' within {timeout:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the exit; (code, stdout, all stderr).
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "mesoflow did not exit within {timeout:?}; stderr:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_string(&mut stdout);
        }
        // The reader thread ends with the pipe.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), stdout, self.seen.join("\n"))
    }
}

/// The pid in a "started TaskManager <id> (pid <n>)" line. An executor's log line may follow
/// on the same line (the processes share stderr), so only the digits after "(pid " count.
pub fn pid_of(line: &str) -> i32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pid in '{line}'"))
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
