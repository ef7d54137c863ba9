//! Starting and stopping executor processes the way the Mesos POSIX launcher does.
//!
//! The executor gets exactly the environment it is given (never the agent's own), its sandbox
//! as working directory, stdout/stderr redirected to `stdout`/`stderr` files in the sandbox, and
//! its own process group so that "destroy the container" can SIGKILL everything it started.
//! `shell = true` runs `/bin/sh -c <value>` and ignores `arguments`; `shell = false` executes
//! `value` with `arguments` as the whole argv (argv\[0\] included), as Mesos does.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

/// The default `PATH` a Mesos agent gives an executor when none is set (`os::host_default_path`).
pub const HOST_DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run: the executor's `CommandInfo`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
}

/// Why an executor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("executor command is empty: CommandInfo.value must name a program or a shell command")]
    EmptyCommand,
    #[error("failed to open '{path}' for the executor's output: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start executor '{program}': {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running executor process (the leader of its own process group).
#[derive(Debug)]
pub struct ExecutorProcess {
    pub pid: u32,
    child: tokio::process::Child,
}

/// Spawns `command` in `sandbox` with exactly `environment`.
pub fn spawn(
    command: &CommandSpec,
    environment: &BTreeMap<String, String>,
    sandbox: &Path,
) -> Result<ExecutorProcess, LaunchError> {
    if command.value.trim().is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    let mut cmd = if command.shell {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(&command.value);
        c
    } else {
        // A relative program path is relative to the sandbox, where the executor runs.
        let program = if command.value.contains('/') && !command.value.starts_with('/') {
            sandbox.join(&command.value)
        } else {
            PathBuf::from(&command.value)
        };
        let mut c = tokio::process::Command::new(program);
        if let Some((argv0, rest)) = command.arguments.split_first() {
            c.arg0(argv0);
            c.args(rest);
        }
        c
    };
    let open = |name: &str| {
        let path = sandbox.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| LaunchError::Output {
                path: path.display().to_string(),
                source,
            })
    };
    cmd.env_clear()
        .envs(environment)
        .current_dir(sandbox)
        .stdin(std::process::Stdio::null())
        .stdout(open("stdout")?)
        .stderr(open("stderr")?)
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
        program: command.value.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    Ok(ExecutorProcess { pid, child })
}

impl ExecutorProcess {
    /// Waits for the process to exit and returns the raw `waitpid` status (what FAILURE carries).
    pub async fn wait(mut self) -> i32 {
        match self.child.wait().await {
            Ok(status) => status.into_raw(),
            Err(error) => {
                tracing::warn!(pid = self.pid, %error, "waiting for executor failed");
                // SIGKILL-shaped status: the process is gone and we cannot say how.
                libc::SIGKILL
            }
        }
    }
}

/// SIGKILLs the whole process group led by `pid` (the container destroy of the POSIX launcher).
pub fn kill_process_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg only sends a signal; a stale pgid yields ESRCH, which we ignore.
    let rc = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(pid, "killpg found no process group (already gone)");
    }
}

/// Renders a duration the way stout's `Duration` writes it: the largest unit that keeps a
/// whole number (`5secs`, `90secs`, `15mins`, `250ms`).
pub fn mesos_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    const UNITS: [(u128, &str); 8] = [
        (7 * 24 * 3_600_000_000_000, "weeks"),
        (24 * 3_600_000_000_000, "days"),
        (3_600_000_000_000, "hrs"),
        (60_000_000_000, "mins"),
        (1_000_000_000, "secs"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0ns".into();
    }
    for (size, unit) in UNITS {
        if ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        use std::time::Duration;
        assert_eq!(mesos_duration(Duration::from_secs(5)), "5secs");
        assert_eq!(mesos_duration(Duration::from_secs(90)), "90secs");
        assert_eq!(mesos_duration(Duration::from_secs(900)), "15mins");
        assert_eq!(mesos_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(mesos_duration(Duration::from_secs(7 * 86400)), "1weeks");
    }

    #[tokio::test]
    async fn runs_with_exactly_the_given_environment_in_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([
            ("PATH".to_string(), HOST_DEFAULT_PATH.to_string()),
            ("ONLY".to_string(), "this".to_string()),
        ]);
        let cmd = CommandSpec {
            shell: true,
            value: "env | sort > env.txt; pwd > pwd.txt; exit 3".into(),
            arguments: vec!["ignored".into()],
        };
        let proc = spawn(&cmd, &env, dir.path()).unwrap();
        let status = proc.wait().await;
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 3);
        let seen = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
        let vars: Vec<&str> = seen
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        assert_eq!(
            vars,
            vec!["ONLY=this", &format!("PATH={HOST_DEFAULT_PATH}")]
        );
        let pwd = std::fs::read_to_string(dir.path().join("pwd.txt")).unwrap();
        assert_eq!(
            std::fs::canonicalize(pwd.trim()).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[tokio::test]
    async fn shell_false_passes_arguments_as_argv_and_kill_reaches_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = CommandSpec {
            shell: false,
            value: "/bin/sh".into(),
            arguments: vec![
                "sh".into(),
                "-c".into(),
                "sleep 30 & echo $! > bg.pid; wait".into(),
            ],
        };
        let proc = spawn(&cmd, &BTreeMap::new(), dir.path()).unwrap();
        let pid_file = dir.path().join("bg.pid");
        let mut background = None;
        for _ in 0..200 {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                background = Some(pid);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let background = background.expect("the shell started a background process");
        kill_process_group(proc.pid);
        let status = proc.wait().await;
        assert!(libc::WIFSIGNALED(status));
        assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
        // The background sleep was in the same group: it is gone (or a zombie awaiting reaping).
        let dead = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        };
        let mut gone = false;
        for _ in 0..100 {
            if dead(background) {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            gone,
            "background process {background} survived the group kill"
        );
    }
}
