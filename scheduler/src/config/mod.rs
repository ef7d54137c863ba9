//! The typed configuration of every mesoflow binary, with Flink's keys and conventions.
//!
//! A binary calls [`Configuration::load`] once with its `-D` items, an optional `--config` file
//! and its environment, logs the returned warnings, and reads typed fields from then on:
//!
//! ```
//! use mesoflow_scheduler::config::{Configuration, LoadOptions};
//!
//! let loaded = Configuration::load(&LoadOptions {
//!     dynamic: vec!["mesos.master=node:5050".into(), "taskmanager.numberOfTaskSlot=2".into()],
//!     env: vec![("MESOFLOW_REST_PORT".into(), "0".into())],
//!     ..LoadOptions::default()
//! })?;
//! for warning in &loaded.warnings {
//!     eprintln!("warning: {warning}"); // ... did you mean 'taskmanager.numberOfTaskSlots'?
//! }
//! let config = loaded.config;
//! assert_eq!(config.mesos.master.as_deref(), Some("node:5050"));
//! assert_eq!(config.rest.port, 0);
//! # Ok::<(), mesoflow_scheduler::config::ConfigError>(())
//! ```
//!
//! **Sources**, highest precedence first: `-Dkey=value` (dynamic properties), then environment
//! variables (`MESOFLOW_` and the key upper-cased with `.` and `-` turned into `_`, e.g.
//! `MESOFLOW_REST_PORT`; only names of known keys are read), then one file: `--config FILE`, or
//! else `config.yaml` in `$MESOFLOW_CONF_DIR`, or else `flink-conf.yaml` there. Then the defaults
//! of the key table ([`keys::KEYS`]).
//!
//! **Files.** `config.yaml` (and any `--config` file) is YAML: Flink's flat form
//! (`taskmanager.numberOfTaskSlots: 2`), the nested form of Flink's newer `config.yaml`
//! (`taskmanager: {numberOfTaskSlots: 2}`), or a mix; nested maps are flattened by joining keys
//! with `.`, lists by joining items with `,`. A file named `flink-conf.yaml` is read the way Flink
//! reads it: one `key: value` per line, not YAML. YAML is parsed with `yaml-rust2`: pure safe Rust,
//! YAML 1.2, maintained with regular releases against the YAML test suite, and light (two small
//! dependencies). The serde forks of the archived `serde_yaml` (`serde_yaml_ng`, `serde_norway`)
//! still carry `unsafe-libyaml`, a machine translation of C, and `serde_yml` is unsound; we need no
//! serde mapping anyway since values are typed by the key table. `saphyr`, the same authors'
//! successor, has not settled its API yet.
//!
//! **Checking.** An unknown key (from `-D` or the file) is ignored with a warning naming the
//! closest known key. A value that does not fit its key's type is an error naming the key, the
//! value, where it came from and what was expected. Secret keys are masked as `******` by
//! [`Configuration::entries`].

pub mod keys;
pub mod sources;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mesoflow_dataplane::RuntimeConfig;
use mesoflow_dataplane::duration::parse_duration;

use crate::job_manager::checkpoints::{
    CheckpointSettings, CheckpointingMode, Retention, StateBackend,
};
use crate::job_manager::restart::RestartStrategy;
use keys::{ALIASES, BareUnit, KEYS, Key, Kind};
pub use sources::Source;

