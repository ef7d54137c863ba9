//! The key table: every configuration key mesoflow reads, in one place, with its type, default,
//! the Flink key it mirrors and what it does. `docs/configuration.md` is generated from it.

use mesoflow_dataplane::key_groups::UPPER_MAX_PARALLELISM;

/// The type of a key's value, and the bounds a value must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A whole number in `min..=max` (`_` separators allowed).
    Int {
        /// Smallest value accepted.
        min: i64,
        /// Largest value accepted.
        max: i64,
    },
    /// A finite number in `min..=max`.
    Float {
        /// Smallest value accepted.
        min: f64,
        /// Largest value accepted.
        max: f64,
    },
    /// `true` or `false` (any case).
    Bool,
    /// Any text.
    String,
    /// A duration such as `10 s`, `500 ms` or `1.5mins`; a bare number is in `bare`.
    Duration {
        /// The unit of a bare number: Flink reads most durations' bare numbers as milliseconds,
        /// but a few keys (`mesos.failover-timeout`) are integer seconds.
        bare: BareUnit,
    },
    /// One of these values, compared case-insensitively.
    Enum(&'static [&'static str]),
    /// A comma-separated list (a YAML list in a file).
    List,
}

/// What a bare number means for a [`Kind::Duration`] key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    /// Flink's default unit.
    Millis,
    /// For keys whose Flink type is an integer of seconds.
    Seconds,
}

