use std::path::Path;

use super::*;
use crate::job_manager::restart::FixedDelay;

fn dynamic(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(
    items: &[&str],
    env_pairs: &[(&str, &str)],
    file: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    Configuration::load(&LoadOptions {
        config_file: file.map(Path::to_owned),
        conf_dir: None,
        dynamic: dynamic(items),
        env: env(env_pairs),
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn source_of(config: &Configuration, key: &str) -> Source {
    config
        .entries()
        .into_iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("{key} has no entry"))
        .source
}

#[test]
fn every_default_parses_and_matches_the_old_local_defaults() {
    let c = Configuration::default();
    assert_eq!(c.execution.parallelism, 1);
    assert_eq!(c.execution.max_parallelism, 128);
    assert_eq!(c.execution.runtime.buffer_timeout_ms, 10);
    assert_eq!(
        c.execution.runtime.batch_size,
        RuntimeConfig::default().batch_size
    );
    assert_eq!(
        c.execution.runtime.channel_capacity,
        RuntimeConfig::default().channel_capacity
    );
    assert_eq!(c.cluster.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(c.cluster.heartbeat_timeout, Duration::from_secs(50));
    assert!(c.cluster.evenly_spread_out_slots);
    assert_eq!(c.cluster.registration_timeout, Duration::from_secs(300));
    assert_eq!(c.cluster.cancellation_timeout, Duration::from_secs(180));
    assert_eq!(c.restart, RestartStrategy::default());
    assert_eq!(c.task_manager.number_of_task_slots, 1);
    assert_eq!(c.job_manager.rpc_address, "127.0.0.1");
    assert_eq!(c.job_manager.rpc_port, 6123);
    assert_eq!(c.rest.bind_address, "127.0.0.1");
    assert_eq!(c.rest.port, 8081);
    assert_eq!(c.rest.token, None);
    assert_eq!(c.rest.tls, None);
    assert_eq!(c.mesos.master, None);
    assert_eq!(c.mesos.maximum_failed_tasks, 0);
    assert_eq!(c.mesos.failover_timeout, Duration::from_secs(604_800));
    assert_eq!(c.mesos.framework.name, "mesoflow");
    assert_eq!(c.mesos.framework.role, "*");
    assert_eq!(c.mesos.tasks.cpus, 1.0);
    assert_eq!(c.mesos.tasks.mem_mib, 1024);
    assert_eq!(c.mesos.tasks.launch_timeout, Duration::from_secs(300));
    assert_eq!(
        c.mesos.declined_offer_refuse_duration,
        Duration::from_secs(5)
    );
    assert_eq!(c.high_availability.mode, HighAvailabilityMode::None);
    assert_eq!(c.high_availability.zookeeper_path_root, "/mesoflow");
    assert_eq!(c.high_availability.cluster_id, "/default");
    assert!(c.entries().iter().all(|e| e.source == Source::Default));
}

#[test]
fn the_seeds_mesos_flags_are_accepted() {
    let loaded = load(
        &["mesos.master=node:5050", "mesos.initial-tasks=1"],
        &[],
        None,
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.mesos.master.as_deref(), Some("node:5050"));
    assert_eq!(c.mesos.initial_tasks, 1);
    // -1: as many as the initial tasks, as Flink.
    assert_eq!(c.mesos.maximum_failed_tasks, 1);
    for ok in [
        "zk://a:2181,b:2181/mesos",
        "file:///etc/mesos/master",
        "m1:5050,m2:5050",
    ] {
        Configuration::from_dynamic(&[format!("mesos.master={ok}")]).unwrap();
    }
    let e = Configuration::from_dynamic(&["mesos.master=node5050".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mesos.master from -D") && e.contains("node5050"),
        "{e}"
    );
}

#[test]
fn dynamic_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.yaml",
        "rest.port: 1111\ntaskmanager.numberOfTaskSlots: 3\njobmanager.rpc.port: 7000\n",
    );
    let loaded = load(
        &["rest.port=3333"],
        &[
            ("MESOFLOW_REST_PORT", "2222"),
            ("MESOFLOW_TASKMANAGER_NUMBEROFTASKSLOTS", "4"),
        ],
        Some(&file),
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.rest.port, 3333);
    assert_eq!(c.task_manager.number_of_task_slots, 4);
    assert_eq!(c.job_manager.rpc_port, 7000);
    assert_eq!(source_of(c, "rest.port"), Source::Dynamic);
    assert_eq!(
        source_of(c, "taskmanager.numberOfTaskSlots"),
        Source::Env("MESOFLOW_TASKMANAGER_NUMBEROFTASKSLOTS".into())
    );
    assert_eq!(source_of(c, "jobmanager.rpc.port"), Source::File(file));
    assert_eq!(source_of(c, "rest.address"), Source::Default);
}

#[test]
fn flat_nested_and_mixed_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.yaml",
        "# Flink's newer nested form, with some flat keys\n\
         taskmanager:\n  numberOfTaskSlots: 2\n\
         mesos:\n  master: zk://zk1:2181/mesos\n  resourcemanager:\n    tasks:\n      cpus: 1.5\n      \
         uris: [http://a/x.tgz, http://b/y.tgz]\n    framework.role: \"*\"\n\
         rest.port: 0\n\
         high-availability: zookeeper\n\
         restart-strategy:\n  type: fixed-delay\n  fixed-delay:\n    attempts: 3\n    delay: 10 s\n\
         rest.token:\n",
    );
    let loaded = load(&[], &[], Some(&file)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.task_manager.number_of_task_slots, 2);
    assert_eq!(c.mesos.master.as_deref(), Some("zk://zk1:2181/mesos"));
    assert_eq!(c.mesos.tasks.cpus, 1.5);
    assert_eq!(c.mesos.tasks.uris, vec!["http://a/x.tgz", "http://b/y.tgz"]);
    assert_eq!(c.rest.port, 0);
    assert_eq!(c.rest.token, None);
    assert_eq!(c.high_availability.mode, HighAvailabilityMode::ZooKeeper);
    assert_eq!(
        c.restart,
        RestartStrategy::FixedDelay(FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(10)
        })
    );
}