/// What is shown instead of a secret value.
pub const MASK: &str = "******";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not fit its key.
    #[error("{key} from {origin} must be {expected}, got '{value}'")]
    Invalid {
        /// The key.
        key: String,
        /// The value as given (masked for secrets).
        value: String,
        /// Where it came from.
        origin: Source,
        /// What a valid value looks like.
        expected: String,
    },
    /// Two keys contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// A `-D` item without `=`.
    #[error("-D{item} is not key=value (for example -Dparallelism.default=2)")]
    NotKeyValue {
        /// The item after `-D`.
        item: String,
    },
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid YAML, or not a map of keys.
    #[error("the configuration file {} is not valid: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// A secret value: usable, but shown as `******` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// What to load; see [`Configuration::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`: this file must exist and is read instead of the one in the conf dir.
    pub config_file: Option<PathBuf>,
    /// Where `config.yaml` or `flink-conf.yaml` is looked for; `None` takes `MESOFLOW_CONF_DIR`
    /// from `env`.
    pub conf_dir: Option<PathBuf>,
    /// `-D` items, `key=value` each.
    pub dynamic: Vec<String>,
    /// The environment, as `(name, value)` pairs (explicit so that tests need no process env).
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options for a binary: its `--config` and `-D` flags and the process environment.
    pub fn from_process(config_file: Option<PathBuf>, dynamic: &[String]) -> Self {
        Self {
            config_file,
            conf_dir: None,
            dynamic: dynamic.to_vec(),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }
}

/// A loaded configuration and what the caller should log about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Configuration,
    /// Ignored keys (with the closest known key) and deprecated spellings, one line each.
    pub warnings: Vec<String>,
}

/// One effective key and value, for a `GET /config`-style listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: &'static str,
    /// The value as text; `******` for secrets.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// `parallelism.default`, `pipeline.max-parallelism` and the `execution.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionOptions {
    /// `parallelism.default`.
    pub parallelism: u32,
    /// `pipeline.max-parallelism`: key groups.
    pub max_parallelism: u32,
    /// `execution.buffer-timeout`, `execution.batch-size`, `execution.channel-capacity`.
    pub runtime: RuntimeConfig,
}

/// Heartbeats, slot spreading and the JobManager's timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`: longer than the interval.
    pub heartbeat_timeout: Duration,
    /// `cluster.evenly-spread-out-slots`.
    pub evenly_spread_out_slots: bool,
    /// `resourcemanager.taskmanager-registration.timeout`.
    pub registration_timeout: Duration,
    /// `resourcemanager.taskmanager-timeout`: idle TaskManagers above the minimum go.
    pub taskmanager_timeout: Duration,
    /// `task.cancellation.timeout`.
    pub cancellation_timeout: Duration,
}

/// `taskmanager.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskManagerOptions {
    /// `taskmanager.numberOfTaskSlots`.
    pub number_of_task_slots: u32,
}

/// `jobmanager.rpc.*`: the JobManager's control endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct JobManagerOptions {
    /// `jobmanager.rpc.address`: on a real cluster, an address TaskManagers can reach.
    pub rpc_address: String,
    /// `jobmanager.rpc.port`; 0 is any free port.
    pub rpc_port: u16,
}

/// `rest.*` and `security.ssl.rest.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestOptions {
    /// `rest.address`: where clients reach the endpoint.
    pub address: String,
    /// `rest.bind-address`, or `rest.address` when unset.
    pub bind_address: String,
    /// `rest.port`; 0 is any free port.
    pub port: u16,
    /// `rest.token`: when set, requests need `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// `security.ssl.rest.*`: `Some` when enabled, with both PEM files.
    pub tls: Option<RestTls>,
}

/// The REST endpoint's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTls {
    /// `security.ssl.rest.cert-file`: PEM certificate chain.
    pub cert_file: PathBuf,
    /// `security.ssl.rest.key-file`: PEM private key.
    pub key_file: PathBuf,
}

/// `mesos.resourcemanager.framework.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkOptions {
    /// `.name`.
    pub name: String,
    /// `.role`.
    pub role: String,
    /// `.principal`.
    pub principal: Option<String>,
    /// `.secret`.
    pub secret: Option<Secret>,
    /// `.user`; `None` is the current user.
    pub user: Option<String>,
}

