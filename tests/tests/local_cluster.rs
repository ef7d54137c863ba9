//! The embedded local cluster end to end: the real `mesoflow` CLI runs a JobManager in its own
//! process and starts real `mesoflow-executor` TaskManager processes on 127.0.0.1; subtasks on
//! different executors exchange records over the QUIC shuffle.
//!
//! Every result is compared with the same job run in one process by the engine itself.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mesoflow_dataplane::checksum::checksum_line;
use mesoflow_dataplane::jobs;
use mesoflow_tests::cli::{Running, alive, mesoflow_run, pid_of, run_to_end};
use mesoflow_tests::workspace::reference;

#[test]
fn every_built_in_job_on_two_executors_gives_the_single_process_checksum() {
    for spec in jobs::catalog() {
        let mut params = vec![("events", "30000")];
        if spec.params.iter().any(|p| p.name == "keys") {
            params.push(("keys", "500"));
        }
        let expected = reference(spec.name, &params, 4);
        let (code, stdout, stderr) = run_to_end(mesoflow_run(
            spec.name,
            &params,
            &["--parallelism", "4", "--executors", "2", "--slots", "2"],
        ));
        assert_eq!(code, Some(0), "{}: {stderr}", spec.name);
        assert_eq!(stdout.trim(), expected, "{}: {stderr}", spec.name);
        assert_eq!(
            stderr.matches("started TaskManager").count(),
            2,
            "{}: {stderr}",
            spec.name
        );
        assert!(!stderr.contains("restarting"), "{}: {stderr}", spec.name);
    }
}

/// `bytes_sent=N` style fields of a log line.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in '{line}'"))
}

#[test]
fn a_keyed_job_on_two_single_slot_executors_shuffles_both_ways_over_quic() {
    let params = [("events", "100000"), ("keys", "1000")];
    let expected = reference("windowed-count", &params, 2);
    let (code, stdout, stderr) = run_to_end(mesoflow_run(
        "windowed-count",
        &params,
        &["--parallelism", "2", "--executors", "2", "--slots", "1"],
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), expected, "{stderr}");
    let traffic: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("shuffle traffic"))
        .collect();
    assert_eq!(traffic.len(), 2, "one line per executor: {stderr}");
    // About half of 100 K records of ~100 bytes cross in each direction.
    for line in &traffic {
        assert!(field(line, "bytes_sent") > 2_000_000, "{line}");
        assert!(field(line, "bytes_received") > 2_000_000, "{line}");
    }
    assert_eq!(
        field(traffic[0], "bytes_sent"),
        field(traffic[1], "bytes_received")
    );
    assert_eq!(
        field(traffic[1], "bytes_sent"),
        field(traffic[0], "bytes_received")
    );
}

#[test]
fn kill_9_of_an_executor_restarts_the_job_which_finishes_with_the_exact_checksum() {
    // About 4 s per attempt, so the kill lands in the middle of the first one.
    let params = [("events", "200000"), ("keys", "1000"), ("rate", "50000")];
    let expected = reference("windowed-count", &params, 2);
    let mut run = Running::start(mesoflow_run(
        "windowed-count",
        &params,
        &[
            "--parallelism",
            "2",
            "--executors",
            "2",
            "--slots",
            "1",
            "-Dheartbeat.interval=1s",
            "-Dheartbeat.timeout=5s",
            "-Drestart-strategy.type=fixed-delay",
            "-Drestart-strategy.fixed-delay.attempts=3",
            "-Drestart-strategy.fixed-delay.delay=200ms",
        ],
    ));
    let first = pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30)));
    let _second = pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30)));
    run.wait_for("deployed", Duration::from_secs(30));
    run.wait_for("deployed", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: a plain kill(2) of a process this test's child started.
    assert_eq!(unsafe { libc::kill(first, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    let lost = run.wait_for("exited", Duration::from_secs(10));
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "noticed only after {:?}",
        killed_at.elapsed()
    );
    assert!(lost.contains("signal 9"), "{lost}");
    run.wait_for("restarting the job (attempt 1)", Duration::from_secs(10));
    let (code, stdout, stderr) = run.finish(Duration::from_secs(90));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), expected, "{stderr}");
    assert!(stderr.contains("the job restarted 1 time(s)"), "{stderr}");
    // A replacement TaskManager was started.
    assert_eq!(stderr.matches("started TaskManager").count(), 3, "{stderr}");
}

