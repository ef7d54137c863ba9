//! Exactly-once checkpoints end to end, with the real binaries: `mesoflow run` on local
//! TaskManager processes, checkpoints every second to a local directory or to HDFS (the
//! MiniDFSCluster that `scripts/services.sh` starts), executors killed with SIGKILL while the
//! job runs. The committed part files must hold exactly the lines of a run without failure.
//!
//! The tests share the machine's two cores and the one HDFS, so they run one at a time.
//! `MESOFLOW_SOAK_KILLS=N` turns the crash loop into a soak of N kills (run by hand).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mesoflow_tests::cli::{Running, alive, mesoflow_run, pid_of};
use mesoflow_tests::workspace::{committed_lines, line_difference, reference_lines};
use rand::Rng;

/// One test at a time (the machine's cores, and the shared NameNode that one test stops).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// About 12 s of input at this rate; windows of 1 s over 1,000 keys.
const PARAMS: [(&str, &str); 4] = [
    ("events", "480000"),
    ("keys", "1000"),
    ("rate", "40000"),
    ("events_per_ms", "10"),
];

/// The failure-free output of windowed-count at parallelism 2 (computed without the rate
/// limit, which changes when records come, not what they are).
fn expected_lines(params: &[(&str, &str)]) -> Vec<String> {
    let unpaced: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(k, _)| *k != "rate")
        .collect();
    reference_lines("windowed-count", &unpaced, 2)
}

/// The HDFS of the test services, or `None` (the test fails under CI, where it must exist).
fn hdfs() -> Option<String> {
    match std::env::var("MESOFLOW_TEST_HDFS") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ if std::env::var_os("CI").is_some() => {
            panic!("MESOFLOW_TEST_HDFS is not set: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!("skipped: MESOFLOW_TEST_HDFS is not set (scripts/test.sh starts HDFS)");
            None
        }
    }
}

/// Long enough (about 60 s of input) to outlast a NameNode restart and its safe mode.
const LONG: [(&str, &str); 4] = [
    ("events", "2400000"),
    ("keys", "1000"),
    ("rate", "40000"),
    ("events_per_ms", "10"),
];

/// `mesoflow run windowed-count` on two single-slot executors, exactly-once part files in
/// `out`, checkpoints every `interval` into `checkpoints`.
fn checkpointed_run(out: &Path, checkpoints: &str, interval: &str, extra: &[&str]) -> Running {
    checkpointed_run_of(&PARAMS, out, checkpoints, interval, extra)
}

/// [`checkpointed_run`] with other job parameters.
fn checkpointed_run_of(
    params: &[(&str, &str)],
    out: &Path,
    checkpoints: &str,
    interval: &str,
    extra: &[&str],
) -> Running {
    let mut args = vec![
        "--parallelism".to_string(),
        "2".into(),
        "--executors".into(),
        "2".into(),
        "--slots".into(),
        "1".into(),
        "--sink".into(),
        "file".into(),
        "--output".into(),
        out.display().to_string(),
        format!("-Dexecution.checkpointing.interval={interval}"),
        format!("-Dstate.checkpoints.dir={checkpoints}"),
        "-Dheartbeat.interval=1s".into(),
        "-Dheartbeat.timeout=5s".into(),
        "-Drestart-strategy.type=fixed-delay".into(),
        "-Drestart-strategy.fixed-delay.attempts=100".into(),
        "-Drestart-strategy.fixed-delay.delay=200ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = mesoflow_run("windowed-count", params, &args);
    // The caller's MESOFLOW_LOG wins, for a closer look at a failure.
    let log = std::env::var("MESOFLOW_LOG").unwrap_or_else(|_| {
        "warn,mesoflow_scheduler::cli=info,mesoflow_executor::task_manager=info,\
         mesoflow_scheduler::job_manager::checkpoints=info"
            .into()
    });
    cmd.env("MESOFLOW_LOG", log);
    Running::start(cmd)
}

/// Kills a live executor with SIGKILL `kills` times at random moments, each time after the
/// job was (re)deployed; then waits for the end and compares the committed output.
fn crash_loop(checkpoints: &str, backend: &str, extra: &[&str]) {
    let kills: usize = std::env::var("MESOFLOW_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let expected = expected_lines(&PARAMS);
    let out = tempfile::tempdir().unwrap();
    let backend = format!("-Dstate.backend.type={backend}");
    let flags: Vec<&str> = std::iter::once(backend.as_str())
        .chain(extra.iter().copied())
        .collect();
    let mut run = checkpointed_run(out.path(), checkpoints, "1s", &flags);
    let mut executors = vec![
        pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30))),
        pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30))),
    ];
    let mut rng = rand::rng();
    for kill in 0..kills {
        // At least one checkpoint of this attempt, then a random moment.
        run.wait_for("checkpoint completed", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        executors.retain(|p| alive(*p));
        let victim = executors[rng.random_range(0..executors.len())];
        // SAFETY: a plain kill(2) of a process this test's child started.
        assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
        eprintln!("kill {} of {kills}: executor {victim}", kill + 1);
        executors.retain(|p| *p != victim);
        executors.push(pid_of(
            &run.wait_for("started TaskManager", Duration::from_secs(30)),
        ));
    }
    let (code, _, stderr) = run.finish(Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("the job restarted {kills} time(s)")),
        "{stderr}"
    );
    let got = committed_lines(out.path());
    assert!(
        got == expected,
        "the committed output differs from the failure-free run: {}; stderr:\n{stderr}",
        line_difference(&expected, &got)
    );
    let hidden: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        hidden.is_empty(),
        "uncommitted files left behind: {hidden:?}"
    );
}