/// `mesos.resourcemanager.tasks.*`: what each TaskManager task asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    /// `.cpus`, with 0.0 resolved to `taskmanager.numberOfTaskSlots`.
    pub cpus: f64,
    /// `.mem` in MiB.
    pub mem_mib: u32,
    /// `.disk` in MiB.
    pub disk_mib: u32,
    /// `.uris`: extra URIs to fetch.
    pub uris: Vec<String>,
    /// `.labels` as `(key, value)`.
    pub labels: Vec<(String, String)>,
    /// `.bootstrap-cmd`: run before the executor.
    pub bootstrap_cmd: Option<String>,
    /// `.hostname`; `_TASK_` is to be replaced by the task id.
    pub hostname: Option<String>,
    /// `.launch-timeout`.
    pub launch_timeout: Duration,
}

/// `mesos.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct MesosOptions {
    /// `mesos.master`; `None` runs a standalone session cluster of local processes.
    pub master: Option<String>,
    /// `mesos.initial-tasks`.
    pub initial_tasks: u32,
    /// `mesos.maximum-failed-tasks`, with -1 resolved to `initial_tasks`.
    pub maximum_failed_tasks: u32,
    /// `mesos.failover-timeout`.
    pub failover_timeout: Duration,
    /// `mesos.resourcemanager.framework.*`.
    pub framework: FrameworkOptions,
    /// `mesos.resourcemanager.tasks.*`.
    pub tasks: TaskOptions,
    /// `mesos.constraints.hard.hostattribute` as `(attribute, value)`.
    pub hard_host_attributes: Vec<(String, String)>,
    /// `mesos.resourcemanager.declined-offer-refuse-duration`.
    pub declined_offer_refuse_duration: Duration,
    /// `mesos.resourcemanager.artifactserver.port`; 0 is any free port.
    pub artifact_server_port: u16,
    /// `mesos.resourcemanager.executor.uri`; `None` serves our own executor binary.
    pub executor_uri: Option<String>,
}

/// `high-availability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighAvailabilityMode {
    /// No recovery of the JobManager.
    None,
    /// Leader election and recovery through ZooKeeper.
    ZooKeeper,
}

/// `high-availability.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct HighAvailabilityOptions {
    /// `high-availability`.
    pub mode: HighAvailabilityMode,
    /// `high-availability.zookeeper.quorum`.
    pub zookeeper_quorum: Option<String>,
    /// `high-availability.zookeeper.path.root`.
    pub zookeeper_path_root: String,
    /// `high-availability.cluster-id`.
    pub cluster_id: String,
    /// `high-availability.storageDir`.
    pub storage_dir: Option<String>,
}

/// The effective configuration, typed and grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// Parallelism and the engine's tunables.
    pub execution: ExecutionOptions,
    /// Heartbeats, spreading and timeouts.
    pub cluster: ClusterOptions,
    /// `restart-strategy.*`.
    pub restart: RestartStrategy,
    /// `taskmanager.*`.
    pub task_manager: TaskManagerOptions,
    /// `jobmanager.*`.
    pub job_manager: JobManagerOptions,
    /// `rest.*`.
    pub rest: RestOptions,
    /// `mesos.*`.
    pub mesos: MesosOptions,
    /// `high-availability.*`.
    pub high_availability: HighAvailabilityOptions,
    /// `execution.checkpointing.*` and `state.*`.
    pub checkpointing: CheckpointSettings,
    values: Values,
}

impl Default for Configuration {
    /// Every key at its default.
    fn default() -> Self {
        Self::from_values(Values::resolve(BTreeMap::new()).expect("the defaults are valid"))
            .expect("the defaults are consistent")
    }
}

