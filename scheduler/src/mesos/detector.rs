//! Finding the leading Mesos master.
//!
//! `mesos.master` takes the forms Mesos itself accepts:
//! - `host:port[,host:port...]` (optionally `http://` / `https://`): the client tries them in
//!   turn and follows 307 redirects to the leader;
//! - `zk://[user:pass@]h1:p1,h2:p2/path`: masters register ephemeral sequential znodes
//!   `json.info_<seq>` under `path`; the one with the lowest sequence is the leader, and its data
//!   is `MasterInfo` as Mesos-style JSON (snake_case fields). The detector watches the children
//!   and reports every change; `user:pass` is sent as ZooKeeper `digest` auth;
//! - `file:///path`: a file holding either form (read once, at start).
//!
//! ZooKeeper access uses the `zookeeper-client` crate (kezhuw) with its `tokio` feature: it is
//! the best-kept async client (maintained by an Apache ZooKeeper committer with regular
//! releases; it supports watches incl. persistent ones, multi-ops, sessions that survive
//! reconnects, and SASL/TLS), whereas `zookeeper-async`, `tokio-zookeeper` and `zookeeper` are
//! minimal or unmaintained. Its spawner needs the `tokio` feature under a tokio runtime.
//!
//! The pure parts (spec parsing, leader choice, MasterInfo JSON) are functions tested without
//! ZooKeeper; [`spawn_zk_detector`] is the thin watch loop.

use std::{net::Ipv4Addr, time::Duration};

use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};
use zookeeper_client as zk;

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig};

use super::{endpoint::MasterEndpoint, shell::MasterSource};

/// Prefix of the znodes leading-master candidates create (JSON MasterInfo).
pub const MASTER_ZNODE_PREFIX: &str = "json.info_";
/// Default Mesos master port.
pub const DEFAULT_MASTER_PORT: u16 = 5050;
/// Default ZooKeeper client port.
pub const DEFAULT_ZK_PORT: u16 = 2181;

/// What went wrong finding masters.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The `mesos.master` value is not in a supported form.
    #[error(
        "mesos.master is not host:port[,host:port...], zk://[user:pass@]host:port[,...]/path or file:///path: got '{got}' ({reason})"
    )]
    InvalidSpec {
        /// The value given.
        got: String,
        /// What exactly is wrong.
        reason: String,
    },
    /// A `file://` spec could not be read.
    #[error("cannot read mesos.master file '{path}': {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A master's znode does not hold usable MasterInfo JSON.
    #[error("leading master's znode holds no usable MasterInfo JSON: {0}")]
    MasterInfo(String),
}

/// A parsed ZooKeeper master URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkUrl {
    /// Comma-separated `host:port` servers.
    pub servers: String,
    /// Absolute znode path of the masters' group (e.g. `/mesos`).
    pub path: String,
    /// `user:pass` for ZooKeeper digest auth, if given.
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ZkUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkUrl")
            .field("servers", &self.servers)
            .field("path", &self.path)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where to find the masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSpec {
    /// A fixed list, tried in turn.
    Hosts(Vec<MasterEndpoint>),
    /// ZooKeeper leader detection.
    ZooKeeper(ZkUrl),
}

impl MasterSpec {
    /// Parses `mesos.master`, reading `file://` specs from disk.
    pub fn load(spec: &str) -> Result<Self, DetectorError> {
        let trimmed = spec.trim();
        if let Some(path) = trimmed.strip_prefix("file://") {
            let contents = std::fs::read_to_string(path).map_err(|source| DetectorError::File {
                path: path.to_owned(),
                source,
            })?;
            let inner = contents.trim();
            if inner.starts_with("file://") {
                return Err(invalid(
                    inner,
                    "a file:// spec may not point at another file",
                ));
            }
            return Self::parse(inner);
        }
        Self::parse(trimmed)
    }