#[test]
fn conf_dir_reads_config_yaml_else_flink_conf_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().to_str().unwrap();
    // flink-conf.yaml is read as Flink reads it: `key: value` lines, so `*` needs no quotes.
    write(
        dir.path(),
        "flink-conf.yaml",
        "# comment\ntaskmanager.numberOfTaskSlots: 5\nmesos.resourcemanager.framework.role: *\n\
         not a setting\n",
    );
    let loaded = load(&[], &[("MESOFLOW_CONF_DIR", conf_dir)], None).unwrap();
    assert_eq!(loaded.config.task_manager.number_of_task_slots, 5);
    assert_eq!(loaded.config.mesos.framework.role, "*");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("flink-conf.yaml:4"),
        "{:?}",
        loaded.warnings
    );

    write(
        dir.path(),
        "config.yaml",
        "taskmanager:\n  numberOfTaskSlots: 6\n",
    );
    let loaded = load(&[], &[("MESOFLOW_CONF_DIR", conf_dir)], None).unwrap();
    assert_eq!(loaded.config.task_manager.number_of_task_slots, 6);

    // No conf dir and no --config: defaults.
    assert_eq!(
        load(&[], &[], None).unwrap().config,
        Configuration::default()
    );
    // An explicit --config must exist.
    let e = load(&[], &[], Some(&dir.path().join("missing.yaml")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yaml"), "{e}");
}

#[test]
fn unknown_keys_warn_with_the_closest_key_and_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "config.yaml", "rest:\n  prot: 9000\n");
    let loaded = load(
        &[
            "taskmanager.numberOfTaskSlot=2",
            "restart-strategy.fixed-delay.atempts=2",
            "completely.unrelated=1",
        ],
        &[],
        Some(&file),
    )
    .unwrap();
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains("'taskmanager.numberOfTaskSlot' (from -D) is ignored; did you mean 'taskmanager.numberOfTaskSlots'?"),
        "{w}"
    );
    assert!(
        w.contains("did you mean 'restart-strategy.fixed-delay.attempts'?"),
        "{w}"
    );
    assert!(
        w.contains("'rest.prot'") && w.contains("did you mean 'rest.port'?"),
        "{w}"
    );
    assert!(
        w.contains("'completely.unrelated' (from -D) is ignored")
            && !w.contains("'completely.unrelated' (from -D) is ignored;"),
        "{w}"
    );
    assert_eq!(loaded.config.task_manager.number_of_task_slots, 1);
    assert_eq!(loaded.config.rest.port, 8081);
}

