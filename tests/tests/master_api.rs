//! The test master's scheduler API over raw HTTP: status codes, headers, subscription rules,
//! offers, ACCEPT validation, filters, reconciliation, failover, removal, authentication and
//! leader changes, each checked against what a Mesos 1.11 master answers.

mod support;

use std::time::Duration;

use mesoflow_proto::mesos::v1;
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use prost::Message as _;
use support::*;
use v1::TaskState;
use v1::framework_info::capability::Type as Cap;
use v1::scheduler as sched;
use v1::task_status::{Reason, Source};

const SEC: Duration = Duration::from_secs(1);

fn fast_config() -> ClusterConfig {
    ClusterConfig {
        agents: vec![AgentSpec {
            resources: "cpus:2;mem:1024;disk:500;ports:[31000-31004]".into(),
            attributes: "rack:r1;level:3".into(),
        }],
        heartbeat_interval: Duration::from_secs(1),
        allocation_interval: Duration::from_millis(50),
        status_update_retry_min: Duration::from_millis(300),
        executor_shutdown_grace_period: Duration::from_millis(300),
        ..ClusterConfig::default()
    }
}

async fn start(config: ClusterConfig) -> Cluster {
    Cluster::start(config).await.expect("cluster starts")
}

#[tokio::test]
async fn transport_errors_get_the_status_codes_of_a_real_master() {
    let cluster = start(fast_config()).await;
    let url = format!("{}/api/v1/scheduler", cluster.master_url());
    let client = http_client();
    let sub = subscribe_call(framework_info("codes")).encode_to_vec();

    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = post(&client, &url, sub.clone(), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Content-Type"));
    let r = post(
        &client,
        &url,
        sub.clone(),
        &[("Content-Type", "application/x-protobuf; charset=binary")],
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = post(
        &client,
        &url,
        sub.clone(),
        &[("Content-Type", PROTOBUF), ("Accept", "text/html")],
    )
    .await;
    assert_eq!(r.status(), 406);
    let r = post(
        &client,
        &url,
        sub.clone(),
        &[
            ("Content-Type", PROTOBUF),
            ("Accept", PROTOBUF),
            ("Mesos-Stream-Id", "x"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Mesos-Stream-Id"));
    // Malformed protobuf: a truncated length-delimited field.
    let r = post(
        &client,
        &url,
        vec![0x12, 0x05, 0x01],
        &[("Content-Type", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Failed to parse body into Call protobuf")
    );
    // An oversized, garbage body is refused with a clear error, and the master keeps serving.
    let r = post(
        &client,
        &url,
        vec![0xff; 3 << 20],
        &[("Content-Type", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Failed to parse body into Call protobuf")
    );
    // A SUBSCRIBE without the required FrameworkInfo.user is refused as unparsable (prost would
    // happily default it to ""; protobuf on a real master does not).
    let mut info_bytes = Vec::new();
    prost::encoding::string::encode(2, &"no-user".to_string(), &mut info_bytes);
    let mut subscribe = Vec::new();
    prost::encoding::bytes::encode(1, &info_bytes, &mut subscribe);
    let mut body = Vec::new();
    prost::encoding::int32::encode(2, &(sched::call::Type::Subscribe as i32), &mut body);
    prost::encoding::bytes::encode(3, &subscribe, &mut body);
    let r = post(&client, &url, body, &[("Content-Type", PROTOBUF)]).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Missing required fields: subscribe.framework_info.user"),
        "{text}"
    );
    // framework_id differing from framework_info.id.
    let mut call = subscribe_call(framework_info("codes"));
    call.framework_id = Some(v1::FrameworkId {
        value: "other".into(),
    });
    let r = post(
        &client,
        &url,
        call.encode_to_vec(),
        &[("Content-Type", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "'framework_id' differs from 'subscribe.framework_info.id'"
    );
    // A non-SUBSCRIBE call of an unknown framework.
    let teardown = sched::Call {
        framework_id: Some(v1::FrameworkId {
            value: "nope".into(),
        }),
        r#type: Some(sched::call::Type::Teardown as i32),
        ..Default::default()
    };
    let r = post(
        &client,
        &url,
        teardown.encode_to_vec(),
        &[("Content-Type", PROTOBUF), ("Mesos-Stream-Id", "x")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Framework cannot be found");
    // The /master prefix is the same handler.
    let mut fw = RawScheduler::subscribe(
        &format!("{}/master", cluster.master_url()),
        framework_info("prefixed"),
    )
    .await;
    assert!(fw.events.next_event(SEC).await.is_some());
}

#[tokio::test]
async fn subscribe_then_heartbeats_and_offers_with_exact_resources() {
    let cluster = start(fast_config()).await;
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("offers")).await;
    assert_eq!(fw.subscribed.heartbeat_interval_seconds, Some(1.0));
    let master = fw.subscribed.master_info.clone().expect("master_info");
    assert_eq!(
        format!(
            "http://{}:{}",
            master.address.as_ref().unwrap().ip.as_ref().unwrap(),
            master.port
        ),
        cluster.master_url()
    );
    assert!(fw.framework_id.starts_with(&master.id));
    // The master sends a HEARTBEAT right after SUBSCRIBED.
    let hb = fw.events.next_event(SEC).await.unwrap();
    assert_eq!(hb.r#type, Some(sched::event::Type::Heartbeat as i32));

    let offers = fw.offers(3 * SEC).await;
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    assert_eq!(offer.agent_id.value, cluster.agent_ids()[0]);
    assert_eq!(offer.framework_id.value, fw.framework_id);
    assert_eq!(offer.hostname, "127.0.0.1");
    assert!(offer.allocation_info.is_none());
    let mut names: Vec<&str> = offer.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["cpus", "disk", "mem", "ports"]);
    assert_eq!(total(&offer.resources, "cpus"), 2.0);
    assert_eq!(total(&offer.resources, "mem"), 1024.0);
    assert_eq!(total(&offer.resources, "disk"), 500.0);
    let ports = offer.resources.iter().find(|r| r.name == "ports").unwrap();
    assert_eq!(
        ports.ranges.as_ref().unwrap().range,
        vec![v1::value::Range {
            begin: 31000,
            end: 31004
        }]
    );
    assert!(
        offer
            .resources
            .iter()
            .all(|r| r.role.as_deref() == Some("*"))
    );
    assert!(offer.resources.iter().all(|r| r.allocation_info.is_none()));
    let attrs: Vec<(String, String)> = offer
        .attributes
        .iter()
        .map(|a| {
            let v = match (&a.text, &a.scalar) {
                (Some(t), _) => t.value.clone(),
                (_, Some(s)) => s.value.to_string(),
                _ => String::new(),
            };
            (a.name.clone(), v)
        })
        .collect();
    assert_eq!(
        attrs,
        vec![("rack".into(), "r1".into()), ("level".into(), "3".into())]
    );
    // Held offers are not re-offered; heartbeats keep coming every second.
    let hb = fw
        .events
        .next_event(Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(hb.r#type, Some(sched::event::Type::Heartbeat as i32));
}

#[tokio::test]
async fn stream_id_must_accompany_every_other_call() {
    let cluster = start(fast_config()).await;
    let fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("ids")).await;
    let url = format!("{}/api/v1/scheduler", cluster.master_url());
    let revive = sched::Call {
        framework_id: Some(fw.framework_id()),
        r#type: Some(sched::call::Type::Revive as i32),
        ..Default::default()
    }
    .encode_to_vec();
    let r = post(
        &fw.client,
        &url,
        revive.clone(),
        &[("Content-Type", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
    );
    let r = post(
        &fw.client,
        &url,
        revive.clone(),
        &[("Content-Type", PROTOBUF), ("Mesos-Stream-Id", "stale")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("didn't match the stream ID")
    );
    let r = post(
        &fw.client,
        &url,
        revive,
        &[
            ("Content-Type", PROTOBUF),
            ("Mesos-Stream-Id", &fw.stream_id),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    // UNKNOWN is not implemented.
    let r = fw
        .call(sched::Call {
            r#type: Some(sched::call::Type::Unknown as i32),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status(), 501);
    // Missing body for the type.
    let r = fw
        .call(sched::Call {
            r#type: Some(sched::call::Type::Kill as i32),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Expecting 'kill' to be present");
}

#[tokio::test]
async fn decline_filters_suppress_and_revive() {
    let cluster = start(fast_config()).await;
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("filters")).await;
    let offers = fw.offers(3 * SEC).await;
    fw.decline(&offers, 1.0).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Offers, Duration::from_millis(700))
            .await
            .is_none(),
        "re-offered inside the 1 s filter"
    );
    let offers = fw.offers(2 * SEC).await;
    assert_eq!(total(&offers[0].resources, "cpus"), 2.0);
    fw.decline(&offers, 600.0).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Offers, Duration::from_millis(500))
            .await
            .is_none()
    );
    // REVIVE clears the filters.
    fw.simple(sched::call::Type::Revive).await;
    let offers = fw.offers(SEC).await;
    // SUPPRESS stops offers even without filters; REVIVE brings them back.
    fw.simple(sched::call::Type::Suppress).await;
    fw.decline(&offers, 0.0).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Offers, Duration::from_millis(500))
            .await
            .is_none()
    );
    fw.simple(sched::call::Type::Revive).await;
    assert_eq!(fw.offers(SEC).await.len(), 1);
}

#[tokio::test]
async fn multi_role_offers_carry_allocation_info_and_reservations() {
    let mut config = fast_config();
    config.agents = vec![AgentSpec::new("cpus(analytics):1;cpus:2;mem:1024")];
    let cluster = start(config).await;
    let mut info = with_capabilities(framework_info("multi"), &[Cap::MultiRole]);
    info.roles = vec!["analytics".into(), "dev".into()];
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), info).await;
    let offers = fw.offers(3 * SEC).await;
    assert_eq!(
        offers.len(),
        1,
        "unreserved resources go to one role at a time"
    );
    let offer = &offers[0];
    assert_eq!(
        offer.allocation_info.as_ref().unwrap().role.as_deref(),
        Some("analytics")
    );
    assert!(
        offer
            .resources
            .iter()
            .all(|r| { r.allocation_info.as_ref().unwrap().role.as_deref() == Some("analytics") })
    );
    let reserved: f64 = offer
        .resources
        .iter()
        .filter(|r| r.name == "cpus" && r.role.as_deref() == Some("analytics"))
        .map(|r| r.scalar.unwrap().value)
        .sum();
    assert_eq!(reserved, 1.0);
    assert_eq!(total(&offer.resources, "cpus"), 3.0);

    // roles without MULTI_ROLE is an ERROR event on a 200 stream.
    let mut bad = framework_info("bad-roles");
    bad.roles = vec!["dev".into()];
    let client = http_client();
    let r = post(
        &client,
        &format!("{}/api/v1/scheduler", cluster.master_url()),
        subscribe_call(bad).encode_to_vec(),
        &[("Content-Type", PROTOBUF), ("Accept", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut events = EventReader::new(r);
    let e = events.next_event(SEC).await.unwrap();
    assert!(e.error.unwrap().message.contains("MULTI_ROLE"));
    assert!(events.wait_end(SEC).await);
}

#[tokio::test]
async fn accept_is_validated_like_a_real_master() {
    let cluster = start(fast_config()).await;
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("accept")).await;
    let offer = fw.offers(3 * SEC).await.remove(0);

    // Too many resources: TASK_ERROR from the master, no uuid.
    let big = task(
        "big",
        &offer,
        shell_executor("e-big", "sleep 30"),
        4.0,
        64.0,
    );
    fw.launch(&offer, vec![big]).await;
    let s = fw.update(SEC).await;
    assert_eq!(s.task_id.value, "big");
    assert_eq!(state_of(&s), TaskState::TaskError);
    assert_eq!(reason_of(&s), Some(Reason::TaskInvalid));
    assert_eq!(s.source, Some(Source::Master as i32));
    assert!(s.uuid.is_none());
    assert!(s.message.unwrap().contains("more resources"));

    // The offer was used by that ACCEPT: using it again fails with INVALID_OFFERS.
    let again = task("again", &offer, shell_executor("e1", "sleep 30"), 0.5, 64.0);
    fw.launch(&offer, vec![again]).await;
    let s = fw.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskLost);
    assert_eq!(reason_of(&s), Some(Reason::InvalidOffers));
    assert!(s.uuid.is_none());

    // Exactly one of command and executor; IDs are validated.
    let offer = fw.offers(3 * SEC).await.remove(0);
    let mut both = task("both", &offer, shell_executor("e2", "sleep 30"), 0.1, 32.0);
    both.command = Some(v1::CommandInfo {
        value: Some("true".into()),
        ..Default::default()
    });
    let slash = task("a/b", &offer, shell_executor("e3", "sleep 30"), 0.1, 32.0);
    let good = task("good", &offer, shell_executor("e4", "sleep 30"), 0.1, 32.0);
    // Same executor id, different ExecutorInfo: incompatible.
    let clash = task("clash", &offer, shell_executor("e4", "sleep 31"), 0.1, 32.0);
    let dup = task("good", &offer, shell_executor("e4", "sleep 30"), 0.1, 32.0);
    fw.launch(&offer, vec![both, slash, good, clash, dup]).await;
    let mut errors = Vec::new();
    for _ in 0..4 {
        let s = fw.update(SEC).await;
        assert_eq!(state_of(&s), TaskState::TaskError, "{s:?}");
        errors.push((s.task_id.value.clone(), s.message.unwrap_or_default()));
    }
    assert!(
        errors[0].1.contains("at least one (but not both)"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("'a/b'"), "{errors:?}");
    assert_eq!(errors[2].0, "clash");
    assert!(errors[2].1.contains("not compatible"), "{errors:?}");
    assert_eq!(errors[3].0, "good");
    assert!(errors[3].1.contains("duplicate ID"), "{errors:?}");
    assert_eq!(
        cluster.task_state(&fw.framework_id, "good"),
        Some(TaskState::TaskStaging)
    );

    // Remaining resources come back in a new offer: 2 - (0.1 task + 0.1 executor).
    let offer = fw.offers(3 * SEC).await.remove(0);
    assert!((total(&offer.resources, "cpus") - 1.8).abs() < 1e-9);
    assert_eq!(total(&offer.resources, "mem"), 1024.0 - 64.0);
    assert_eq!(
        offer.executor_ids,
        vec![v1::ExecutorId { value: "e4".into() }]
    );
}

#[tokio::test]
async fn partition_aware_invalid_offers_are_dropped_and_reconciliation_answers() {
    let cluster = start(fast_config()).await;
    let info = with_capabilities(framework_info("pa"), &[Cap::PartitionAware]);
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), info).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    fw.decline(std::slice::from_ref(&offer), 0.0).await;
    fw.launch_sleeper(&offer, "late", "e", 30).await;
    let s = fw.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskDropped);
    assert_eq!(reason_of(&s), Some(Reason::InvalidOffers));

    let agent = cluster.agent_ids()[0].clone();
    fw.reconcile(vec![("ghost", None), ("ghost2", Some(agent.as_str()))])
        .await;
    let a = fw.update(SEC).await;
    let b = fw.update(SEC).await;
    assert_eq!(
        (state_of(&a), state_of(&b)),
        (TaskState::TaskUnknown, TaskState::TaskGone)
    );
    for s in [&a, &b] {
        assert_eq!(reason_of(s), Some(Reason::Reconciliation));
        assert_eq!(s.source, Some(Source::Master as i32));
        assert!(s.uuid.is_none());
    }

    // A non-partition-aware framework gets TASK_LOST for both.
    let mut plain = RawScheduler::subscribe(&cluster.master_url(), framework_info("plain")).await;
    plain
        .reconcile(vec![("ghost", None), ("ghost2", Some(agent.as_str()))])
        .await;
    assert_eq!(state_of(&plain.update(SEC).await), TaskState::TaskLost);
    assert_eq!(state_of(&plain.update(SEC).await), TaskState::TaskLost);
}

#[tokio::test]
async fn failover_with_the_same_id_and_removed_framework() {
    let cluster = start(fast_config()).await;
    let base = cluster.master_url();
    let mut first = RawScheduler::subscribe(&base, framework_info("failover")).await;
    let offer = first.offers(3 * SEC).await.remove(0);
    first.launch_sleeper(&offer, "t1", "e1", 30).await;
    assert!(
        executor_process_started(&cluster, 2 * SEC).await,
        "executor started"
    );

    let mut info = framework_info("failover");
    info.id = Some(first.framework_id());
    let mut second = RawScheduler::subscribe(&base, info.clone()).await;
    assert_eq!(second.framework_id, first.framework_id);
    assert_ne!(second.stream_id, first.stream_id);
    let e = first
        .events
        .wait_for(sched::event::Type::Error, SEC)
        .await
        .expect("ERROR on the old stream");
    assert_eq!(e.error.unwrap().message, "Framework failed over");
    assert!(first.events.wait_end(SEC).await, "old stream closed");
    // The old stream id is dead.
    let r = first
        .call(sched::Call {
            r#type: Some(sched::call::Type::Revive as i32),
            ..Default::default()
        })
        .await;
    assert_eq!(r.status(), 400);

    // Reconciliation after re-subscribing: the master still knows t1.
    second.reconcile(vec![("t1", None)]).await;
    let s = second.update(SEC).await;
    assert_eq!(s.task_id.value, "t1");
    assert_eq!(state_of(&s), TaskState::TaskStaging);
    assert_eq!(reason_of(&s), Some(Reason::Reconciliation));

    // TEARDOWN removes it for good: executors are shut down, the id cannot come back.
    second.simple(sched::call::Type::Teardown).await;
    assert!(
        second.events.wait_end(SEC).await,
        "stream closed on teardown"
    );
    assert!(
        eventually(3 * SEC, || cluster.executors().is_empty()).await,
        "executors shut down after teardown"
    );
    let client = http_client();
    let r = post(
        &client,
        &format!("{base}/api/v1/scheduler"),
        subscribe_call(info).encode_to_vec(),
        &[("Content-Type", PROTOBUF), ("Accept", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut events = EventReader::new(r);
    let e = events.next_event(SEC).await.unwrap();
    assert_eq!(e.error.unwrap().message, "Framework has been removed");
    assert!(events.wait_end(SEC).await);
}

#[tokio::test]
async fn failover_timeout_expiry_removes_the_framework_and_kills_its_executors() {
    let cluster = start(fast_config()).await;
    let base = cluster.master_url();
    let mut info = framework_info("short");
    info.failover_timeout = Some(1.0);
    let mut fw = RawScheduler::subscribe(&base, info.clone()).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    fw.launch_sleeper(&offer, "t", "e", 60).await;
    assert!(executor_process_started(&cluster, 2 * SEC).await);
    let id = fw.framework_id();
    drop(fw);
    // Disconnected: non-SUBSCRIBE calls are forbidden until the timeout removes it.
    assert!(eventually(3 * SEC, || cluster.framework_ids().is_empty()).await);
    assert!(eventually(3 * SEC, || cluster.executors().is_empty()).await);
    info.id = Some(id);
    let r = post(
        &http_client(),
        &format!("{base}/api/v1/scheduler"),
        subscribe_call(info).encode_to_vec(),
        &[("Content-Type", PROTOBUF), ("Accept", PROTOBUF)],
    )
    .await;
    let mut events = EventReader::new(r);
    let e = events.next_event(SEC).await.unwrap();
    assert_eq!(e.error.unwrap().message, "Framework has been removed");
}

#[tokio::test]
async fn disconnected_framework_gets_403() {
    let cluster = start(fast_config()).await;
    let fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("gone")).await;
    let RawScheduler {
        client,
        base,
        stream_id,
        framework_id,
        events,
        ..
    } = fw;
    drop(events);
    // The master notices the closed connection on its next write (a heartbeat, every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cluster.framework_ids(),
        vec![framework_id.clone()],
        "kept for failover"
    );
    let r = post(
        &client,
        &format!("{base}/api/v1/scheduler"),
        sched::Call {
            framework_id: Some(v1::FrameworkId {
                value: framework_id,
            }),
            r#type: Some(sched::call::Type::Revive as i32),
            ..Default::default()
        }
        .encode_to_vec(),
        &[("Content-Type", PROTOBUF), ("Mesos-Stream-Id", &stream_id)],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "Framework is not subscribed");
}

#[tokio::test]
async fn http_framework_authentication() {
    let mut config = fast_config();
    config.credentials = Some(vec![("alice".into(), "s3cret".into())]);
    let cluster = start(config).await;
    let url = format!("{}/api/v1/scheduler", cluster.master_url());
    let client = http_client();
    let mut info = framework_info("auth");
    info.principal = Some("alice".into());
    let body = subscribe_call(info.clone()).encode_to_vec();
    let r = post(&client, &url, body.clone(), &[("Content-Type", PROTOBUF)]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"mesos-master-scheduler\""
    );
    let r = client
        .post(&url)
        .header("Content-Type", PROTOBUF)
        .basic_auth("alice", Some("wrong"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut bob = info.clone();
    bob.principal = Some("bob".into());
    let r = client
        .post(&url)
        .header("Content-Type", PROTOBUF)
        .basic_auth("alice", Some("s3cret"))
        .body(subscribe_call(bob).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("does not match principal"));
    let fw = RawScheduler::subscribe_with(
        &cluster.master_url(),
        info,
        Some(("alice".into(), "s3cret".into())),
    )
    .await;
    fw.simple(sched::call::Type::Revive).await;
}

#[tokio::test]
async fn leader_change_answers_503_then_redirects_to_the_new_leader() {
    let cluster = std::sync::Arc::new(start(fast_config()).await);
    let old = cluster.master_url();
    let mut fw = RawScheduler::subscribe(&old, framework_info("leader")).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    fw.launch_sleeper(&offer, "t", "e", 30).await;
    assert!(executor_process_started(&cluster, 2 * SEC).await);

    let c = cluster.clone();
    let failover =
        tokio::spawn(async move { c.fail_over_master(Duration::from_millis(800)).await });
    assert!(
        fw.events.wait_end(SEC).await,
        "the old leader's stream closes"
    );
    let body = subscribe_call(framework_info("leader")).encode_to_vec();
    let url = format!("{old}/api/v1/scheduler");
    let r = post(
        &fw.client,
        &url,
        body.clone(),
        &[("Content-Type", PROTOBUF)],
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "No leader elected");
    let new = failover.await.unwrap().unwrap();
    assert_ne!(new, old);
    let r = post(&fw.client, &url, body, &[("Content-Type", PROTOBUF)]).await;
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!(
            "//{}/master/api/v1/scheduler",
            new.trim_start_matches("http://")
        )
    );
    // The new leader accepts the old framework id and knows the task from the agent.
    let mut info = framework_info("leader");
    info.id = Some(fw.framework_id());
    let mut again = RawScheduler::subscribe(
        &format!("http:{}", location.trim_end_matches("/api/v1/scheduler")).replace("/master", ""),
        info,
    )
    .await;
    assert_eq!(again.framework_id, fw.framework_id);
    again.reconcile(vec![("t", None)]).await;
    let s = again.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskStaging);
}

#[tokio::test]
async fn json_clients_get_a_json_stream_in_the_mesos_dialect() {
    let cluster = start(fast_config()).await;
    let url = format!("{}/api/v1/scheduler", cluster.master_url());
    let client = http_client();
    let subscribe =
        br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"curl"}}}"#;
    let r = post(
        &client,
        &url,
        subscribe.to_vec(),
        &[("Content-Type", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let stream_id = r.headers()["mesos-stream-id"].to_str().unwrap().to_string();
    let mut events = EventReader::new(r);
    let first: serde_json::Value =
        serde_json::from_slice(&events.next_record(SEC).await.unwrap()).unwrap();
    assert_eq!(first["type"], "SUBSCRIBED");
    assert_eq!(first["subscribed"]["heartbeat_interval_seconds"], 1.0);
    let framework_id = first["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    // Exactly the record Mesos documents: 20\n{"type":"HEARTBEAT"}.
    assert_eq!(
        &events.next_record(SEC).await.unwrap()[..],
        br#"{"type":"HEARTBEAT"}"#
    );
    let offers: serde_json::Value =
        serde_json::from_slice(&events.next_record(3 * SEC).await.unwrap()).unwrap();
    assert_eq!(offers["type"], "OFFERS");
    let offer = &offers["offers"]["offers"][0];
    assert_eq!(offer["resources"][0]["type"], "SCALAR");
    let offer_id = offer["id"]["value"].as_str().unwrap().to_string();

    // Calls in JSON too; a call missing a required field is a 400 naming it.
    let decline = serde_json::json!({
        "framework_id": {"value": framework_id},
        "type": "DECLINE",
        "decline": {"offer_ids": [{"value": offer_id}], "filters": {"refuse_seconds": 0.0}}
    });
    let r = post(
        &client,
        &url,
        decline.to_string().into_bytes(),
        &[
            ("Content-Type", "application/json"),
            ("Mesos-Stream-Id", &stream_id),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    let broken = br#"{"type":"ACKNOWLEDGE","framework_id":{"value":"x"},"acknowledge":{"task_id":{"value":"t"}}}"#;
    let r = post(
        &client,
        &url,
        broken.to_vec(),
        &[
            ("Content-Type", "application/json"),
            ("Mesos-Stream-Id", &stream_id),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Missing required fields: acknowledge.agent_id, acknowledge.uuid"),
        "{text}"
    );
    let r = post(
        &client,
        &url,
        b"{oops".to_vec(),
        &[("Content-Type", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Malformed JSON"));
}
