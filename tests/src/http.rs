//! The HTTP rules both Mesos v1 endpoints share: POST only, exact Content-Type strings, Accept
//! negotiation for streams, and RecordIO framing of events.
//!
//! Mesos compares `Content-Type` as an exact string (`application/json; charset=utf-8` is a 415),
//! prefers JSON when the client accepts it (a missing `Accept` or `*/*` counts), and otherwise
//! protobuf, else 406.

use axum::http::{HeaderMap, Method, StatusCode, header};

/// Media type of protobuf bodies and streams.
pub const PROTOBUF: &str = "application/x-protobuf";
/// Media type of JSON bodies and streams.
pub const JSON: &str = "application/json";

/// The two body formats of the v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The media type string for this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

/// An HTTP-level rejection: status code and plain-text body, as the master writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub body: String,
}

impl Rejection {
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

/// Checks the method and the request Content-Type; returns the request body format.
pub fn request_format(method: &Method, headers: &HeaderMap) -> Result<Format, Rejection> {
    if method != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Expecting 'POST', received '{method}'"),
        ));
    }
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    match value.to_str() {
        Ok(PROTOBUF) => Ok(Format::Protobuf),
        Ok(JSON) => Ok(Format::Json),
        other => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Expecting 'Content-Type' of {JSON} or {PROTOBUF}, got '{}'",
                other.unwrap_or("<non-ASCII>")
            ),
        )),
    }
}

/// Whether an `Accept` header value accepts `media`: the most specific matching range
/// (`type/subtype` over `type/*` over `*/*`) decides, and `q=0` means "not acceptable".
fn accepts(accept: &str, media: &str) -> bool {
    let (mtype, _) = media.split_once('/').unwrap_or((media, ""));
    let wildcard_type = format!("{mtype}/*");
    let mut best: Option<(u8, bool)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let specificity = if range == media {
            3
        } else if range == wildcard_type {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        let acceptable = !parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, acceptable));
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Negotiates the stream format for SUBSCRIBE: JSON if acceptable, else protobuf, else 406.
pub fn stream_format(headers: &HeaderMap) -> Result<Format, Rejection> {
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if accept.is_empty() {
        return Ok(Format::Json);
    }
    let joined = accept.join(",");
    if accepts(&joined, JSON) {
        Ok(Format::Json)
    } else if accepts(&joined, PROTOBUF) {
        Ok(Format::Protobuf)
    } else {
        Err(Rejection::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("Expecting 'Accept' to allow '{PROTOBUF}' or '{JSON}'"),
        ))
    }
}

/// Frames one record: `<decimal length>\n<bytes>`.
pub fn recordio_frame(record: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_type_is_an_exact_string() {
        let post = Method::POST;
        assert_eq!(
            request_format(&post, &headers(&[(header::CONTENT_TYPE, PROTOBUF)])),
            Ok(Format::Protobuf)
        );
        let r = request_format(
            &post,
            &headers(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]),
        )
        .unwrap_err();
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = request_format(&post, &HeaderMap::new()).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = request_format(&Method::GET, &HeaderMap::new()).unwrap_err();
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn accept_prefers_json_then_protobuf_else_406() {
        assert_eq!(stream_format(&HeaderMap::new()), Ok(Format::Json));
        assert_eq!(
            stream_format(&headers(&[(header::ACCEPT, "*/*")])),
            Ok(Format::Json)
        );
        assert_eq!(
            stream_format(&headers(&[(header::ACCEPT, PROTOBUF)])),
            Ok(Format::Protobuf)
        );
        assert_eq!(
            stream_format(&headers(&[(
                header::ACCEPT,
                "application/x-protobuf, application/json"
            )])),
            Ok(Format::Json)
        );
        assert_eq!(
            stream_format(&headers(&[(
                header::ACCEPT,
                "application/json;q=0, application/*"
            )])),
            Ok(Format::Protobuf)
        );
        assert_eq!(
            stream_format(&headers(&[(header::ACCEPT, "text/html")]))
                .unwrap_err()
                .status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn recordio_frames_are_length_newline_bytes() {
        assert_eq!(
            &recordio_frame(b"{\"type\":\"HEARTBEAT\"}")[..],
            b"20\n{\"type\":\"HEARTBEAT\"}"
        );
    }
}