#[test]
fn mesoflow_variables_that_are_not_keys_are_silently_skipped() {
    let loaded = load(
        &[],
        &[
            ("MESOFLOW_CONF_DIR", ""),
            ("MESOFLOW_LOG", "debug"),
            ("MESOFLOW_EXECUTOR_BIN", "/bin/true"),
            ("MESOFLOW_JOBMANAGER", "127.0.0.1:6123"),
            ("MESOFLOW_MESOS_INITIAL_TASKS", "3"),
            ("MESOFLOW_REST_TOKEN", "s3cret"),
            ("PATH", "/usr/bin"),
        ],
        None,
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.mesos.initial_tasks, 3);
    assert_eq!(
        loaded.config.rest.token.as_ref().map(Secret::expose),
        Some("s3cret")
    );
}

#[test]
fn invalid_values_name_the_key_value_source_and_expectation() {
    let e = load(&["parallelism.default=0"], &[], None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "parallelism.default from -D must be an integer from 1 to 32768, got '0'"
    );
    let e = load(&[], &[("MESOFLOW_HEARTBEAT_INTERVAL", "often")], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("heartbeat.interval from env MESOFLOW_HEARTBEAT_INTERVAL must be a duration")
            && e.contains("'often'"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.yaml",
        "cluster.evenly-spread-out-slots: maybe\n",
    );
    let e = load(&[], &[], Some(&file)).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "cluster.evenly-spread-out-slots from {} must be true or false, got 'maybe'",
            file.display()
        )),
        "{e}"
    );
    let e = load(&["high-availability=etcd"], &[], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one of NONE, ZOOKEEPER"), "{e}");
    let e = load(&["parallelism.default"], &[], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not key=value"), "{e}");
    let e = load(
        &["mesos.resourcemanager.tasks.labels=team:data,oops"],
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'oops' is not"), "{e}");
    let e = load(&["mesos.resourcemanager.executor.uri=ftp://x/e"], &[], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("http://, https:// or hdfs://"), "{e}");
}

#[test]
fn keys_checked_together() {
    let e = load(&["heartbeat.interval=60 s"], &[], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("heartbeat.timeout (50 s) must be longer than heartbeat.interval"),
        "{e}"
    );
    let e = load(
        &[
            "security.ssl.rest.enabled=true",
            "security.ssl.rest.cert-file=c.pem",
        ],
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("security.ssl.rest.key-file"), "{e}");
    let c = Configuration::from_dynamic(&dynamic(&[
        "security.ssl.rest.enabled=TRUE",
        "security.ssl.rest.cert-file=c.pem",
        "security.ssl.rest.key-file=k.pem",
        "rest.bind-address=0.0.0.0",
    ]))
    .unwrap();
    assert_eq!(
        c.rest.tls,
        Some(RestTls {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into()
        })
    );
    assert_eq!(c.rest.bind_address, "0.0.0.0");
    assert_eq!(c.rest.address, "127.0.0.1");
}

#[test]
fn typed_values_of_every_kind() {
    let c = Configuration::from_dynamic(&dynamic(&[
        "mesos.failover-timeout=3600",
        "mesos.maximum-failed-tasks=7",
        "mesos.resourcemanager.tasks.labels=team:data, tier : gold",
        "mesos.constraints.hard.hostattribute=rack:r1",
        "mesos.resourcemanager.tasks.hostname=_TASK_.example.org",
        "execution.buffer-timeout=5ms",
        "pipeline.max-parallelism=1_024",
        "taskmanager.numberOfTaskSlots=4",
        "mesos.resourcemanager.framework.user=",
    ]))
    .unwrap();
    assert_eq!(c.mesos.failover_timeout, Duration::from_secs(3600));
    assert_eq!(c.mesos.maximum_failed_tasks, 7);
    assert_eq!(
        c.mesos.tasks.labels,
        vec![
            ("team".into(), "data".into()),
            ("tier".into(), "gold".into())
        ]
    );
    assert_eq!(
        c.mesos.hard_host_attributes,
        vec![("rack".into(), "r1".into())]
    );
    assert_eq!(
        c.mesos.tasks.hostname.as_deref(),
        Some("_TASK_.example.org")
    );
    assert_eq!(c.mesos.tasks.cpus, 4.0);
    assert_eq!(c.mesos.framework.user, None);
    assert_eq!(c.execution.runtime.buffer_timeout_ms, 5);
    assert_eq!(c.execution.max_parallelism, 1024);
    let c = Configuration::from_dynamic(&dynamic(&["mesos.failover-timeout=7 d"])).unwrap();
    assert_eq!(c.mesos.failover_timeout, Duration::from_secs(7 * 86_400));
}

#[test]
fn deprecated_spellings_are_read_with_a_warning() {
    let loaded = load(
        &["restart-strategy=none", "high-availability.type=ZooKeeper"],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(loaded.config.restart, RestartStrategy::None);
    assert_eq!(
        loaded.config.high_availability.mode,
        HighAvailabilityMode::ZooKeeper
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("use restart-strategy.type")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn secrets_are_masked_in_entries_and_debug() {
    let loaded = load(
        &[
            "rest.token=tok",
            "mesos.master=zk://user:pass@zk1:2181/mesos",
        ],
        &[(
            "MESOFLOW_MESOS_RESOURCEMANAGER_FRAMEWORK_SECRET",
            "fw-secret",
        )],
        None,
    )
    .unwrap();
    let c = loaded.config;
    let entries = c.entries();
    let value = |key: &str| entries.iter().find(|e| e.key == key).unwrap().value.clone();
    assert_eq!(value("rest.token"), MASK);
    assert_eq!(value("mesos.resourcemanager.framework.secret"), MASK);
    assert_eq!(value("mesos.master"), "zk://******@zk1:2181/mesos");
    assert_eq!(value("rest.port"), "8081");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("tok\"") && !debug.contains("fw-secret"),
        "{debug}"
    );
    assert_eq!(
        c.mesos.framework.secret.as_ref().map(Secret::expose),
        Some("fw-secret")
    );
}

#[test]
fn malformed_yaml_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("bad.yaml", "rest:\n  port: [1, 2\n"),
        ("star.yaml", "mesos.resourcemanager.framework.role: *\n"),
        ("list.yaml", "- rest.port\n- 8081\n"),
        ("tabs.yaml", "rest:\n\tport: 1\n"),
    ] {
        let file = write(dir.path(), name, text);
        let e = load(&[], &[], Some(&file)).unwrap_err();
        assert!(matches!(e, ConfigError::Yaml { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    // An empty file is no settings.
    let file = write(dir.path(), "empty.yaml", "# nothing\n");
    assert_eq!(
        load(&[], &[], Some(&file)).unwrap().config,
        Configuration::default()
    );
}

#[test]
fn the_key_table_is_sound() {
    let mut names = std::collections::BTreeSet::new();
    let mut env_names = std::collections::BTreeSet::new();
    for key in KEYS {
        assert!(names.insert(key.name), "{} twice", key.name);
        assert!(
            env_names.insert(key.env_name()),
            "{} collides",
            key.env_name()
        );
        let lower = key.name.to_ascii_lowercase();
        let sensitive = ["password", "secret", "token"]
            .iter()
            .any(|w| lower.contains(w));
        assert_eq!(key.secret, sensitive, "{}: secret flag", key.name);
        if let Some(default) = key.default {
            parse(key, default).unwrap_or_else(|e| panic!("{}: default: {e}", key.name));
        }
        assert!(
            !key.doc.is_empty() && !key.doc.contains('\n'),
            "{}",
            key.name
        );
    }
    for not_keys in [
        "MESOFLOW_CONF_DIR",
        "MESOFLOW_LOG",
        "MESOFLOW_EXECUTOR_BIN",
        "MESOFLOW_JOBMANAGER",
    ] {
        assert!(!env_names.contains(not_keys), "{not_keys}");
    }
    assert_eq!(
        keys::key("rest.port").unwrap().env_name(),
        "MESOFLOW_REST_PORT"
    );
    assert_eq!(
        keys::key("mesos.initial-tasks").unwrap().env_name(),
        "MESOFLOW_MESOS_INITIAL_TASKS"
    );
    for (alias, key) in ALIASES {
        assert!(keys::key(key).is_some() && keys::key(alias).is_none());
    }
}

/// `docs/configuration.md` holds the table generated from the key table; run with
/// `UPDATE_DOCS=1` to rewrite it after changing a key.
#[test]
fn docs_match_the_key_table() {
    const BEGIN: &str =
        "<!-- BEGIN KEYS: generated from the key table, see docs_match_the_key_table -->\n";
    const END: &str = "<!-- END KEYS -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc.split_once(BEGIN).expect("the BEGIN KEYS marker");
    let (table, tail) = rest.split_once(END).expect("the END KEYS marker");
    let expected = markdown_table();
    if table != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{head}{BEGIN}{expected}{END}{tail}")).unwrap();
        } else {
            panic!(
                "docs/configuration.md and the key table disagree; run this test with \
                 UPDATE_DOCS=1 to regenerate the table"
            );
        }
    }
}

#[test]
fn checkpointing_defaults_are_flinks_and_disabled() {
    let c = load(&[], &[], None).unwrap().config.checkpointing;
    assert_eq!(
        c,
        crate::job_manager::checkpoints::CheckpointSettings::default()
    );
}

#[test]
fn checkpointing_keys_are_typed() {
    use crate::job_manager::checkpoints::{CheckpointingMode, Retention, StateBackend};
    let c = load(
        &[
            "execution.checkpointing.interval=1s",
            "execution.checkpointing.mode=at_least_once",
            "execution.checkpointing.timeout=30 s",
            "execution.checkpointing.min-pause=500",
            "execution.checkpointing.tolerable-failed-checkpoints=3",
            "execution.checkpointing.unaligned.enabled=true",
            "execution.checkpointing.externalized-checkpoint-retention=RETAIN_ON_CANCELLATION",
            "state.checkpoints.num-retained=3",
            "state.checkpoints.dir=hdfs://nn:8020/ck/",
            "state.savepoints.dir=/sp",
            "state.backend.type=hashmap",
        ],
        &[],
        None,
    )
    .unwrap()
    .config
    .checkpointing;
    assert_eq!(c.interval, Some(Duration::from_secs(1)));
    assert_eq!(c.mode, CheckpointingMode::AtLeastOnce);
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert_eq!(c.min_pause, Duration::from_millis(500));
    assert_eq!(
        (c.tolerable_failures, c.unaligned, c.num_retained),
        (3, true, 3)
    );
    assert_eq!(c.retention, Retention::RetainOnCancellation);
    assert_eq!(c.state_backend, StateBackend::Heap);
    assert_eq!(c.savepoints_dir.as_deref(), Some("/sp"));
    assert_eq!(
        c.root_of(0xab).as_deref(),
        Some("hdfs://nn:8020/ck/000000000000000000000000000000ab")
    );
    let mmap = load(&["state.backend.type=mmap"], &[], None)
        .unwrap()
        .config;
    assert_eq!(mmap.checkpointing.state_backend, StateBackend::Mmap);
}

#[test]
fn checkpoint_interval_needs_a_directory() {
    let e = load(&["execution.checkpointing.interval=1s"], &[], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("state.checkpoints.dir"), "{e}");
    let c = load(
        &[
            "execution.checkpointing.interval=1s",
            "high-availability.storageDir=/ha/",
        ],
        &[],
        None,
    )
    .unwrap()
    .config;
    assert_eq!(
        c.checkpointing.checkpoints_dir.as_deref(),
        Some("/ha/checkpoints")
    );
    let e = load(
        &["execution.checkpointing.max-concurrent-checkpoints=2"],
        &[],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("one checkpoint at a time"), "{e}");
    assert!(load(&["state.backend.type=rocksdb"], &[], None).is_err());
}
