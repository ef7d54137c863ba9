//! The `mesos-test-cluster` binary starts a usable cluster and says where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

#[tokio::test]
async fn the_binary_prints_its_endpoints_and_serves_the_scheduler_api() {
    let binary = env!("CARGO_BIN_EXE_mesos-test-cluster");
    let mut child = Command::new(binary)
        .args([
            "--agents",
            "2",
            "--resources",
            "cpus:1;mem:256",
            "--heartbeat-interval",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(4)
        .map(|l| l.unwrap())
        .collect();
    let master = lines[0]
        .strip_prefix("master: ")
        .expect("master line")
        .to_string();
    assert!(master.starts_with("http://127.0.0.1:"), "{master}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("agent ")).count(), 2);
    let mut fw = support::RawScheduler::subscribe(&master, support::framework_info("cli")).await;
    assert_eq!(fw.subscribed.heartbeat_interval_seconds, Some(1.0));
    let offers = fw.offers(Duration::from_secs(3)).await;
    let cpus: f64 = offers
        .iter()
        .map(|o| support::total(&o.resources, "cpus"))
        .sum();
    assert_eq!(cpus, 2.0);
    // SAFETY: SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