    /// Parses `host:port[,...]` or `zk://...` (not `file://`; see [`load`](Self::load)).
    pub fn parse(spec: &str) -> Result<Self, DetectorError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(invalid(spec, "it is empty"));
        }
        if let Some(rest) = spec.strip_prefix("zk://") {
            return parse_zk(spec, rest).map(MasterSpec::ZooKeeper);
        }
        if spec.starts_with("file://") {
            return Err(invalid(spec, "file:// is only allowed at the top level"));
        }
        let mut masters = Vec::new();
        for part in spec.split(',') {
            let part = part.trim();
            let (scheme, hostport) = if let Some(r) = part.strip_prefix("http://") {
                ("http", r)
            } else if let Some(r) = part.strip_prefix("https://") {
                ("https", r)
            } else {
                ("http", part)
            };
            let hostport = hostport.trim_end_matches('/');
            if hostport.contains('/') {
                return Err(invalid(
                    spec,
                    &format!("'{part}' has a path; give host:port only"),
                ));
            }
            let (host, port) = split_host_port(spec, hostport, None)?;
            masters.push(MasterEndpoint {
                scheme: scheme.to_owned(),
                host,
                port,
            });
        }
        Ok(MasterSpec::Hosts(masters))
    }

    /// Turns the spec into what the driver needs: the initial master list and its source. For
    /// ZooKeeper this spawns the detector task (call inside a tokio runtime).
    pub fn into_source(self) -> (Vec<MasterEndpoint>, MasterSource, Option<JoinHandle<()>>) {
        match self {
            MasterSpec::Hosts(masters) => (masters, MasterSource::Static, None),
            MasterSpec::ZooKeeper(url) => {
                let (rx, task) = spawn_zk_detector(url);
                (Vec::new(), MasterSource::Detected(rx), Some(task))
            }
        }
    }
}

fn invalid(got: &str, reason: &str) -> DetectorError {
    DetectorError::InvalidSpec {
        got: redact_userinfo(got),
        reason: reason.to_owned(),
    }
}

/// Hides `user:pass@` in error messages.
fn redact_userinfo(spec: &str) -> String {
    match (spec.strip_prefix("zk://"), spec.find('@')) {
        (Some(_), Some(at)) => format!("zk://<credentials>{}", &spec[at..]),
        _ => spec.to_owned(),
    }
}

fn split_host_port(
    spec: &str,
    hostport: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), DetectorError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(spec, &format!("'{hostport}' has an unclosed '['")))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(invalid(spec, &format!("'{hostport}' is not [ipv6]:port"))),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c == '/')
    {
        return Err(invalid(spec, &format!("'{hostport}' has no valid host")));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(spec, &format!("'{p}' is not a port (1-65535)")))?,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(invalid(spec, &format!("'{hostport}' has no port")));
        }
    };
    Ok((host.to_owned(), port))
}

fn parse_zk(spec: &str, rest: &str) -> Result<ZkUrl, DetectorError> {
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((creds, rest)) => {
            if !creds.contains(':') || creds.starts_with(':') {
                return Err(invalid(spec, "credentials must be user:pass@"));
            }
            (Some(creds.to_owned()), rest)
        }
        None => (None, rest),
    };
    let (servers, path) = rest.split_once('/').ok_or_else(|| {
        invalid(
            spec,
            "no znode path after the servers (e.g. zk://host:2181/mesos)",
        )
    })?;
    let path = format!("/{}", path.trim_end_matches('/'));
    if path == "/" {
        return Err(invalid(
            spec,
            "the znode path is empty (e.g. zk://host:2181/mesos)",
        ));
    }
    if path.contains("//") {
        return Err(invalid(spec, "the znode path has an empty component"));
    }
    let mut normalized = Vec::new();
    for server in servers.split(',') {
        let (host, port) = split_host_port(spec, server.trim(), Some(DEFAULT_ZK_PORT))?;
        normalized.push(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        });
    }
    Ok(ZkUrl {
        servers: normalized.join(","),
        path,
        credentials,
    })
}

/// The leading master's znode among `children`: the `json.info_<seq>` with the lowest
/// sequence number (ties cannot happen; other names are ignored).
pub fn leading_child(children: &[String]) -> Option<&str> {
    children
        .iter()
        .filter_map(|name| {
            let seq = name.strip_prefix(MASTER_ZNODE_PREFIX)?;
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            seq.parse::<u64>().ok().map(|s| (s, name.as_str()))
        })
        .min_by_key(|(seq, _)| *seq)
        .map(|(_, name)| name)
}

