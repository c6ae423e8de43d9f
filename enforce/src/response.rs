//! Every response vigil writes itself, in one place: errors and denials as RFC 9457 problem
//! details (`application/problem+json`), one shape for the proxy and forward-auth alike.
//!
//! ```json
//! {"type":"urn:vigil:problem:blocked","title":"Forbidden","status":403,
//!  "detail":"access denied by policy","decision_id":"0190...","request_id":"0190..."}
//! ```
//! Reasons and scores are not sent to denied clients (they would teach an attacker the
//! rules); the decision id lets support look them up.

use crate::error::EnforceError;
use bytes::Bytes;
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Errors of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy and forward-auth send.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<&'a str>,
    request_id: &'a str,
}

/// A problem+json response; `slug` becomes `urn:vigil:problem:<slug>`.
pub fn problem(
    status: StatusCode,
    slug: &str,
    detail: &str,
    decision_id: Option<&str>,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let p = Problem {
        kind: format!("urn:vigil:problem:{slug}"),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        decision_id,
        request_id,
    };
    let body = serde_json::to_vec(&p).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The response for an error; client errors say what was wrong, upstream and internal errors
/// say little (details go to the log).
pub fn error_response(e: &EnforceError, request_id: &str) -> Response<Full<Bytes>> {
    let mut r = problem(
        e.status(),
        e.problem_slug(),
        &e.public_detail(),
        None,
        request_id,
    );
    if matches!(e, EnforceError::InvalidToken(_)) {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
    }
    if matches!(e, EnforceError::AmbiguousFraming(_)) {
        // The rest of this connection's bytes cannot be trusted to be framed as the client
        // meant: close it after this response.
        r.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_shape() {
        let r = problem(
            StatusCode::FORBIDDEN,
            "blocked",
            "access denied by policy",
            Some("d1"),
            "r1",
        );
        assert_eq!(r.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let e = error_response(&EnforceError::InvalidToken("expired".into()), "r2");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(e.headers().contains_key(hyper::header::WWW_AUTHENTICATE));
    }
}
