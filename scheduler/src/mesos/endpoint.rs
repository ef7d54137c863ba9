//! Where the scheduler API lives and what an HTTP request to it looks like.
//!
//! The state machine only describes requests ([`HttpRequest`]); the shell sends them. Keeping
//! URLs, headers and `Location` parsing here lets tests check exact headers without sockets.

use std::fmt;

use bytes::Bytes;

/// Path of the v1 scheduler API on a master.
pub const SCHEDULER_API_PATH: &str = "/api/v1/scheduler";
/// Header carrying the subscription's stream id on every non-SUBSCRIBE call.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// A master's HTTP endpoint (`scheme://host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasterEndpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl MasterEndpoint {
    /// An `http` endpoint.
    pub fn http(host: impl Into<String>, port: u16) -> Self {
        Self {
            scheme: "http".to_owned(),
            host: host.into(),
            port,
        }
    }

    /// `scheme://host:port` with IPv6 hosts bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }

    /// The scheduler API URL on this master.
    pub fn scheduler_url(&self) -> String {
        format!("{}{SCHEDULER_API_PATH}", self.base_url())
    }
}

impl fmt::Display for MasterEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// Resolves a 307 `Location` against the URL that got it. Mesos sends a protocol-relative
/// value with the full path (`//m2:5050/master/api/v1/scheduler`); absolute URLs and bare
/// `host:port` (as old docs show) are accepted too. `None` if it is empty or unusable.
pub fn resolve_location(current_url: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let scheme = current_url.split("://").next().filter(|s| !s.is_empty())?;
    let (authority_and_path, explicit_scheme) = if let Some(rest) = location.strip_prefix("//") {
        (rest, None)
    } else if let Some((s, rest)) = location.split_once("://") {
        (rest, Some(s))
    } else {
        (location, None)
    };
    let (authority, path) = match authority_and_path.find('/') {
        Some(i) => authority_and_path.split_at(i),
        None => (authority_and_path, SCHEDULER_API_PATH),
    };
    if authority.is_empty() || authority.chars().any(|c| c.is_whitespace() || c == '@') {
        return None;
    }
    let path = if path == "/" {
        SCHEDULER_API_PATH
    } else {
        path
    };
    Some(format!(
        "{}://{authority}{path}",
        explicit_scheme.unwrap_or(scheme)
    ))
}

/// Which connection a request belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The SUBSCRIBE request: its response is the event stream, on a dedicated connection.
    Subscribe,
    /// Any other call, on the shared call connection.
    Call,
}

/// A fully described POST to the scheduler API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Dedicated stream connection or call connection.
    pub kind: RequestKind,
    /// Absolute URL.
    pub url: String,
    /// Headers in order, names as Mesos documents them.
    pub headers: Vec<(&'static str, String)>,
    /// Serialized `mesos.v1.scheduler.Call`.
    pub body: Bytes,
}

impl HttpRequest {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            MasterEndpoint::http("m1", 5050).scheduler_url(),
            "http://m1:5050/api/v1/scheduler"
        );
        assert_eq!(
            MasterEndpoint::http("::1", 5050).base_url(),
            "http://[::1]:5050"
        );
    }

    #[test]
    fn locations_resolve_like_mesos_sends_them() {
        let cur = "https://m1:5050/api/v1/scheduler";
        assert_eq!(
            resolve_location(cur, "//m2.example.com:5050/master/api/v1/scheduler").as_deref(),
            Some("https://m2.example.com:5050/master/api/v1/scheduler")
        );
        assert_eq!(
            resolve_location(cur, "http://m3:5051/api/v1/scheduler").as_deref(),
            Some("http://m3:5051/api/v1/scheduler")
        );
        assert_eq!(
            resolve_location(cur, "m4:5050").as_deref(),
            Some("https://m4:5050/api/v1/scheduler")
        );
        assert_eq!(resolve_location(cur, ""), None);
        assert_eq!(resolve_location(cur, "//"), None);
        assert_eq!(resolve_location(cur, "//user@evil/x"), None);
    }
}