/// The master's endpoint from its MasterInfo JSON: `address.ip`/`address.hostname` with
/// `address.port`, else `hostname`, else the numeric `ip` (network byte order), with `port`.
pub fn master_from_json(data: &[u8]) -> Result<MasterEndpoint, DetectorError> {
    let value: Value = serde_json::from_slice(data)
        .map_err(|e| DetectorError::MasterInfo(format!("not JSON: {e}")))?;
    let Value::Object(info) = &value else {
        return Err(DetectorError::MasterInfo("not a JSON object".to_owned()));
    };
    let port_of = |v: Option<&Value>| -> Result<Option<u16>, DetectorError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .map(Some)
                .ok_or_else(|| DetectorError::MasterInfo(format!("port {v} is not 1-65535"))),
        }
    };
    let top_port = port_of(info.get("port"))?;
    if let Some(Value::Object(address)) = info.get("address") {
        let port = port_of(address.get("port"))?.or(top_port);
        let host = address
            .get("ip")
            .and_then(Value::as_str)
            .or_else(|| address.get("hostname").and_then(Value::as_str))
            .filter(|h| !h.is_empty());
        if let Some(host) = host {
            return Ok(MasterEndpoint::http(
                host,
                port.unwrap_or(DEFAULT_MASTER_PORT),
            ));
        }
    }
    let port = top_port.unwrap_or(DEFAULT_MASTER_PORT);
    if let Some(host) = info
        .get("hostname")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
    {
        return Ok(MasterEndpoint::http(host, port));
    }
    if let Some(ip) = info.get("ip").and_then(Value::as_u64) {
        let ip = u32::try_from(ip)
            .map_err(|_| DetectorError::MasterInfo(format!("ip {ip} is not an IPv4 address")))?;
        // Network byte order stored in a little-endian uint32 (as the masters write it).
        let addr = Ipv4Addr::from(ip.to_le_bytes());
        return Ok(MasterEndpoint::http(addr.to_string(), port));
    }
    Err(DetectorError::MasterInfo(
        "no address.ip, address.hostname, hostname or ip field".to_owned(),
    ))
}

/// Starts watching ZooKeeper for the leading master. The receiver holds the current leader
/// (a one-element list) or an empty list while there is none; it keeps the last leader while
/// ZooKeeper is unreachable (the session may still be alive). The task runs until every
/// receiver is dropped.
pub fn spawn_zk_detector(url: ZkUrl) -> (watch::Receiver<Vec<MasterEndpoint>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Vec::new());
    let task = tokio::spawn(run_zk_detector(url, tx));
    (rx, task)
}