impl Configuration {
    /// Loads the configuration from its sources (see the module documentation).
    pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigError> {
        let conf_dir = options.conf_dir.clone().or_else(|| {
            options
                .env
                .iter()
                .find(|(name, value)| name == "MESOFLOW_CONF_DIR" && !value.is_empty())
                .map(|(_, value)| PathBuf::from(value))
        });
        let mut warnings = Vec::new();
        let mut raws = Vec::new();
        if let Some(path) = sources::locate(options.config_file.as_deref(), conf_dir.as_deref()) {
            let (from_file, file_warnings) = sources::file(&path)?;
            raws.extend(from_file);
            warnings.extend(file_warnings);
        }
        raws.extend(sources::environment(&options.env));
        raws.extend(sources::dynamic(&options.dynamic)?);
        // Lowest precedence first: a later value of a key replaces an earlier one.
        let mut chosen: BTreeMap<&'static str, sources::Raw> = BTreeMap::new();
        for raw in raws {
            let known = keys::key(&raw.key).or_else(|| {
                let (alias, key) = ALIASES.iter().find(|(alias, _)| *alias == raw.key)?;
                warnings.push(format!(
                    "{alias} (from {}) is deprecated; use {key}",
                    raw.origin
                ));
                keys::key(key)
            });
            match known {
                Some(key) => {
                    chosen.insert(key.name, raw);
                }
                None => warnings.push(match keys::closest(&raw.key) {
                    Some(close) => format!(
                        "unknown configuration key '{}' (from {}) is ignored; did you mean '{close}'?",
                        raw.key, raw.origin
                    ),
                    None => format!(
                        "unknown configuration key '{}' (from {}) is ignored",
                        raw.key, raw.origin
                    ),
                }),
            }
        }
        let config = Self::from_values(Values::resolve(chosen)?)?;
        Ok(Loaded { config, warnings })
    }

    /// Defaults overridden by `-D` items only (no file, no environment); warnings are dropped.
    pub fn from_dynamic(items: &[String]) -> Result<Self, ConfigError> {
        Self::load(&LoadOptions {
            dynamic: items.to_vec(),
            ..LoadOptions::default()
        })
        .map(|loaded| loaded.config)
    }

    /// Every key that has a value, in the key table's order, with where it came from; secrets
    /// are `******`.
    pub fn entries(&self) -> Vec<Entry> {
        KEYS.iter()
            .filter_map(|key| {
                let setting = self.values.0.get(key.name)?;
                Some(Entry {
                    key: key.name,
                    value: shown(key, &setting.text),
                    source: setting.origin.clone(),
                })
            })
            .collect()
    }

