//! `GET /metrics`: [`ClusterMetrics`] in the Prometheus text exposition format (0.0.4), so a
//! Prometheus server can scrape the JobManager without an exporter.

use std::fmt::Write;

use super::api::{ClusterMetrics, JobState};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric family with its `# HELP` and `# TYPE` lines.
pub fn render(m: &ClusterMetrics) -> String {
    let mut out = String::with_capacity(1024 + 256 * m.vertices.len());
    let w = &mut out;
    single(
        w,
        "mesoflow_taskmanagers_registered",
        "gauge",
        "TaskManagers registered with the JobManager.",
        m.taskmanagers_registered,
    );
    single(
        w,
        "mesoflow_slots_total",
        "gauge",
        "Task slots over all registered TaskManagers.",
        m.slots_total,
    );
    single(
        w,
        "mesoflow_slots_available",
        "gauge",
        "Task slots not in use.",
        m.slots_available,
    );
    header(w, "mesoflow_jobs", "gauge", "Jobs by state.");
    // Every state appears, so a dashboard sees 0 rather than a missing series.
    for state in [
        JobState::Initializing,
        JobState::Created,
        JobState::Running,
        JobState::Restarting,
        JobState::Failing,
        JobState::Cancelling,
        JobState::Finished,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Suspended,
    ] {
        let n = m.jobs.get(&state).copied().unwrap_or(0);
        let _ = writeln!(w, "mesoflow_jobs{{state=\"{}\"}} {n}", state.as_str());
    }
    single(
        w,
        "mesoflow_mesos_offers_received_total",
        "counter",
        "Resource offers received from the Mesos master.",
        m.mesos.offers_received,
    );
    single(
        w,
        "mesoflow_mesos_offers_declined_total",
        "counter",
        "Resource offers declined.",
        m.mesos.offers_declined,
    );
    single(
        w,
        "mesoflow_mesos_tasks_failed_total",
        "counter",
        "Mesos tasks that ended failed, lost or in error.",
        m.mesos.tasks_failed,
    );
    single(
        w,
        "mesoflow_mesos_workers_launched_total",
        "counter",
        "TaskManager tasks launched on Mesos agents.",
        m.mesos.workers_launched,
    );
    if let Some(fetches) = m.artifact_fetches {
        single(
            w,
            "mesoflow_artifact_fetches_total",
            "counter",
            "Downloads of the executor binary from the artifact server.",
            fetches,
        );
    }
    if !m.vertices.is_empty() {
        header(
            w,
            "mesoflow_vertex_records_in_total",
            "counter",
            "Records read by a vertex (operator chain).",
        );
        for v in &m.vertices {
            let _ = writeln!(
                w,
                "mesoflow_vertex_records_in_total{} {}",
                labels(v),
                v.records_in
            );
        }
        header(
            w,
            "mesoflow_vertex_records_out_total",
            "counter",
            "Records written by a vertex (operator chain).",
        );
        for v in &m.vertices {
            let _ = writeln!(
                w,
                "mesoflow_vertex_records_out_total{} {}",
                labels(v),
                v.records_out
            );
        }
    }
    if m.vertices.iter().any(|v| v.backpressure.is_some()) {
        header(
            w,
            "mesoflow_vertex_backpressure_ratio",
            "gauge",
            "Share of time a vertex was back-pressured (0 to 1).",
        );
        for v in &m.vertices {
            if let Some(b) = v.backpressure {
                let _ = writeln!(
                    w,
                    "mesoflow_vertex_backpressure_ratio{} {}",
                    labels(v),
                    float(b)
                );
            }
        }
    }
    out
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn single(w: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(w, name, kind, help);
    let _ = writeln!(w, "{name} {value}");
}

fn labels(v: &super::api::VertexMetrics) -> String {
    format!(
        "{{job_id=\"{}\",job_name=\"{}\",vertex=\"{}\"}}",
        v.job_id,
        escape_label(&v.job_name),
        escape_label(&v.vertex)
    )
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed (quotes are fine there).
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Prometheus' spelling of special floats.
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::api::{JobId, MesosCounters, VertexMetrics};
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut m = ClusterMetrics {
            taskmanagers_registered: 2,
            slots_total: 4,
            slots_available: 1,
            mesos: MesosCounters {
                offers_received: 10,
                offers_declined: 7,
                tasks_failed: 1,
                workers_launched: 3,
            },
            artifact_fetches: Some(2),
            vertices: vec![
                VertexMetrics {
                    job_id: JobId(0xab),
                    job_name: "word \"count\"\\\n".into(),
                    vertex: "Source: words -> Flat Map".into(),
                    records_in: 5,
                    records_out: 9,
                    backpressure: Some(0.25),
                },
                VertexMetrics {
                    job_id: JobId(0xab),
                    job_name: "w".into(),
                    vertex: "Sink".into(),
                    records_in: 9,
                    records_out: 0,
                    backpressure: None,
                },
            ],
            ..ClusterMetrics::default()
        };
        m.jobs.insert(JobState::Running, 1);
        let text = render(&m);
        assert!(text.contains("mesoflow_taskmanagers_registered 2\n"));
        assert!(text.contains("mesoflow_jobs{state=\"RUNNING\"} 1\n"));
        assert!(text.contains("mesoflow_jobs{state=\"CANCELED\"} 0\n"));
        assert!(text.contains("mesoflow_mesos_offers_declined_total 7\n"));
        assert!(text.contains(
            "mesoflow_vertex_records_out_total{job_id=\"000000000000000000000000000000ab\",\
             job_name=\"word \\\"count\\\"\\\\\\n\",vertex=\"Source: words -> Flat Map\"} 9\n"
        ));
        assert!(text.contains("vertex=\"Source: words -> Flat Map\"} 0.25\n"));
        assert!(!text.contains("vertex=\"Sink\"} 0.25"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
        assert_eq!(
            text.matches("# HELP").count(),
            text.matches("# TYPE").count()
        );
    }
}