async fn run_zk_detector(url: ZkUrl, tx: watch::Sender<Vec<MasterEndpoint>>) {
    let mut backoff = Backoff::new(
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(15),
        },
        0x7a6b,
    );
    while !tx.is_closed() {
        let mut connector = zk::Client::connector().with_session_timeout(Duration::from_secs(10));
        if let Some(creds) = &url.credentials {
            connector = connector.with_auth("digest", creds.as_bytes());
        }
        match connector.connect(&url.servers).await {
            Ok(client) => {
                info!(servers = %url.servers, path = %url.path, "watching ZooKeeper for the leading Mesos master");
                backoff.reset();
                if let Err(e) = watch_leader(&client, &url.path, &tx).await {
                    warn!(error = %e, "ZooKeeper session lost; reconnecting");
                }
            }
            Err(e) => warn!(servers = %url.servers, error = %e, "cannot connect to ZooKeeper"),
        }
        if tx.is_closed() {
            break;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    debug!("ZooKeeper master detector stopped");
}

/// Publishes the leader until the session ends (or nobody listens).
async fn watch_leader(
    client: &zk::Client,
    path: &str,
    tx: &watch::Sender<Vec<MasterEndpoint>>,
) -> Result<(), zk::Error> {
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let watcher = match client.get_and_watch_children(path).await {
            Ok((children, _, watcher)) => {
                match leading_child(&children) {
                    Some(name) => match client.get_data(&format!("{path}/{name}")).await {
                        Ok((data, _)) => match master_from_json(&data) {
                            Ok(master) => publish(tx, vec![master]),
                            Err(e) => {
                                warn!(znode = %name, error = %e, "ignoring the leading master's znode");
                                publish(tx, Vec::new());
                            }
                        },
                        // The leader vanished between the listing and the read: list again.
                        Err(zk::Error::NoNode) => continue,
                        Err(e) => return Err(e),
                    },
                    None => publish(tx, Vec::new()),
                }
                watcher
            }
            Err(zk::Error::NoNode) => {
                publish(tx, Vec::new());
                let (stat, watcher) = client.check_and_watch_stat(path).await?;
                if stat.is_some() {
                    // Created in between: list it now.
                    continue;
                }
                watcher
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            event = watcher.changed() => {
                if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                    return Err(zk::Error::SessionExpired);
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}

fn publish(tx: &watch::Sender<Vec<MasterEndpoint>>, masters: Vec<MasterEndpoint>) {
    tx.send_if_modified(|current| {
        if *current == masters {
            return false;
        }
        match masters.first() {
            Some(m) => info!(leader = %m, "leading Mesos master detected"),
            None => warn!("no leading Mesos master registered in ZooKeeper"),
        }
        *current = masters;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_parse_with_schemes_and_ipv6() {
        assert_eq!(
            MasterSpec::parse("node:5050").expect("valid"),
            MasterSpec::Hosts(vec![MasterEndpoint::http("node", 5050)])
        );
        let MasterSpec::Hosts(list) =
            MasterSpec::parse("m1:5050, https://m2:5443 ,[::1]:5050").expect("valid")
        else {
            panic!("hosts")
        };
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].scheme, "https");
        assert_eq!(list[1].port, 5443);
        assert_eq!(list[2].host, "::1");
    }

    #[test]
    fn errors_say_what_was_expected() {
        let err = MasterSpec::parse("node5050")
            .expect_err("no port")
            .to_string();
        assert!(err.starts_with("mesos.master is not host:port"), "{err}");
        assert!(err.contains("got 'node5050'"), "{err}");
        for bad in [
            "",
            "node:0",
            "node:99999",
            ":5050",
            "zk://h:2181",
            "zk://h:2181/",
            "m1:5050/x",
            "zk://h:x/mesos",
        ] {
            assert!(MasterSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = MasterSpec::parse("zk://bob:secret@h:bad/mesos")
            .expect_err("bad port")
            .to_string();
        assert!(!err.contains("secret"), "credentials leak: {err}");
    }

    #[test]
    fn zk_urls_parse_with_credentials_and_default_ports() {
        assert_eq!(
            MasterSpec::parse("zk://bob:pw@h1:2181,h2/mesos/").expect("valid"),
            MasterSpec::ZooKeeper(ZkUrl {
                servers: "h1:2181,h2:2181".into(),
                path: "/mesos".into(),
                credentials: Some("bob:pw".into()),
            })
        );
    }

    #[test]
    fn file_specs_hold_either_form() {
        let dir = std::env::temp_dir().join(format!("mesoflow-detector-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("master");
        std::fs::write(&file, "zk://10.0.0.1:2181/mesos\n").expect("write");
        let spec = MasterSpec::load(&format!("file://{}", file.display())).expect("valid");
        assert!(matches!(spec, MasterSpec::ZooKeeper(ref z) if z.path == "/mesos"));
        std::fs::write(&file, "m1:5050,m2:5050").expect("write");
        let spec = MasterSpec::load(&format!("file://{}", file.display())).expect("valid");
        assert!(matches!(spec, MasterSpec::Hosts(ref h) if h.len() == 2));
        let missing = MasterSpec::load("file:///nonexistent/mesoflow/master").expect_err("missing");
        assert!(
            missing
                .to_string()
                .contains("cannot read mesos.master file")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn lowest_sequence_leads() {
        let children: Vec<String> = [
            "json.info_0000000012",
            "info_0000000001",
            "json.info_0000000010",
            "json.info_x",
            "log_replicas",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(leading_child(&children), Some("json.info_0000000010"));
        assert_eq!(leading_child(&children[1..2]), None);
    }

    #[test]
    fn master_info_json_in_all_shapes() {
        let with_address = br#"{"id":"m","ip":16777343,"port":5050,"hostname":"m1.example",
            "address":{"hostname":"m1.example","ip":"10.1.2.3","port":5051},
            "capabilities":[{"type":"AGENT_UPDATE"},{"type":"QUOTA_V2"}],"version":"1.11.0"}"#;
        assert_eq!(
            master_from_json(with_address).expect("valid"),
            MasterEndpoint::http("10.1.2.3", 5051)
        );
        let hostname_only = br#"{"id":"m","hostname":"m2","port":5052}"#;
        assert_eq!(
            master_from_json(hostname_only).expect("valid"),
            MasterEndpoint::http("m2", 5052)
        );
        let ip_only = br#"{"id":"m","ip":16777343,"port":5050}"#;
        assert_eq!(
            master_from_json(ip_only).expect("valid"),
            MasterEndpoint::http("127.0.0.1", 5050)
        );
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"id":"m"}"#,
            br#"{"hostname":"h","port":70000}"#,
        ] {
            assert!(master_from_json(bad).is_err());
        }
    }
}
