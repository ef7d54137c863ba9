//! Raw HTTP helpers for talking to the test cluster exactly as a client would: protobuf bodies,
//! RecordIO event streams, explicit headers. Deliberately independent of our own client crates
//! so that the negative cases (wrong headers, bad bodies) can be sent at all.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use mesoflow_proto::recordio::RecordDecoder;
use mesoflow_tests::cluster::Cluster;
use prost::Message as _;
use v1::scheduler as sched;

pub const PROTOBUF: &str = "application/x-protobuf";

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// Reads protobuf messages from a RecordIO response body.
pub struct EventReader {
    response: reqwest::Response,
    decoder: RecordDecoder,
    pub ended: bool,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            decoder: RecordDecoder::new(),
            ended: false,
        }
    }

    /// The next record, or `None` at the end of the stream or after `timeout`.
    pub async fn next_record(&mut self, timeout: Duration) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.decoder.next_record().expect("valid RecordIO") {
                return Some(r);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.decoder.push(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.ended = true;
                }
            }
        }
    }

    pub async fn next_event(&mut self, timeout: Duration) -> Option<sched::Event> {
        let r = self.next_record(timeout).await?;
        Some(sched::Event::decode(r).expect("scheduler event"))
    }

    pub async fn next_executor_event(&mut self, timeout: Duration) -> Option<v1::executor::Event> {
        let r = self.next_record(timeout).await?;
        Some(v1::executor::Event::decode(r).expect("executor event"))
    }

    /// The next scheduler event that is not a HEARTBEAT.
    pub async fn next_non_heartbeat(&mut self, timeout: Duration) -> Option<sched::Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next_event(left).await?;
            if e.r#type != Some(sched::event::Type::Heartbeat as i32) {
                return Some(e);
            }
        }
    }

    /// Skips events until one of type `kind` (or gives up after `timeout`).
    pub async fn wait_for(
        &mut self,
        kind: sched::event::Type,
        timeout: Duration,
    ) -> Option<sched::Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next_event(left).await?;
            if e.r#type == Some(kind as i32) {
                return Some(e);
            }
        }
    }

    /// Waits for the end of the stream, ignoring events.
    pub async fn wait_end(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.next_record(left).await.is_none() {
                return self.ended;
            }
        }
    }
}

pub fn framework_info(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "mesoflow".into(),
        name: name.into(),
        failover_timeout: Some(3600.0),
        ..Default::default()
    }
}

pub fn with_capabilities(
    mut info: v1::FrameworkInfo,
    caps: &[v1::framework_info::capability::Type],
) -> v1::FrameworkInfo {
    for c in caps {
        info.capabilities.push(v1::framework_info::Capability {
            r#type: Some(*c as i32),
        });
    }
    info
}