#[test]
fn a_task_manager_of_another_ca_and_garbage_are_refused_while_the_job_goes_on() {
    let params = [("events", "100000"), ("keys", "1000"), ("rate", "50000")];
    let expected = reference("windowed-count", &params, 2);
    let mut run = Running::start(mesoflow_run(
        "windowed-count",
        &params,
        &["--parallelism", "2", "--executors", "2", "--slots", "1"],
    ));
    let line = run.wait_for("JobManager listening", Duration::from_secs(30));
    let control: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("control="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no control address in '{line}'"));
    run.wait_for("deployed", Duration::from_secs(30));

    // Garbage datagrams at the control port.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..50u8 {
        socket.send_to(&[n; 1200], control).unwrap();
    }
    // A TaskManager whose certificate comes from another CA.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let other = mesoflow_dataplane::shuffle::ClusterCa::generate("intruder").unwrap();
        let creds = other.issue("tm-intruder").unwrap();
        let register = mesoflow_proto::control::RegisterTaskManager {
            protocol_version: mesoflow_proto::control::PROTOCOL_VERSION,
            task_manager_id: "tm-intruder".into(),
            slots: 8,
            data_endpoint: "127.0.0.1:9".into(),
            ..Default::default()
        };
        mesoflow_dataplane::control::ControlClient::connect(
            control,
            "jobmanager",
            &creds,
            register,
            mesoflow_dataplane::control::ControlConfig::default(),
        )
        .await
    });
    assert!(refused.is_err(), "a foreign certificate was accepted");

    let (code, stdout, stderr) = run.finish(Duration::from_secs(90));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), expected, "{stderr}");
    assert!(!stderr.contains("restarting"), "{stderr}");
}

#[test]
fn ctrl_c_stops_the_job_and_leaves_no_executor_process() {
    // Unbounded: only Ctrl-C ends it.
    let mut run = Running::start(mesoflow_run(
        "windowed-count",
        &[("events", "0"), ("keys", "1000"), ("rate", "20000")],
        &["--parallelism", "2", "--executors", "2", "--slots", "1"],
    ));
    let a = pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30)));
    let b = pid_of(&run.wait_for("started TaskManager", Duration::from_secs(30)));
    run.wait_for("deployed", Duration::from_secs(30));
    run.wait_for("deployed", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let cli = run.pid();
    // SAFETY: a plain kill(2) of this test's own child; SIGINT is what a terminal's Ctrl-C sends.
    assert_eq!(unsafe { libc::kill(cli, libc::SIGINT) }, 0);
    let (code, _, stderr) = run.finish(Duration::from_secs(40));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    for pid in [a, b] {
        assert!(!alive(pid), "executor {pid} outlived the CLI");
    }
}

#[test]
fn printed_lines_of_four_subtasks_on_two_executors_reach_stdout_whole() {
    // ~90 K lines from 4 sink subtasks in 2 processes writing to one pipe.
    let params = [("events", "100000")];
    let expected = reference("nexmark-q1", &params, 4);
    let mut cmd = mesoflow_run(
        "nexmark-q1",
        &params,
        &[
            "--parallelism",
            "4",
            "--executors",
            "2",
            "--slots",
            "2",
            "--sink",
            "print",
        ],
    );
    cmd.env("MESOFLOW_LOG", "warn");
    let (code, stdout, stderr) = run_to_end(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    let (records, sum) = mesoflow_dataplane::checksum::checksum_lines(stdout.lines());
    assert_eq!(checksum_line(records, sum), expected);
}

#[test]
fn too_few_slots_for_the_parallelism_is_refused_before_anything_starts() {
    let (code, _, stderr) = run_to_end(mesoflow_run(
        "stateless",
        &[("events", "10")],
        &["--parallelism", "4", "--executors", "1", "--slots", "2"],
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs 4 slots"), "{stderr}");
    assert!(!stderr.contains("started TaskManager"), "{stderr}");
}
