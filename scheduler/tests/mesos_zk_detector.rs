//! ZooKeeper master detection against a real ZooKeeper: masters' `json.info_` sequential
//! ephemeral znodes are created as a Mesos master would, the lowest sequence must win, and
//! deleting the leader must switch to the next one.
//!
//! Needs ZooKeeper: `scripts/test.sh` starts one and sets `MESOFLOW_TEST_ZK` (e.g.
//! `127.0.0.1:2181`).

use std::time::Duration;

use mesoflow_scheduler::mesos::{
    MasterEndpoint, MasterSpec, SchedulerConfig, SchedulerEvent, detector::spawn_zk_detector, spawn,
};
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

#[tokio::test]
#[ignore = "needs ZooKeeper: run scripts/test.sh"]
async fn digest_credentials_read_an_acl_protected_group() {
    let servers = zk_address();
    let root = format!("/mesoflow-test-digest-{}", std::process::id());
    let owner = zk::Client::connector()
        .with_auth("digest", b"bob:pw")
        .connect(&servers)
        .await
        .expect("connect to ZooKeeper");
    let protected = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    owner.create(&root, b"", &protected).await.expect("group");
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::creator_all());
    owner
        .create(
            &format!("{root}/json.info_"),
            &master_json("10.9.9.9", 5050),
            &ephemeral,
        )
        .await
        .expect("master");

    let MasterSpec::ZooKeeper(url) =
        MasterSpec::parse(&format!("zk://bob:pw@{servers}{root}")).expect("valid")
    else {
        panic!("zk spec")
    };
    let (mut rx, task) = spawn_zk_detector(url);
    wait_for(&mut rx, vec![MasterEndpoint::http("10.9.9.9", 5050)]).await;
    drop(rx);
    task.abort();

    // Without the credentials the group cannot be read: no leader is reported.
    let MasterSpec::ZooKeeper(url) =
        MasterSpec::parse(&format!("zk://{servers}{root}")).expect("valid")
    else {
        panic!("zk spec")
    };
    let (rx, task) = spawn_zk_detector(url);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.borrow().is_empty());
    drop(rx);
    task.abort();

    let children = owner.list_children(&root).await.expect("list");
    for child in children {
        owner
            .delete(&format!("{root}/{child}"), None)
            .await
            .expect("cleanup");
    }
    owner.delete(&root, None).await.expect("cleanup");
}

/// A master that answers every SUBSCRIBE with SUBSCRIBED for `framework` and keeps the stream
/// open. Returns its port.
async fn subscribing_master(framework: &'static str) -> u16 {
    use axum::{
        body::Body,
        http::{StatusCode, header},
        response::Response,
        routing::post,
    };
    use mesoflow_proto::{
        mesos::v1::{
            FrameworkId,
            scheduler::{Event, event},
        },
        recordio::encode_message,
    };
    let router = axum::Router::new().route(
        "/api/v1/scheduler",
        post(move || async move {
            let mut buf = bytes::BytesMut::new();
            encode_message(
                &Event {
                    r#type: Some(event::Type::Subscribed as i32),
                    subscribed: Some(event::Subscribed {
                        framework_id: FrameworkId {
                            value: framework.into(),
                        },
                        heartbeat_interval_seconds: Some(15.0),
                        master_info: None,
                    }),
                    ..Default::default()
                },
                &mut buf,
            );
            let first =
                futures_util::stream::once(async move { Ok::<_, std::io::Error>(buf.freeze()) });
            let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/x-protobuf")
                .header("Mesos-Stream-Id", "zk-stream")
                .body(Body::from_stream(body))
                .expect("response")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

#[tokio::test]
#[ignore = "needs ZooKeeper: run scripts/test.sh"]
async fn driver_subscribes_to_the_leader_found_in_zookeeper_and_follows_a_change() {
    let servers = zk_address();
    let root = format!("/mesoflow-test-driver-{}", std::process::id());
    let first = subscribing_master("fw-first").await;
    let second = subscribing_master("fw-second").await;
    let client = zk::Client::connect(&servers)
        .await
        .expect("connect to ZooKeeper");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create(&root, b"", &persistent).await.expect("group");
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, first_seq) = client
        .create(
            &format!("{root}/json.info_"),
            &master_json("127.0.0.1", first),
            &ephemeral,
        )
        .await
        .expect("first master");

    let spec = MasterSpec::load(&format!("zk://{servers}{root}")).expect("valid");
    let (masters, source, detector) = spec.into_source();
    let config = SchedulerConfig::new(
        mesoflow_proto::mesos::v1::FrameworkInfo {
            user: "nobody".into(),
            name: "zk-driver".into(),
            ..Default::default()
        },
        masters,
    );
    let (_handle, mut events, _task) = spawn(config, source).expect("spawns");
    assert!(matches!(
        next(&mut events).await,
        SchedulerEvent::Subscribed { framework_id, .. } if framework_id.value == "fw-first"
    ));
    assert_eq!(
        next(&mut events).await,
        SchedulerEvent::ReconciliationComplete
    );

    // A new leader is elected: the driver leaves the old master for the new one.
    client
        .create(
            &format!("{root}/json.info_"),
            &master_json("127.0.0.1", second),
            &ephemeral,
        )
        .await
        .expect("second master");
    client
        .delete(&format!("{root}/json.info_{first_seq}"), None)
        .await
        .expect("delete leader");
    assert!(matches!(
        next(&mut events).await,
        SchedulerEvent::Disconnected { .. }
    ));
    assert!(matches!(
        next(&mut events).await,
        SchedulerEvent::Subscribed { framework_id, .. } if framework_id.value == "fw-second"
    ));

    for child in client.list_children(&root).await.expect("list") {
        client
            .delete(&format!("{root}/{child}"), None)
            .await
            .expect("cleanup");
    }
    client.delete(&root, None).await.expect("cleanup");
    if let Some(task) = detector {
        task.abort();
    }
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<SchedulerEvent>) -> SchedulerEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("event within 20 s")
        .expect("driver alive")
}