#[test]
fn kill_9_three_times_commits_exactly_once_with_checkpoints_on_a_local_path() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    crash_loop(&format!("file://{}", dir.path().display()), "heap", &[]);
}

#[test]
fn kill_9_three_times_commits_exactly_once_with_the_mmap_backend() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    crash_loop(&format!("file://{}", dir.path().display()), "mmap", &[]);
}

/// Unaligned: barriers overtake queued records on the local and QUIC channels, and the records
/// they overtook are part of the snapshot, replayed after each kill.
#[test]
fn kill_9_three_times_commits_exactly_once_with_unaligned_checkpoints() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    crash_loop(
        &format!("file://{}", dir.path().display()),
        "heap",
        &["-Dexecution.checkpointing.unaligned.enabled=true"],
    );
}

#[test]
fn kill_9_three_times_commits_exactly_once_with_checkpoints_on_hdfs() {
    let _serial = serial();
    let Some(hdfs) = hdfs() else { return };
    let root = format!("{hdfs}/crash-loop-{:08x}", rand::random::<u32>());
    crash_loop(&root, "heap", &[]);
}

#[test]
fn kill_9_commits_exactly_once_with_hdfs_and_the_mmap_backend() {
    let _serial = serial();
    let Some(hdfs) = hdfs() else { return };
    let root = format!("{hdfs}/crash-loop-mmap-{:08x}", rand::random::<u32>());
    crash_loop(&root, "mmap", &[]);
}

/// The `chk-<n>` of a "checkpoint completed checkpoint=<n>" line.
fn checkpoint_of(line: &str) -> u64 {
    line.split("checkpoint=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint id in '{line}'"))
}

#[test]
fn a_corrupt_checkpoint_is_detected_and_recovery_falls_back_to_the_previous_one() {
    let _serial = serial();
    let expected = expected_lines(&PARAMS);
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut run = checkpointed_run(
        out.path(),
        &format!("file://{}", dir.path().display()),
        "3s",
        &["-Dstate.checkpoints.num-retained=3"],
    );
    let victim = pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30)));
    run.wait_for("started TaskManager", Duration::from_secs(30));
    let mut latest = 0;
    while latest < 2 {
        latest = checkpoint_of(&run.wait_for("checkpoint completed", Duration::from_secs(60)));
    }
    // Damage one byte in the middle of every state file checkpoint `latest` wrote.
    let shared = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .expect("the job's checkpoint root")
        .unwrap()
        .path()
        .join("shared");
    let mut damaged = 0;
    for e in std::fs::read_dir(&shared).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("chk-{latest}-")) {
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "checkpoint {latest} wrote no state file");
    let killed_at = Instant::now();
    // SAFETY: a plain kill(2) of a process this test's child started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let fallback = run.wait_for(&format!("checkpoint {latest}"), Duration::from_secs(60));
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    let (code, _, stderr) = run.finish(Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("corrupt") && stderr.contains(&format!("checkpoint {}", latest - 1)),
        "recovery did not say it fell back from {latest} to {}: {fallback}\n{stderr}",
        latest - 1
    );
    // The output that checkpoint `latest` committed is written again after the fallback
    // (recovery went back behind a commit): nothing is lost, and the only duplicates are
    // lines of windows that checkpoint covered.
    let got = committed_lines(out.path());
    let mut distinct = got.clone();
    distinct.dedup();
    assert!(
        distinct == expected,
        "lines lost after the fallback: {}; stderr:\n{stderr}",
        line_difference(&expected, &distinct)
    );
    assert!(got.len() > expected.len(), "the fallback replayed nothing");
}