    /// The effective value of `key` as text (unmasked), if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.0.get(key).map(|s| s.text.as_str())
    }

    fn from_values(v: Values) -> Result<Self, ConfigError> {
        let int = |name: &str| v.int(name);
        let u32_ = |name: &str| u32::try_from(v.int(name)).expect("bounded by the key table");
        let port = |name: &str| u16::try_from(v.int(name)).expect("bounded by the key table");
        let text = |name: &str| v.text(name).expect("has a default").to_owned();
        let opt = |name: &str| v.text(name).map(str::to_owned);
        let pairs = |name: &str| {
            v.list(name)
                .iter()
                .map(|item| {
                    let (k, val) = item
                        .split_once(':')
                        .expect("checked by the key's validator");
                    (k.trim().to_owned(), val.trim().to_owned())
                })
                .collect::<Vec<_>>()
        };

        let execution = ExecutionOptions {
            parallelism: u32_("parallelism.default"),
            max_parallelism: u32_("pipeline.max-parallelism"),
            runtime: RuntimeConfig {
                batch_size: int("execution.batch-size") as usize,
                channel_capacity: int("execution.channel-capacity") as usize,
                buffer_timeout_ms: (v.duration("execution.buffer-timeout").as_millis() as u64)
                    .max(1),
                // Follows the checkpointing mode of each attempt (set by the TaskManager).
                barrier_alignment: true,
                // Follows `Checkpointing.unaligned` of each attempt (set by the TaskManager).
                unaligned_checkpoints: false,
            },
        };
        let cluster = ClusterOptions {
            heartbeat_interval: v.duration("heartbeat.interval"),
            heartbeat_timeout: v.duration("heartbeat.timeout"),
            evenly_spread_out_slots: v.bool("cluster.evenly-spread-out-slots"),
            registration_timeout: v.duration("resourcemanager.taskmanager-registration.timeout"),
            taskmanager_timeout: v.duration("resourcemanager.taskmanager-timeout"),
            cancellation_timeout: v.duration("task.cancellation.timeout"),
        };
        if cluster.heartbeat_timeout <= cluster.heartbeat_interval {
            return Err(ConfigError::Conflict(format!(
                "heartbeat.timeout ({}) must be longer than heartbeat.interval ({})",
                v.raw("heartbeat.timeout"),
                v.raw("heartbeat.interval"),
            )));
        }
        let restart = RestartStrategy::from_values(&v)?;
        let task_manager = TaskManagerOptions {
            number_of_task_slots: u32_("taskmanager.numberOfTaskSlots"),
        };
        let job_manager = JobManagerOptions {
            rpc_address: text("jobmanager.rpc.address"),
            rpc_port: port("jobmanager.rpc.port"),
        };
        let tls = if v.bool("security.ssl.rest.enabled") {
            match (
                v.text("security.ssl.rest.cert-file"),
                v.text("security.ssl.rest.key-file"),
            ) {
                (Some(cert), Some(key)) => Some(RestTls {
                    cert_file: cert.into(),
                    key_file: key.into(),
                }),
                _ => {
                    return Err(ConfigError::Conflict(
                        "security.ssl.rest.enabled is true but security.ssl.rest.cert-file and \
                         security.ssl.rest.key-file are not both set: set both PEM files, or \
                         security.ssl.rest.enabled: false"
                            .into(),
                    ));
                }
            }
        } else {
            None
        };
        let address = text("rest.address");
        let rest = RestOptions {
            bind_address: opt("rest.bind-address").unwrap_or_else(|| address.clone()),
            address,
            port: port("rest.port"),
            token: opt("rest.token").map(Secret),
            tls,
        };
        let initial_tasks = u32_("mesos.initial-tasks");
        let slots = task_manager.number_of_task_slots;
        let cpus = v.float("mesos.resourcemanager.tasks.cpus");
        let mesos = MesosOptions {
            master: opt("mesos.master"),
            initial_tasks,
            maximum_failed_tasks: match int("mesos.maximum-failed-tasks") {
                -1 => initial_tasks,
                n => n as u32,
            },
            failover_timeout: v.duration("mesos.failover-timeout"),
            framework: FrameworkOptions {
                name: text("mesos.resourcemanager.framework.name"),
                role: text("mesos.resourcemanager.framework.role"),
                principal: opt("mesos.resourcemanager.framework.principal"),
                secret: opt("mesos.resourcemanager.framework.secret").map(Secret),
                user: opt("mesos.resourcemanager.framework.user"),
            },
            tasks: TaskOptions {
                cpus: if cpus == 0.0 { f64::from(slots) } else { cpus },
                mem_mib: u32_("mesos.resourcemanager.tasks.mem"),
                disk_mib: u32_("mesos.resourcemanager.tasks.disk"),
                uris: v.list("mesos.resourcemanager.tasks.uris").to_vec(),
                labels: pairs("mesos.resourcemanager.tasks.labels"),
                bootstrap_cmd: opt("mesos.resourcemanager.tasks.bootstrap-cmd"),
                hostname: opt("mesos.resourcemanager.tasks.hostname"),
                launch_timeout: v.duration("mesos.resourcemanager.tasks.launch-timeout"),
            },
            hard_host_attributes: pairs("mesos.constraints.hard.hostattribute"),
            declined_offer_refuse_duration: v
                .duration("mesos.resourcemanager.declined-offer-refuse-duration"),
            artifact_server_port: port("mesos.resourcemanager.artifactserver.port"),
            executor_uri: opt("mesos.resourcemanager.executor.uri"),
        };
        let high_availability = HighAvailabilityOptions {
            mode: match v.text("high-availability") {
                Some("ZOOKEEPER") => HighAvailabilityMode::ZooKeeper,
                _ => HighAvailabilityMode::None,
            },
            zookeeper_quorum: opt("high-availability.zookeeper.quorum"),
            zookeeper_path_root: text("high-availability.zookeeper.path.root"),
            cluster_id: text("high-availability.cluster-id"),
            storage_dir: opt("high-availability.storageDir"),
        };
        let checkpointing = checkpoint_settings(&v, &high_availability)?;
        Ok(Self {
            execution,
            cluster,
            restart,
            task_manager,
            job_manager,
            rest,
            mesos,
            high_availability,
            checkpointing,
            values: v,
        })
    }
}