impl Kind {
    /// The type's name in the documentation.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Int { .. } => "int",
            Kind::Float { .. } => "float",
            Kind::Bool => "bool",
            Kind::String => "string",
            Kind::Duration { .. } => "duration",
            Kind::Enum(_) => "enum",
            Kind::List => "list",
        }
    }

    /// What a valid value looks like, for error messages.
    pub fn expected(&self) -> String {
        match self {
            Kind::Int { min, max } if *max == i64::MAX => format!("an integer of at least {min}"),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Float { min, max } if max.is_infinite() => {
                format!("a number of at least {min}")
            }
            Kind::Float { min, max } => format!("a number between {min} and {max}"),
            Kind::Bool => "true or false".into(),
            Kind::String => "text".into(),
            Kind::Duration {
                bare: BareUnit::Millis,
            } => "a duration such as 10 s, 500 ms or 1 min (a bare number is milliseconds)".into(),
            Kind::Duration {
                bare: BareUnit::Seconds,
            } => "a number of seconds or a duration such as 7 d or 1 h".into(),
            Kind::Enum(values) => format!("one of {}", values.join(", ")),
            Kind::List => "a comma-separated list".into(),
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key, Flink's spelling where Flink has it.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The default in the key's own syntax; `None` is unset.
    pub default: Option<&'static str>,
    /// The Flink key this one mirrors; `None` for mesoflow's own keys.
    pub flink: Option<&'static str>,
    /// One line: what it does.
    pub doc: &'static str,
    /// Masked as `******` wherever values are listed (Flink masks password, secret and token keys).
    pub secret: bool,
}

impl Key {
    /// The environment variable that sets this key: `MESOFLOW_` and the key upper-cased, with `.`
    /// and `-` turned into `_` (`rest.port` is `MESOFLOW_REST_PORT`).
    pub fn env_name(&self) -> String {
        let mut name = String::from("MESOFLOW_");
        name.extend(self.name.chars().map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        name
    }
}

/// The key named `name`, if there is one.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Flink's deprecated spellings, read as the key they were renamed to.
pub const ALIASES: &[(&str, &str)] = &[
    ("restart-strategy", "restart-strategy.type"),
    ("high-availability.type", "high-availability"),
];

const fn key_(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    flink: bool,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        flink: if flink { Some(name) } else { None },
        doc,
        secret: false,
    }
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const DURATION: Kind = Kind::Duration {
    bare: BareUnit::Millis,
};
const PORT: Kind = int(0, 65_535);
const PARALLELISM: Kind = int(1, UPPER_MAX_PARALLELISM as i64);
const COUNT: Kind = int(0, u32::MAX as i64);

/// Values of `restart-strategy.type`.
pub const RESTART_STRATEGIES: &[&str] = &[
    "exponential-delay",
    "fixed-delay",
    "none",
    "off",
    "disable",
    "exponentialdelay",
    "fixeddelay",
    "failure-rate",
    "failurerate",
];

/// Every key, grouped as the documentation lists them.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // Execution.
    key_("parallelism.default", PARALLELISM, Some("1"), true, "Default parallelism of every operator."),
    key_("pipeline.max-parallelism", PARALLELISM, Some("128"), true, "Number of key groups: the largest parallelism a keyed operator can be rescaled to."),
    key_("execution.buffer-timeout", DURATION, Some("10 ms"), true, "Longest a partial batch waits before it is shipped; also the processing-time tick (Flink: 100 ms; mesoflow ships smaller batches sooner)."),
    key_("execution.batch-size", int(1, 1 << 20), Some("1024"), false, "Records per batch shipped between subtasks."),
    key_("execution.channel-capacity", int(1, 1 << 16), Some("16"), false, "Batches a channel buffers before its sender blocks."),
    // Checkpoints and savepoints.
    key_("execution.checkpointing.interval", DURATION, None, true, "Interval of periodic checkpoints (unset: no periodic checkpoints); needs state.checkpoints.dir or high-availability.storageDir."),
    key_("execution.checkpointing.mode", Kind::Enum(&["EXACTLY_ONCE", "AT_LEAST_ONCE"]), Some("EXACTLY_ONCE"), true, "EXACTLY_ONCE (barriers aligned) or AT_LEAST_ONCE."),
    key_("execution.checkpointing.timeout", DURATION, Some("10 min"), true, "A checkpoint not complete after this long is aborted."),
    key_("execution.checkpointing.min-pause", DURATION, Some("0 ms"), true, "Least time between the completion of a checkpoint and the trigger of the next."),
    key_("execution.checkpointing.tolerable-failed-checkpoints", COUNT, Some("0"), true, "Consecutive checkpoint failures tolerated; one more fails the job (the restart strategy applies)."),
    key_("execution.checkpointing.unaligned.enabled", Kind::Bool, Some("false"), true, "Unaligned checkpoints (EXACTLY_ONCE only): barriers overtake buffered records."),
    key_("execution.checkpointing.max-concurrent-checkpoints", int(1, i32::MAX as i64), Some("1"), true, "Checkpoints in progress at once; mesoflow supports only 1."),
    key_("execution.checkpointing.externalized-checkpoint-retention", Kind::Enum(&["NO_EXTERNALIZED_CHECKPOINTS", "DELETE_ON_CANCELLATION", "RETAIN_ON_CANCELLATION"]), Some("NO_EXTERNALIZED_CHECKPOINTS"), true, "What happens to retained checkpoints when the job ends: NO_EXTERNALIZED_CHECKPOINTS deletes them; DELETE_ON_CANCELLATION keeps them when the job fails; RETAIN_ON_CANCELLATION keeps them when it fails or is cancelled."),
    key_("state.checkpoints.num-retained", int(1, i32::MAX as i64), Some("1"), true, "Completed checkpoints kept; older ones are deleted (savepoints never are)."),
    key_("state.checkpoints.dir", Kind::String, None, true, "Directory (file://, absolute path or hdfs://) of checkpoints; each job's under <dir>/<job id>."),
    key_("state.savepoints.dir", Kind::String, None, true, "Default directory of savepoints."),
    key_("state.backend.type", Kind::Enum(&["heap", "hashmap", "mmap"]), Some("heap"), true, "Where keyed state lives: heap (Flink's hashmap is an alias) or mmap."),
    key_("state.backend.mmap.memory-budget", int(1, i32::MAX as i64), Some("256"), false, "With the mmap backend: memory for each keyed operator instance's state, in MiB; colder entries live in file-backed maps under the TaskManager's work directory."),
    // Cluster.
    key_("heartbeat.interval", DURATION, Some("10 s"), true, "How often TaskManagers send heartbeats to the JobManager."),
    key_("heartbeat.timeout", DURATION, Some("50 s"), true, "A TaskManager silent this long is lost; must be longer than heartbeat.interval."),
    key_("cluster.evenly-spread-out-slots", Kind::Bool, Some("true"), true, "true: spread subtasks over all TaskManagers; false: fill one TaskManager before the next."),
    key_("resourcemanager.taskmanager-registration.timeout", DURATION, Some("5 min"), true, "A requested TaskManager that has not registered after this long is given up and replaced."),
    key_("resourcemanager.taskmanager-timeout", DURATION, Some("30 s"), true, "A session cluster releases a TaskManager idle this long, unless it is one of mesos.initial-tasks."),
    key_("task.cancellation.timeout", DURATION, Some("180 s"), true, "How long cancelled subtasks get to stop before their TaskManager is considered stuck."),
    // Restart strategy.
    key_("restart-strategy.type", Kind::Enum(RESTART_STRATEGIES), Some("exponential-delay"), true, "How a failed job is restarted: none, fixed-delay or exponential-delay (failure-rate is not supported yet)."),
    key_("restart-strategy.fixed-delay.attempts", COUNT, Some("1"), true, "fixed-delay: restarts allowed before the job fails."),
    key_("restart-strategy.fixed-delay.delay", DURATION, Some("1 s"), true, "fixed-delay: delay before each restart."),
    key_("restart-strategy.exponential-delay.initial-backoff", DURATION, Some("1 s"), true, "exponential-delay: delay before the first restart (positive)."),
    key_("restart-strategy.exponential-delay.max-backoff", DURATION, Some("1 min"), true, "exponential-delay: largest delay; at least the initial backoff."),
    key_("restart-strategy.exponential-delay.backoff-multiplier", Kind::Float { min: 1.0, max: f64::INFINITY }, Some("1.5"), true, "exponential-delay: growth of the delay per failure."),
    key_("restart-strategy.exponential-delay.reset-backoff-threshold", DURATION, Some("1 h"), true, "exponential-delay: running this long without a failure resets the delay and the count."),
    key_("restart-strategy.exponential-delay.jitter-factor", Kind::Float { min: 0.0, max: 1.0 }, Some("0.1"), true, "exponential-delay: random spread of each delay, 0 to 1."),
    key_("restart-strategy.exponential-delay.attempts-before-reset-backoff", int(1, u32::MAX as i64), None, true, "exponential-delay: restarts allowed between resets (unset: unlimited)."),
    // TaskManager.
    key_("taskmanager.numberOfTaskSlots", PARALLELISM, Some("1"), true, "Slots per TaskManager: how many parallel subtasks one TaskManager runs."),
    // JobManager.
    key_("jobmanager.rpc.address", Kind::String, Some("127.0.0.1"), true, "Address the JobManager's control endpoint binds and announces; on a real cluster it must be an address TaskManagers can reach."),
    key_("jobmanager.rpc.port", PORT, Some("6123"), true, "Port of the JobManager's control endpoint; 0 is any free port."),
    // REST.
    key_("rest.address", Kind::String, Some("127.0.0.1"), true, "Address clients use to reach the REST endpoint."),
    key_("rest.bind-address", Kind::String, None, true, "Address the REST endpoint binds (unset: rest.address)."),
    key_("rest.port", PORT, Some("8081"), true, "Port of the REST endpoint; 0 is any free port."),
    Key { secret: true, ..key_("rest.token", Kind::String, None, false, "When set, every REST request needs the header `Authorization: Bearer <token>`.") },
    key_("security.ssl.rest.enabled", Kind::Bool, Some("false"), true, "Serve REST over TLS; needs security.ssl.rest.cert-file and security.ssl.rest.key-file."),
    Key { flink: Some("security.ssl.rest.keystore"), ..key_("security.ssl.rest.cert-file", Kind::String, None, false, "PEM file of the REST endpoint's certificate chain (the PEM twin of Flink's keystore).") },
    Key { flink: Some("security.ssl.rest.keystore"), ..key_("security.ssl.rest.key-file", Kind::String, None, false, "PEM file of the REST endpoint's private key (the PEM twin of Flink's keystore).") },
    // Mesos.
    key_("mesos.master", Kind::String, None, true, "Mesos master: host:port[,host:port], zk://host:port[,host:port]/path or file://path (unset: a standalone session cluster of local processes)."),
    key_("mesos.initial-tasks", COUNT, Some("0"), true, "TaskManagers started when the cluster starts."),
    key_("mesos.maximum-failed-tasks", int(-1, u32::MAX as i64), Some("-1"), true, "Failed TaskManagers tolerated before the cluster gives up; -1 is the same as mesos.initial-tasks."),
    key_("mesos.failover-timeout", Kind::Duration { bare: BareUnit::Seconds }, Some("604800"), true, "How long Mesos keeps the framework's tasks after the scheduler disconnects (a bare number is seconds)."),
    key_("mesos.resourcemanager.framework.name", Kind::String, Some("mesoflow"), true, "Framework name shown by Mesos."),
    key_("mesos.resourcemanager.framework.role", Kind::String, Some("*"), true, "Role whose resources the framework is offered."),
    key_("mesos.resourcemanager.framework.principal", Kind::String, None, true, "Principal the framework authenticates as."),
    Key { secret: true, ..key_("mesos.resourcemanager.framework.secret", Kind::String, None, true, "Secret the framework authenticates with.") },
    key_("mesos.resourcemanager.framework.user", Kind::String, None, true, "User tasks run as (unset or empty: the current user)."),
    key_("mesos.resourcemanager.tasks.cpus", Kind::Float { min: 0.0, max: f64::INFINITY }, Some("0.0"), true, "CPUs per TaskManager; 0.0 is as many as taskmanager.numberOfTaskSlots."),
    key_("mesos.resourcemanager.tasks.mem", int(1, i32::MAX as i64), Some("1024"), true, "Memory per TaskManager, in MiB."),
    key_("mesos.resourcemanager.tasks.disk", int(0, i32::MAX as i64), Some("0"), true, "Disk per TaskManager, in MiB."),
    key_("mesos.resourcemanager.tasks.uris", Kind::List, None, true, "Extra URIs the agent fetches into each TaskManager's sandbox."),
    key_("mesos.resourcemanager.tasks.labels", Kind::List, None, true, "Labels of each TaskManager task, as key:value."),
    key_("mesos.resourcemanager.tasks.bootstrap-cmd", Kind::String, None, true, "Shell command run before the executor starts."),
    key_("mesos.resourcemanager.tasks.hostname", Kind::String, None, true, "Hostname TaskManagers announce; _TASK_ is replaced by the task id (unset: the agent's)."),
    key_("mesos.constraints.hard.hostattribute", Kind::List, None, true, "Agent attributes a TaskManager's agent must have, as attribute:value (exact match)."),
    key_("mesos.resourcemanager.declined-offer-refuse-duration", DURATION, Some("5 s"), true, "How long Mesos holds back resources the framework declined."),
    key_("mesos.resourcemanager.artifactserver.port", PORT, Some("0"), true, "Port of the server agents fetch the executor from; 0 is any free port."),
    key_("mesos.resourcemanager.executor.uri", Kind::String, None, false, "http://, https:// or hdfs:// URI of a mesoflow-executor binary or .tar.gz (unset: the artifact server serves this binary's executor)."),
    key_("mesos.resourcemanager.tasks.launch-timeout", DURATION, Some("5 min"), false, "A launched TaskManager task not running after this long is killed and replaced."),
    // High availability.
    key_("high-availability", Kind::Enum(&["NONE", "ZOOKEEPER"]), Some("NONE"), true, "NONE or ZOOKEEPER (leader election and recovery through ZooKeeper)."),
    key_("high-availability.zookeeper.quorum", Kind::String, None, true, "ZooKeeper quorum, host:port[,host:port]."),
    key_("high-availability.zookeeper.path.root", Kind::String, Some("/mesoflow"), true, "Root ZooKeeper node of every mesoflow cluster."),
    key_("high-availability.cluster-id", Kind::String, Some("/default"), true, "ZooKeeper node of this cluster under the root."),
    key_("high-availability.storageDir", Kind::String, None, true, "Where the JobManager's metadata is persisted for recovery."),
];

/// The key closest to an unknown `name`, if one is close enough to be the intended one.
pub fn closest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::levenshtein(name, k.name), k.name))
        .min()
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(2))
        .map(|(_, known)| known)
}
