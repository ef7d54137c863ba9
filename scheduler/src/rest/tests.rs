//! The REST endpoint over real HTTP on 127.0.0.1 with a fake backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use std::sync::Mutex;

use super::api::*;
use super::server::{RestConfig, RestServer, TlsFiles, serve};
use crate::job_manager::request::{ExecutionDefaults, prepare};

/// A dispatcher stand-in: jobs go RUNNING on submit and FINISHED after `finish_after` polls of
/// `GET /jobs/{id}`.
pub(crate) struct FakeBackend {
    state: Mutex<FakeState>,
    finish_after: u32,
}

struct FakeState {
    next_id: u128,
    jobs: BTreeMap<JobId, FakeJob>,
    /// Savepoint triggers: (job, request id) -> location, polls left before completion.
    savepoints: BTreeMap<(JobId, String), (String, u32)>,
}

struct FakeJob {
    name: String,
    state: JobState,
    polls: u32,
    vertices: Vec<(String, u32)>,
}

impl FakeBackend {
    pub(crate) fn new(finish_after: u32) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FakeState {
                next_id: 0xfeed_0000_0000_0000_0000_0000_0000_0001,
                jobs: BTreeMap::new(),
                savepoints: BTreeMap::new(),
            }),
            finish_after,
        })
    }

    fn overview_of(id: JobId, j: &FakeJob) -> JobOverview {
        JobOverview {
            jid: id,
            name: j.name.clone(),
            state: j.state,
            start_time: 1_700_000_000_000,
            end_time: if j.state.is_terminal() {
                1_700_000_001_500
            } else {
                -1
            },
            duration: 1_500,
            last_modification: 1_700_000_001_500,
            tasks: TaskCounts::of(
                j.vertices
                    .iter()
                    .flat_map(|(_, p)| std::iter::repeat_n(vertex_state(j.state), *p as usize)),
            ),
        }
    }
}

fn vertex_state(s: JobState) -> ExecutionState {
    match s {
        JobState::Finished => ExecutionState::Finished,
        JobState::Cancelled => ExecutionState::Canceled,
        _ => ExecutionState::Running,
    }
}

impl RestBackend for FakeBackend {
    fn overview(&self) -> ClusterOverview {
        let s = self.state.lock().unwrap();
        let count = |st: JobState| s.jobs.values().filter(|j| j.state == st).count() as u32;
        ClusterOverview {
            taskmanagers: 2,
            slots_total: 4,
            slots_available: 3,
            jobs_running: count(JobState::Running),
            jobs_finished: count(JobState::Finished),
            jobs_cancelled: count(JobState::Cancelled),
            jobs_failed: count(JobState::Failed),
            ..ClusterOverview::default()
        }
    }