/// `execution.checkpointing.*` and `state.*`, checked against each other.
fn checkpoint_settings(
    v: &Values,
    ha: &HighAvailabilityOptions,
) -> Result<CheckpointSettings, ConfigError> {
    let interval = v.opt_duration("execution.checkpointing.interval");
    if interval.is_some_and(|i| i.is_zero()) {
        return Err(v.invalid(
            "execution.checkpointing.interval",
            "a positive duration (unset it to disable checkpoints)",
        ));
    }
    if v.int("execution.checkpointing.max-concurrent-checkpoints") != 1 {
        return Err(v.invalid(
            "execution.checkpointing.max-concurrent-checkpoints",
            "1 (mesoflow takes one checkpoint at a time)",
        ));
    }
    let checkpoints_dir = v
        .text("state.checkpoints.dir")
        .map(str::to_owned)
        .or_else(|| {
            ha.storage_dir
                .as_ref()
                .map(|d| format!("{}/checkpoints", d.trim_end_matches('/')))
        });
    if interval.is_some() && checkpoints_dir.is_none() {
        return Err(ConfigError::Conflict(format!(
            "execution.checkpointing.interval is set ({}) but there is no directory for checkpoints: \
             set state.checkpoints.dir (or high-availability.storageDir, whose checkpoints/ is used)",
            v.raw("execution.checkpointing.interval")
        )));
    }
    Ok(CheckpointSettings {
        interval,
        mode: match v.text("execution.checkpointing.mode") {
            Some("AT_LEAST_ONCE") => CheckpointingMode::AtLeastOnce,
            _ => CheckpointingMode::ExactlyOnce,
        },
        timeout: v.duration("execution.checkpointing.timeout"),
        min_pause: v.duration("execution.checkpointing.min-pause"),
        tolerable_failures: v.int("execution.checkpointing.tolerable-failed-checkpoints") as u32,
        unaligned: v.bool("execution.checkpointing.unaligned.enabled"),
        num_retained: v.int("state.checkpoints.num-retained") as u32,
        checkpoints_dir,
        savepoints_dir: v.text("state.savepoints.dir").map(str::to_owned),
        state_backend: match v.text("state.backend.type") {
            Some("mmap") => StateBackend::Mmap,
            _ => StateBackend::Heap,
        },
        state_memory_budget: (v.int("state.backend.mmap.memory-budget") as u64) << 20,
        retention: match v.text("execution.checkpointing.externalized-checkpoint-retention") {
            Some("DELETE_ON_CANCELLATION") => Retention::DeleteOnCancellation,
            Some("RETAIN_ON_CANCELLATION") => Retention::RetainOnCancellation,
            _ => Retention::NoExternalizedCheckpoints,
        },
    })
}

/// A value as listings show it: secrets masked, credentials in a ZooKeeper URL hidden.
fn shown(key: &Key, text: &str) -> String {
    if key.secret {
        return MASK.to_owned();
    }
    match (text.strip_prefix("zk://"), text.find('@')) {
        (Some(_), Some(at)) => format!("zk://{MASK}{}", &text[at..]),
        _ => text.to_owned(),
    }
}