#[test]
fn an_unreachable_namenode_fails_checkpoints_without_killing_the_job_until_it_is_back() {
    let _serial = serial();
    let Some(hdfs) = hdfs() else { return };
    let services = std::env::var("MESOFLOW_TEST_HDFS_DIR").expect("MESOFLOW_TEST_HDFS_DIR");
    let services = Path::new(&services);
    let expected = expected_lines(&LONG);
    let out = tempfile::tempdir().unwrap();
    let root = format!("{hdfs}/namenode-down-{:08x}", rand::random::<u32>());
    let mut run = checkpointed_run_of(
        &LONG,
        out.path(),
        &root,
        "1s",
        &[
            "-Dexecution.checkpointing.tolerable-failed-checkpoints=1000",
            "-Dexecution.checkpointing.timeout=5s",
        ],
    );
    run.wait_for("checkpoint completed", Duration::from_secs(60));
    // Stop the NameNode (and its DataNode: the whole MiniDFSCluster process).
    let pid: i32 = std::fs::read_to_string(services.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: a plain kill(2) of the test services' HDFS process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "HDFS did not stop");
    let failed = run.wait_for("checkpoint aborted", Duration::from_secs(60));
    eprintln!("while HDFS is down: {failed}");
    std::thread::sleep(Duration::from_secs(2));
    // Start it again on the same port and data (the command services.sh recorded).
    let _ = std::fs::remove_file(services.join("address"));
    let cmd = std::fs::read_to_string(services.join("cmd")).unwrap();
    let log = services.join("minidfs.log");
    // In the background of a shell that exits at once: HDFS outlives this test, and
    // `services.sh stop` ends it through the pid file.
    let started = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} >>'{}' 2>&1 & echo $!",
            cmd.trim(),
            log.display()
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    assert!(
        pid.parse::<i32>().is_ok(),
        "no pid from the relaunch: {pid:?}"
    );
    std::fs::write(services.join("pid"), pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !services.join("address").exists() {
        assert!(Instant::now() < deadline, "HDFS did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Back after the restart and the NameNode's safe mode.
    run.wait_for("checkpoint completed", Duration::from_secs(120));
    let (code, _, stderr) = run.finish(Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("restarting the job"),
        "failed checkpoints restarted the job:\n{stderr}"
    );
    let got = committed_lines(out.path());
    assert!(
        got == expected,
        "the committed output differs from the failure-free run: {}; stderr:\n{stderr}",
        line_difference(&expected, &got)
    );
}

/// `mesoflow <args>` against a cluster; (exit code, stdout, stderr).
fn mesoflow(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(mesoflow_tests::workspace::binary("mesoflow"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mesoflow runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rescaling_2_3_1_through_savepoints_keeps_every_key_s_state_exactly() {
    let _serial = serial();
    let expected = expected_lines(&PARAMS);
    let savepoints = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cmd =
        std::process::Command::new(mesoflow_tests::workspace::binary("mesoflow-scheduler"));
    cmd.args(["-Drest.port=0", "-Djobmanager.rpc.port=0"])
        .env(
            "MESOFLOW_EXECUTOR_BIN",
            mesoflow_tests::workspace::binary("mesoflow-executor"),
        )
        .env(
            "MESOFLOW_LOG",
            "warn,mesoflow_scheduler::job_manager::checkpoints=info",
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut scheduler = Running::start(cmd);
    let line = scheduler.wait_for("REST API at ", Duration::from_secs(60));
    let rest = line
        .split("REST API at ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("a URL")
        .to_owned();
    let params: Vec<String> = PARAMS.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let output = out.path().display().to_string();
    let target = format!("file://{}", savepoints.path().display());
    let mut from: Option<String> = None;
    for parallelism in ["2", "3"] {
        let mut args = vec![
            "run",
            "--jobmanager",
            &rest,
            "--detached",
            "windowed-count",
            "--parallelism",
            parallelism,
            "--sink",
            "file",
            "--output",
            &output,
        ];
        for p in &params {
            args.extend(["-p", p]);
        }
        if let Some(path) = &from {
            args.extend(["-s", path]);
        }
        let (code, stdout, stderr) = mesoflow(&args);
        assert_eq!(code, Some(0), "{stderr}");
        let job = stdout.trim().to_owned();
        // Let it run a while at this parallelism, then stop it with a savepoint.
        std::thread::sleep(Duration::from_secs(3));
        let (code, stdout, stderr) =
            mesoflow(&["stop", "--jobmanager", &rest, &job, "--savepoint", &target]);
        assert_eq!(code, Some(0), "{stderr}");
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
            .unwrap_or_else(|| panic!("no savepoint path in: {stdout}"))
            .to_owned();
        from = Some(path);
    }
    let from = from.expect("a savepoint");
    let mut args = vec![
        "run",
        "--jobmanager",
        &rest,
        "windowed-count",
        "--parallelism",
        "1",
        "--sink",
        "file",
        "--output",
        &output,
        "-s",
        &from,
    ];
    for p in &params {
        args.extend(["-p", p]);
    }
    let (code, _, stderr) = mesoflow(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let got = committed_lines(out.path());
    assert!(
        got == expected,
        "the committed output differs from the failure-free run across the rescales: {}",
        line_difference(&expected, &got)
    );
}