    fn config(&self) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                key: "parallelism.default".into(),
                value: "1".into(),
            },
            ConfigEntry {
                key: "rest.token".into(),
                value: "******".into(),
            },
        ]
    }

    fn jobs(&self) -> Vec<JobOverview> {
        let s = self.state.lock().unwrap();
        s.jobs
            .iter()
            .map(|(id, j)| Self::overview_of(*id, j))
            .collect()
    }

    fn job(&self, id: &JobId) -> Option<JobDetails> {
        let mut s = self.state.lock().unwrap();
        let j = s.jobs.get_mut(id)?;
        j.polls += 1;
        if j.state == JobState::Running && j.polls > self.finish_after {
            j.state = JobState::Finished;
        }
        let o = Self::overview_of(*id, j);
        let status = vertex_state(j.state);
        Some(JobDetails {
            jid: *id,
            name: j.name.clone(),
            is_stoppable: false,
            state: j.state,
            start_time: o.start_time,
            end_time: o.end_time,
            duration: o.duration,
            max_parallelism: 128,
            now: 0,
            timestamps: [(JobState::Running, o.start_time)].into(),
            vertices: j
                .vertices
                .iter()
                .enumerate()
                .map(|(i, (name, p))| VertexDetails {
                    id: format!("{:032x}", i + 1),
                    name: name.clone(),
                    max_parallelism: 128,
                    parallelism: *p,
                    status,
                    start_time: o.start_time,
                    end_time: o.end_time,
                    duration: o.duration,
                    tasks: [(status, *p)].into(),
                    metrics: VertexIoMetrics {
                        read_records: 10,
                        write_records: 10,
                        ..VertexIoMetrics::default()
                    },
                })
                .collect(),
            status_counts: [(status, j.vertices.len() as u32)].into(),
            attempt: 1,
            restarts: 0,
            failure_cause: None,
            result: (j.state == JobState::Finished)
                .then(|| JobResultInfo::new(1000, 900, 0x0123_4567_89ab_cdef, 0)),
        })
    }

    fn task_managers(&self) -> Vec<TaskManagerInfo> {
        vec![TaskManagerInfo {
            id: "tm-1".into(),
            path: "10.0.0.7:6124".into(),
            data_port: 6125,
            time_since_last_heartbeat: 1_700_000_000_000,
            slots_number: 2,
            free_slots: 1,
            hardware: None,
        }]
    }

    fn metrics(&self) -> ClusterMetrics {
        let s = self.state.lock().unwrap();
        let mut m = ClusterMetrics {
            taskmanagers_registered: 2,
            slots_total: 4,
            slots_available: 3,
            ..ClusterMetrics::default()
        };
        for (id, j) in &s.jobs {
            *m.jobs.entry(j.state).or_default() += 1;
            for (v, _) in &j.vertices {
                m.vertices.push(VertexMetrics {
                    job_id: *id,
                    job_name: j.name.clone(),
                    vertex: v.clone(),
                    records_in: 10,
                    records_out: 10,
                    backpressure: None,
                });
            }
        }
        m
    }

    fn submit(&self, request: JobRequest) -> Result<JobId, RestError> {
        let prepared = prepare(
            &request,
            &ExecutionDefaults {
                parallelism: 1,
                max_parallelism: 128,
                runtime: mesoflow_dataplane::RuntimeConfig::default(),
            },
        )?;
        let mut s = self.state.lock().unwrap();
        let id = JobId(s.next_id);
        s.next_id += 1;
        let vertices = prepared
            .vertex_names
            .into_iter()
            .zip(prepared.chains)
            .collect();
        s.jobs.insert(
            id,
            FakeJob {
                name: prepared.display_name,
                state: JobState::Running,
                polls: 0,
                vertices,
            },
        );
        Ok(id)
    }

    fn cancel(&self, id: &JobId) -> Result<(), RestError> {
        let mut s = self.state.lock().unwrap();
        let j = s
            .jobs
            .get_mut(id)
            .ok_or_else(|| RestError::unknown_job(id))?;
        if j.state.is_terminal() {
            return Err(RestError::Conflict(format!(
                "job {id} is already {}",
                j.state.as_str()
            )));
        }
        j.state = JobState::Cancelled;
        Ok(())
    }

    fn trigger_savepoint(
        &self,
        id: &JobId,
        target_directory: Option<String>,
        stop: bool,
    ) -> Result<String, RestError> {
        let mut s = self.state.lock().unwrap();
        if !s.jobs.contains_key(id) {
            return Err(RestError::unknown_job(id));
        }
        let target = target_directory.ok_or_else(|| {
            RestError::BadRequest("no savepoint target directory: give one (target-directory) or configure state.savepoints.dir".into())
        })?;
        let request = format!("{:032x}", s.savepoints.len() + 1);
        let location = format!("{target}/savepoint-feed00-{:012x}", s.savepoints.len() + 1);
        s.savepoints.insert((*id, request.clone()), (location, 1));
        if stop && let Some(j) = s.jobs.get_mut(id) {
            j.state = JobState::Finished;
        }
        Ok(request)
    }

    fn savepoint_status(
        &self,
        id: &JobId,
        trigger_id: &str,
    ) -> Result<AsynchronousOperationResult, RestError> {
        let mut s = self.state.lock().unwrap();
        let (location, polls) = s
            .savepoints
            .get_mut(&(*id, trigger_id.to_owned()))
            .ok_or_else(|| {
                RestError::NotFound(format!("savepoint trigger {trigger_id} not found"))
            })?;
        if *polls > 0 {
            *polls -= 1;
            return Ok(AsynchronousOperationResult::in_progress());
        }
        Ok(AsynchronousOperationResult::completed(location.clone()))
    }

    fn checkpoints(&self, id: &JobId) -> Option<CheckpointingStatistics> {
        let s = self.state.lock().unwrap();
        s.jobs.get(id)?;
        Some(CheckpointingStatistics {
            counts: CheckpointCounts {
                total: 1,
                completed: 1,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

pub(crate) async fn start(backend: Arc<FakeBackend>, token: Option<&str>) -> RestServer {
    serve(
        RestConfig {
            bind_address: "127.0.0.1".into(),
            port: 0,
            token: token.map(str::to_owned),
            ..RestConfig::default()
        },
        backend,
    )
    .await
    .unwrap()
}

async fn call(
    method: reqwest::Method,
    url: String,
    body: Option<String>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

async fn get_json(url: String) -> Value {
    let (status, _, body) = call(reqwest::Method::GET, url, None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn first_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["errors"][0].as_str().unwrap().to_owned()
}

const STATELESS: &str =
    r#"{"job":"stateless","parallelism":2,"sink":{"kind":"checksum"},"name":"my job"}"#;

#[tokio::test]
async fn every_path_answers_in_flinks_shape() {
    let server = start(FakeBackend::new(100), None).await;
    let base = server.url();
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs"),
        Some(STATELESS.to_owned()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let submitted: Value = serde_json::from_str(&body).unwrap();
    let id = submitted["jobid"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(submitted["jobUrl"], format!("/jobs/{id}"));

    let o = get_json(format!("{base}/overview")).await;
    for k in [
        "taskmanagers",
        "slots-total",
        "slots-available",
        "jobs-running",
        "jobs-finished",
        "jobs-cancelled",
        "jobs-failed",
        "mesoflow-version",
    ] {
        assert!(o.get(k).is_some(), "{k} missing from {o}");
    }
    assert_eq!(o["jobs-running"], 1);

    for path in ["/config", "/jobmanager/config"] {
        let c = get_json(format!("{base}{path}")).await;
        assert_eq!(c[0]["key"], "parallelism.default");
        assert_eq!(c[1]["value"], "******");
    }

    let jobs = get_json(format!("{base}/jobs")).await;
    assert_eq!(jobs["jobs"][0]["id"], id.as_str());
    assert_eq!(jobs["jobs"][0]["status"], "RUNNING");

    let ov = get_json(format!("{base}/jobs/overview")).await;
    let j = &ov["jobs"][0];
    assert_eq!(j["jid"], id.as_str());
    assert_eq!(j["name"], "my job");
    assert_eq!(j["state"], "RUNNING");
    for k in ["start-time", "end-time", "duration", "last-modification"] {
        assert!(j[k].is_i64(), "{k} in {j}");
    }
    assert_eq!(j["end-time"], -1);
    assert!(j["tasks"]["running"].as_u64().unwrap() >= 2);
    assert_eq!(j["tasks"]["total"], j["tasks"]["running"]);

    let d = get_json(format!("{base}/jobs/{id}")).await;
    assert_eq!(d["jid"], id.as_str());
    assert_eq!(d["isStoppable"], false);
    assert_eq!(d["state"], "RUNNING");
    assert!(d["now"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(d["attempt"], 1);
    assert!(d.get("result").is_none() && d.get("failure-cause").is_none());
    let v = &d["vertices"][0];
    for k in [
        "id",
        "name",
        "parallelism",
        "status",
        "start-time",
        "end-time",
        "duration",
    ] {
        assert!(v.get(k).is_some(), "{k} missing from {v}");
    }
    assert!(
        v["name"].as_str().unwrap().contains("->") || d["vertices"].as_array().unwrap().len() > 1
    );
    assert_eq!(v["tasks"]["RUNNING"], v["parallelism"]);
    assert_eq!(v["metrics"]["read-records"], 10);
    assert!(v["metrics"].get("write-records-complete").is_some());
    assert!(d["status-counts"]["RUNNING"].as_u64().unwrap() >= 1);
    assert!(d["timestamps"]["RUNNING"].is_i64());

    let tms = get_json(format!("{base}/taskmanagers")).await;
    let tm = &tms["taskmanagers"][0];
    assert_eq!(tm["id"], "tm-1");
    assert_eq!(tm["dataPort"], 6125);
    assert_eq!(tm["slotsNumber"], 2);
    assert_eq!(tm["freeSlots"], 1);
    assert!(tm["timeSinceLastHeartbeat"].is_i64() && tm["path"].is_string());

    let (status, headers, text) = call(reqwest::Method::GET, format!("{base}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(
        headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(text.contains("# TYPE mesoflow_slots_total gauge\nmesoflow_slots_total 4\n"));
    assert!(text.contains(&format!("job_id=\"{id}\",job_name=\"my job\"")));

    // Cancel: 202 {}, then 409 once terminal; the details then say CANCELED.
    let url = format!("{base}/jobs/{id}?mode=cancel");
    let (status, _, body) = call(reqwest::Method::PATCH, url.clone(), None).await;
    assert_eq!((status.as_u16(), body.as_str()), (202, "{}"));
    let (status, _, body) = call(reqwest::Method::PATCH, url, None).await;
    assert_eq!(status, 409);
    assert!(first_error(&body).contains("CANCELED"));
    assert_eq!(
        get_json(format!("{base}/jobs/{id}")).await["state"],
        "CANCELED"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let server = start(FakeBackend::new(100), None).await;
    let base = server.url();
    let post = |body: String| call(reqwest::Method::POST, format!("{base}/jobs"), Some(body));

    let (status, _, body) = post("{\"job\": ".into()).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("invalid job request"), "{body}");

    let (status, _, body) = post(r#"{"job":"stateless","parallelism":"two"}"#.into()).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("invalid type"), "{body}");

    let (status, _, body) = post(r#"{"job":"stateless","paralelism":2}"#.into()).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("paralelism"), "{body}");

    let (status, _, body) = post(r#"{"job":"no-such-job"}"#.into()).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("no-such-job"), "{body}");

    let (status, _, body) = post(r#"{"job":"stateless","parameters":{"nope":"1"}}"#.into()).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("nope"), "{body}");

    let (status, _, body) = post(format!("{{\"job\":\"{}\"}}", "x".repeat(2 << 20))).await;
    assert_eq!(status, 413, "{body}");
    assert!(!first_error(&body).is_empty());

    let unknown = format!("{base}/jobs/{}", "0".repeat(32));
    let (status, _, body) = call(reqwest::Method::GET, unknown.clone(), None).await;
    assert_eq!(status, 404);
    assert!(first_error(&body).contains("not found"));
    let (status, _, _) = call(reqwest::Method::PATCH, unknown, None).await;
    assert_eq!(status, 404);

    for bad in [
        "xyz",
        "+0000000000000000000000000000000",
        "0000000000000000000000000000000g",
    ] {
        let (status, _, body) =
            call(reqwest::Method::GET, format!("{base}/jobs/{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
        assert!(first_error(&body).contains("not a job id"));
    }
    let (status, _, body) = call(
        reqwest::Method::PATCH,
        format!("{base}/jobs/{}?mode=stop", "0".repeat(32)),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = call(reqwest::Method::GET, format!("{base}/nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(first_error(&body), "Not found: /nope");

    let (status, _, body) = call(reqwest::Method::DELETE, format!("{base}/jobs"), None).await;
    assert_eq!(status, 405);
    assert!(first_error(&body).contains("DELETE"));

    // Garbage that is not HTTP at all.
    let mut raw = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"\x00\xffnot http\r\n\r\n")
        .await
        .unwrap();
    drop(raw);

    get_json(format!("{base}/overview")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_configured_token_is_required_on_every_path() {
    let server = start(FakeBackend::new(100), Some("s3cret")).await;
    let base = server.url();
    let client = reqwest::Client::new();
    for path in ["/overview", "/jobs", "/nope"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()[reqwest::header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert!(first_error(&r.text().await.unwrap()).contains("Authorization"));
    }
    let r = client
        .get(format!("{base}/overview"))
        .bearer_auth("s3cres")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/overview"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_serves_https_and_survives_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = serve(
        RestConfig {
            port: 0,
            tls: Some(TlsFiles {
                cert_chain: cert,
                private_key: key,
            }),
            ..RestConfig::default()
        },
        FakeBackend::new(100),
    )
    .await
    .unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));

    // Plain HTTP on the TLS port gets nowhere, and breaks nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/overview", server.local_addr()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /overview HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"mesoflow-version\""), "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error_naming_the_keys() {
    let first = start(FakeBackend::new(1), None).await;
    let e = serve(
        RestConfig {
            port: first.local_addr().port(),
            ..RestConfig::default()
        },
        FakeBackend::new(1),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("rest.port"), "{e}");
    first.shutdown().await;
}

#[test]
fn job_ids_round_trip_as_32_hex_digits() {
    let id = JobId(0xab);
    assert_eq!(id.to_string(), "000000000000000000000000000000ab");
    assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
    assert!("AB".parse::<JobId>().is_err());
    let upper: JobId = "000000000000000000000000000000AB".parse().unwrap();
    assert_eq!(upper, id);
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        "\"000000000000000000000000000000ab\""
    );
}

#[tokio::test]
async fn savepoints_stop_and_checkpoints_answer_in_flinks_shape() {
    let server = start(FakeBackend::new(1000), None).await;
    let base = server.url();
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs"),
        Some(STATELESS.into()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["jobid"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{id}/savepoints"),
        Some(r#"{"target-directory": "/sp", "cancel-job": false}"#.into()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let trigger = serde_json::from_str::<Value>(&body).unwrap()["request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = get_json(format!("{base}/jobs/{id}/savepoints/{trigger}")).await;
    assert_eq!(v, serde_json::json!({"status": {"id": "IN_PROGRESS"}}));
    let v = get_json(format!("{base}/jobs/{id}/savepoints/{trigger}")).await;
    assert_eq!(v["status"]["id"], "COMPLETED");
    assert_eq!(
        v["operation"]["location"],
        "/sp/savepoint-feed00-000000000001"
    );

    // No directory: 400 with the backend's message; malformed body: 400 naming the field.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{id}/savepoints"),
        Some(String::new()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        first_error(&body).contains("state.savepoints.dir"),
        "{body}"
    );
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{id}/savepoints"),
        Some(r#"{"cancel-job": "yes"}"#.into()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("cancel-job"), "{body}");
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/jobs/{id}/savepoints/nope"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/xyz/savepoints"),
        Some("{}".into()),
    )
    .await;
    assert_eq!(status, 400);

    let v = get_json(format!("{base}/jobs/{id}/checkpoints")).await;
    assert_eq!(v["counts"]["completed"], 1);
    assert!(v["history"].as_array().unwrap().is_empty());

    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{id}/stop"),
        Some(r#"{"targetDirectory": "/sp", "drain": true}"#.into()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("drain"), "{body}");
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{id}/stop"),
        Some(r#"{"targetDirectory": "/sp", "drain": false}"#.into()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("request-id"));
}