pub fn subscribe_call(info: v1::FrameworkInfo) -> sched::Call {
    sched::Call {
        framework_id: info.id.clone(),
        r#type: Some(sched::call::Type::Subscribe as i32),
        subscribe: Some(sched::call::Subscribe {
            framework_info: info,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A subscribed framework speaking raw HTTP.
pub struct RawScheduler {
    pub client: reqwest::Client,
    pub base: String,
    pub stream_id: String,
    pub framework_id: String,
    pub events: EventReader,
    pub subscribed: sched::event::Subscribed,
    pub auth: Option<(String, String)>,
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

impl RawScheduler {
    /// Subscribes and reads SUBSCRIBED; panics with the status and body otherwise.
    pub async fn subscribe(base: &str, info: v1::FrameworkInfo) -> RawScheduler {
        Self::subscribe_with(base, info, None).await
    }

    pub async fn subscribe_with(
        base: &str,
        info: v1::FrameworkInfo,
        auth: Option<(String, String)>,
    ) -> RawScheduler {
        let client = http_client();
        let mut req = client
            .post(format!("{base}/api/v1/scheduler"))
            .header("Content-Type", PROTOBUF)
            .header("Accept", PROTOBUF)
            .body(subscribe_call(info).encode_to_vec());
        if let Some((p, s)) = &auth {
            req = req.basic_auth(p, Some(s));
        }
        let response = req.send().await.expect("subscribe sent");
        assert_eq!(
            response.status(),
            200,
            "SUBSCRIBE answered {}",
            response.status()
        );
        assert_eq!(response.headers()["content-type"], PROTOBUF);
        let stream_id = response.headers()["mesos-stream-id"]
            .to_str()
            .expect("stream id")
            .to_string();
        let mut events = EventReader::new(response);
        let first = events
            .next_event(Duration::from_secs(5))
            .await
            .expect("first event");
        let subscribed = match first.subscribed {
            Some(s) => s,
            None => panic!("expected SUBSCRIBED, got {first:?}"),
        };
        RawScheduler {
            client,
            base: base.to_string(),
            stream_id,
            framework_id: subscribed.framework_id.value.clone(),
            events,
            subscribed,
            auth,
        }
    }

    pub fn framework_id(&self) -> v1::FrameworkId {
        v1::FrameworkId {
            value: self.framework_id.clone(),
        }
    }

    /// Sends a call with this subscription's stream id.
    pub async fn call(&self, mut call: sched::Call) -> reqwest::Response {
        if call.framework_id.is_none() {
            call.framework_id = Some(self.framework_id());
        }
        let mut req = self
            .client
            .post(format!("{}/api/v1/scheduler", self.base))
            .header("Content-Type", PROTOBUF)
            .header("Mesos-Stream-Id", &self.stream_id)
            .body(call.encode_to_vec());
        if let Some((p, s)) = &self.auth {
            req = req.basic_auth(p, Some(s));
        }
        req.send().await.expect("call sent")
    }

    pub async fn call_ok(&self, call: sched::Call) {
        let r = self.call(call).await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 202, "call refused: {body}");
    }

    /// Waits for the next OFFERS event and returns its offers.
    pub async fn offers(&mut self, timeout: Duration) -> Vec<v1::Offer> {
        match self
            .events
            .wait_for(sched::event::Type::Offers, timeout)
            .await
        {
            Some(e) => e.offers.expect("offers payload").offers,
            None => panic!("no OFFERS within {timeout:?}"),
        }
    }

    /// Waits for the next UPDATE and returns its status.
    pub async fn update(&mut self, timeout: Duration) -> v1::TaskStatus {
        match self
            .events
            .wait_for(sched::event::Type::Update, timeout)
            .await
        {
            Some(e) => e.update.expect("update payload").status,
            None => panic!("no UPDATE within {timeout:?}"),
        }
    }

    pub async fn decline(&self, offers: &[v1::Offer], refuse_seconds: f64) {
        self.call_ok(sched::Call {
            r#type: Some(sched::call::Type::Decline as i32),
            decline: Some(sched::call::Decline {
                offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
                filters: Some(v1::Filters {
                    refuse_seconds: Some(refuse_seconds),
                }),
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn launch(&self, offer: &v1::Offer, tasks: Vec<v1::TaskInfo>) {
        self.accept(std::slice::from_ref(&offer.id), tasks).await;
    }

    /// Launches one task `task_id` on a new shell executor `executor_id` that sleeps for `secs`
    /// seconds, with 0.1 cpus and 32 MB from `offer`: the long-lived task most tests need.
    pub async fn launch_sleeper(
        &self,
        offer: &v1::Offer,
        task_id: &str,
        executor_id: &str,
        secs: u32,
    ) {
        let executor = shell_executor(executor_id, &format!("sleep {secs}"));
        self.launch(offer, vec![task(task_id, offer, executor, 0.1, 32.0)])
            .await;
    }

    pub async fn accept(&self, offer_ids: &[v1::OfferId], tasks: Vec<v1::TaskInfo>) {
        self.call_ok(sched::Call {
            r#type: Some(sched::call::Type::Accept as i32),
            accept: Some(sched::call::Accept {
                offer_ids: offer_ids.to_vec(),
                operations: vec![v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                    ..Default::default()
                }],
                filters: Some(v1::Filters {
                    refuse_seconds: Some(0.0),
                }),
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn acknowledge(&self, status: &v1::TaskStatus) {
        self.call_ok(sched::Call {
            r#type: Some(sched::call::Type::Acknowledge as i32),
            acknowledge: Some(sched::call::Acknowledge {
                agent_id: status.agent_id.clone().expect("agent id in status"),
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone().expect("uuid to acknowledge"),
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn reconcile(&self, tasks: Vec<(&str, Option<&str>)>) {
        self.call_ok(sched::Call {
            r#type: Some(sched::call::Type::Reconcile as i32),
            reconcile: Some(sched::call::Reconcile {
                tasks: tasks
                    .into_iter()
                    .map(|(t, a)| sched::call::reconcile::Task {
                        task_id: v1::TaskId { value: t.into() },
                        agent_id: a.map(|a| v1::AgentId { value: a.into() }),
                    })
                    .collect(),
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn simple(&self, kind: sched::call::Type) {
        self.call_ok(sched::Call {
            r#type: Some(kind as i32),
            ..Default::default()
        })
        .await;
    }
}

pub fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    }
}

/// A custom executor running `command` through `/bin/sh -c`.
pub fn shell_executor(id: &str, command: &str) -> v1::ExecutorInfo {
    v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: id.into() },
        command: Some(v1::CommandInfo {
            value: Some(command.into()),
            ..Default::default()
        }),
        resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
        ..Default::default()
    }
}

pub fn task(
    id: &str,
    offer: &v1::Offer,
    executor: v1::ExecutorInfo,
    cpus: f64,
    mem: f64,
) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", cpus), scalar("mem", mem)],
        executor: Some(executor),
        ..Default::default()
    }
}

/// Scalar total of `name` in `resources`.
pub fn total(resources: &[v1::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.map(|s| s.value))
        .sum()
}

pub fn state_of(status: &v1::TaskStatus) -> v1::TaskState {
    v1::TaskState::try_from(status.state).expect("known task state")
}

pub fn reason_of(status: &v1::TaskStatus) -> Option<v1::task_status::Reason> {
    status
        .reason
        .and_then(|r| v1::task_status::Reason::try_from(r).ok())
}

/// Waits until some executor process of `cluster` has been started (it has a pid).
pub async fn executor_process_started(cluster: &Cluster, timeout: Duration) -> bool {
    eventually(timeout, || {
        cluster
            .executors()
            .iter()
            .any(|(_agent, _framework, _executor, pid, _sandbox)| pid.is_some())
    })
    .await
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