/// A value parsed by its key's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Duration(Duration),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Setting {
    /// As given (or the default's text).
    text: String,
    value: Value,
    origin: Source,
}

/// The checked value of every key that has one.
#[derive(Clone, PartialEq)]
pub(crate) struct Values(BTreeMap<&'static str, Setting>);

impl fmt::Debug for Values {
    /// Values as listings show them: secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0.iter().filter_map(|(name, setting)| {
                    Some((name, shown(keys::key(name)?, &setting.text)))
                }),
            )
            .finish()
    }
}

impl Values {
    /// Parses the chosen raw values and the defaults of the other keys.
    fn resolve(chosen: BTreeMap<&'static str, sources::Raw>) -> Result<Self, ConfigError> {
        let mut settings = BTreeMap::new();
        for key in KEYS {
            let (text, origin) = match chosen.get(key.name) {
                Some(raw) => (raw.value.clone(), raw.origin.clone()),
                None => match key.default {
                    Some(default) => (default.to_owned(), Source::Default),
                    None => continue,
                },
            };
            // An empty value leaves a key without a default unset (`MESOFLOW_REST_TOKEN=`).
            if text.is_empty() && key.default.is_none() {
                continue;
            }
            let value = parse(key, &text).map_err(|expected| ConfigError::Invalid {
                key: key.name.to_owned(),
                value: shown(key, &text),
                origin: origin.clone(),
                expected,
            })?;
            settings.insert(
                key.name,
                Setting {
                    text,
                    value,
                    origin,
                },
            );
        }
        Ok(Self(settings))
    }

    /// The value's text as given, or `""` when unset.
    fn raw(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |s| s.text.as_str())
    }

    fn value(&self, name: &str) -> Option<&Value> {
        self.0.get(name).map(|s| &s.value)
    }

    /// An error about `name`'s value, which must be `expected`.
    pub(crate) fn invalid(&self, name: &str, expected: impl Into<String>) -> ConfigError {
        let setting = self.0.get(name);
        ConfigError::Invalid {
            key: name.to_owned(),
            value: setting.map(|s| s.text.clone()).unwrap_or_default(),
            origin: setting.map_or(Source::Default, |s| s.origin.clone()),
            expected: expected.into(),
        }
    }

    pub(crate) fn opt_int(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            Value::Int(i) => Some(*i),
            other => panic!("{name} is not an int: {other:?}"),
        }
    }

    pub(crate) fn int(&self, name: &str) -> i64 {
        self.opt_int(name)
            .unwrap_or_else(|| panic!("{name} has no default"))
    }

    pub(crate) fn float(&self, name: &str) -> f64 {
        match self.value(name) {
            Some(Value::Float(f)) => *f,
            other => panic!("{name} is not a float with a default: {other:?}"),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        match self.value(name) {
            Some(Value::Bool(b)) => *b,
            other => panic!("{name} is not a bool with a default: {other:?}"),
        }
    }

    pub(crate) fn opt_duration(&self, name: &str) -> Option<Duration> {
        match self.value(name)? {
            Value::Duration(d) => Some(*d),
            other => panic!("{name} is not a duration: {other:?}"),
        }
    }

    pub(crate) fn duration(&self, name: &str) -> Duration {
        match self.value(name) {
            Some(Value::Duration(d)) => *d,
            other => panic!("{name} is not a duration with a default: {other:?}"),
        }
    }

    /// Text and enum keys (an enum's value is its table spelling).
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        match self.value(name)? {
            Value::Text(t) => Some(t),
            other => panic!("{name} is not text: {other:?}"),
        }
    }

    pub(crate) fn list(&self, name: &str) -> &[String] {
        match self.value(name) {
            Some(Value::List(items)) => items,
            None => &[],
            other => panic!("{name} is not a list: {other:?}"),
        }
    }
}

