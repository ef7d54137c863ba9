//! ZooKeeper master detection against a real ZooKeeper: masters' `json.info_` sequential
//! ephemeral znodes are created as a Mesos master would, the lowest sequence must win, and
//! deleting the leader must switch to the next one.
//!
//! Needs ZooKeeper: `scripts/test.sh` starts one and sets `MESOFLOW_TEST_ZK` (e.g.
//! `127.0.0.1:2181`).

use std::time::Duration;

use mesoflow_scheduler::mesos::{MasterEndpoint, MasterSpec, detector::spawn_zk_detector};
use tokio::sync::watch;
use zookeeper_client as zk;

fn zk_address() -> String {
    std::env::var("MESOFLOW_TEST_ZK")
        .expect("MESOFLOW_TEST_ZK must name a ZooKeeper (run scripts/test.sh)")
}

async fn wait_for(rx: &mut watch::Receiver<Vec<MasterEndpoint>>, expected: Vec<MasterEndpoint>) {
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if *rx.borrow_and_update() == expected {
                return;
            }
            rx.changed().await.expect("detector alive");
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "detector reported {:?}, expected {expected:?}",
        *rx.borrow()
    );
}

fn master_json(ip: &str, port: u16) -> Vec<u8> {
    format!(
        r#"{{"id":"master-{port}","ip":16777343,"port":{port},"hostname":"localhost",
        "address":{{"hostname":"localhost","ip":"{ip}","port":{port}}},
        "capabilities":[{{"type":"AGENT_UPDATE"}},{{"type":"QUOTA_V2"}}],"version":"1.11.0"}}"#
    )
    .into_bytes()
}

#[tokio::test]
#[ignore = "needs ZooKeeper: run scripts/test.sh"]
async fn lowest_sequence_leads_and_deleting_it_switches_leader() {
    let servers = zk_address();
    let root = format!("/mesoflow-test-detector-{}", std::process::id());
    let spec = MasterSpec::parse(&format!("zk://{servers}{root}/mesos")).expect("valid spec");
    let MasterSpec::ZooKeeper(url) = spec else {
        panic!("zk spec")
    };

    // The detector starts before the group exists: no leader.
    let (mut rx, task) = spawn_zk_detector(url);
    assert!(rx.borrow().is_empty());

    let client = zk::Client::connect(&servers)
        .await
        .expect("connect to ZooKeeper");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create(&root, b"", &persistent).await.expect("root");
    client
        .create(&format!("{root}/mesos"), b"", &persistent)
        .await
        .expect("group");
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, first_seq) = client
        .create(
            &format!("{root}/mesos/json.info_"),
            &master_json("10.0.0.1", 5050),
            &ephemeral,
        )
        .await
        .expect("first master");
    // A non-JSON legacy entry and a log replica entry must be ignored.
    client
        .create(&format!("{root}/mesos/log_replicas"), b"", &persistent)
        .await
        .expect("other child");
    let (_, second_seq) = client
        .create(
            &format!("{root}/mesos/json.info_"),
            &master_json("10.0.0.2", 5051),
            &ephemeral,
        )
        .await
        .expect("second master");
    assert!(second_seq.into_i64() > first_seq.into_i64());

    wait_for(&mut rx, vec![MasterEndpoint::http("10.0.0.1", 5050)]).await;

    // The leader goes away: the next-lowest sequence takes over.
    client
        .delete(&format!("{root}/mesos/json.info_{first_seq}"), None)
        .await
        .expect("delete leader");
    wait_for(&mut rx, vec![MasterEndpoint::http("10.0.0.2", 5051)]).await;

    // A newer candidate does not displace the current leader.
    let (_, third_seq) = client
        .create(
            &format!("{root}/mesos/json.info_"),
            &master_json("10.0.0.3", 5052),
            &ephemeral,
        )
        .await
        .expect("third master");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*rx.borrow(), vec![MasterEndpoint::http("10.0.0.2", 5051)]);

    // Everyone leaves: no leader.
    for seq in [second_seq, third_seq] {
        client
            .delete(&format!("{root}/mesos/json.info_{seq}"), None)
            .await
            .expect("delete");
    }
    wait_for(&mut rx, vec![]).await;

    client
        .delete(&format!("{root}/mesos/log_replicas"), None)
        .await
        .expect("cleanup");
    client
        .delete(&format!("{root}/mesos"), None)
        .await
        .expect("cleanup");
    client.delete(&root, None).await.expect("cleanup");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("detector stops when nobody listens")
        .expect("no panic");
}