/// Parses `text` as `key`'s type; the error is what was expected.
fn parse(key: &Key, text: &str) -> Result<Value, String> {
    let text = text.trim();
    let expected = || key.kind.expected();
    let value = match key.kind {
        Kind::Int { min, max } => {
            let n: i64 = text.replace('_', "").parse().map_err(|_| expected())?;
            if !(min..=max).contains(&n) {
                return Err(expected());
            }
            Value::Int(n)
        }
        Kind::Float { min, max } => {
            let f: f64 = text.parse().map_err(|_| expected())?;
            if !(f.is_finite() && f >= min && f <= max) {
                return Err(expected());
            }
            Value::Float(f)
        }
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(expected()),
        },
        Kind::String if text.is_empty() => return Err("a non-empty value".into()),
        Kind::String => Value::Text(text.to_owned()),
        Kind::Duration { bare } => {
            let seconds = bare == BareUnit::Seconds && text.bytes().all(|b| b.is_ascii_digit());
            let parsed = if seconds {
                text.parse::<u64>().ok().map(Duration::from_secs)
            } else {
                parse_duration(text).ok()
            };
            Value::Duration(parsed.ok_or_else(expected)?)
        }
        Kind::Enum(values) => Value::Text(
            values
                .iter()
                .find(|v| v.eq_ignore_ascii_case(text))
                .map(|v| (*v).to_owned())
                .ok_or_else(expected)?,
        ),
        Kind::List => Value::List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    };
    validate(key.name, &value)?;
    Ok(value)
}

/// Checks of particular keys beyond their type.
fn validate(name: &str, value: &Value) -> Result<(), String> {
    match (name, value) {
        ("mesos.master", Value::Text(spec)) => {
            let shape = "host:port[,host:port], zk://host:port[,host:port]/path or file:///path";
            if let Some(path) = spec.strip_prefix("file://") {
                if path.is_empty() {
                    return Err(format!("{shape} (the file:// path is empty)"));
                }
                return Ok(());
            }
            crate::mesos::MasterSpec::parse(spec)
                .map(|_| ())
                .map_err(|e| match e {
                    crate::mesos::detector::DetectorError::InvalidSpec { reason, .. } => {
                        format!("{shape} ({reason})")
                    }
                    other => format!("{shape} ({other})"),
                })
        }
        (
            "mesos.resourcemanager.tasks.labels" | "mesos.constraints.hard.hostattribute",
            Value::List(items),
        ) => {
            match items.iter().find(|item| {
                !item
                    .split_once(':')
                    .is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
            }) {
                Some(bad) => Err(format!(
                    "a comma-separated list of name:value ('{bad}' is not)"
                )),
                None => Ok(()),
            }
        }
        ("mesos.resourcemanager.executor.uri", Value::Text(uri)) => {
            if ["http://", "https://", "hdfs://"]
                .iter()
                .any(|scheme| uri.starts_with(scheme))
            {
                Ok(())
            } else {
                Err(
                    "an http://, https:// or hdfs:// URI of a mesoflow-executor binary or .tar.gz"
                        .into(),
                )
            }
        }
        _ => Ok(()),
    }
}

/// The key table as the Markdown table of `docs/configuration.md`.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Key | Type | Default | Flink key | Description |\n| --- | --- | --- | --- | --- |\n",
    );
    for key in KEYS {
        let default = match key.default {
            Some(d) => format!("`{d}`"),
            None => "unset".to_owned(),
        };
        let flink = match key.flink {
            Some(f) if f == key.name => "same".to_owned(),
            Some(f) => format!("`{f}`"),
            None => "mesoflow only".to_owned(),
        };
        let secret = if key.secret {
            " Secret: listed as `******`."
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {flink} | {}{secret} |\n",
            key.name,
            key.kind.name(),
            key.doc.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
