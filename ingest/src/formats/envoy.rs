//! Envoy's default text access-log format:
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
//! %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
//! "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
//! ```
//!
//! and Istio's variant, which adds `%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
//! "%UPSTREAM_TRANSPORT_FAILURE_REASON%"` after the flags and `%UPSTREAM_CLUSTER%
//! %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
//! %REQUESTED_SERVER_NAME% %ROUTE_NAME%` at the end. The default format logs no peer address:
//! the client IP then comes from `X-Forwarded-For`, to which an edge Envoy appends its peer.

use super::text::{Tok, count, field, request_line, status, tokenize};
use super::{Emit, LogFormat};
use crate::error::{ParseError, ParseErrorKind};
use crate::record::{AccessRecord, clip, present};
use std::borrow::Cow;

pub struct Envoy;

const DEFAULT_FIELDS: usize = 13;
const ISTIO_FIELDS: usize = 22;

/// A duration in milliseconds; `-` is absent. Envoy writes neither negative nor non-finite
/// durations, and the events table must not hold them (found by `fuzz/`: `-1`, `NaN`, `inf`
/// parsed as numbers).
fn millis(s: &str, what: &str) -> Result<Option<f64>, ParseError> {
    match present(s) {
        None => Ok(None),
        Some(t) => match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(ParseError::new(
                ParseErrorKind::BadNumber,
                format!("{what} `{}` is not milliseconds", clip(t)),
            )),
        },
    }
}

pub(crate) fn parse_line(line: &str) -> Result<AccessRecord<'_>, ParseError> {
    let t = tokenize(line).map_err(ParseError::malformed)?;
    let istio = match t.len() {
        DEFAULT_FIELDS => false,
        ISTIO_FIELDS => true,
        n => {
            return Err(ParseError::malformed(format!(
                "expected {DEFAULT_FIELDS} (Envoy default) or {ISTIO_FIELDS} (Istio) fields, found {n}"
            )));
        }
    };
    let (Tok::Bracketed(time), Tok::Quoted(request)) = (t[0], t[1]) else {
        return Err(ParseError::malformed(
            "expected [START_TIME] \"REQUEST\" first",
        ));
    };
    let timestamp_us = crate::time::parse_rfc3339(time).ok_or_else(|| {
        ParseError::new(
            ParseErrorKind::BadTimestamp,
            format!("`{}` is not %START_TIME%", clip(time)),
        )
    })?;
    // Index of %BYTES_RECEIVED%: Istio puts three more fields after the flags.
    let b = if istio { 7 } else { 4 };
    let (method, target, protocol) = request_line(request);
    let mut rec = AccessRecord {
        timestamp_us,
        method: method.map(Cow::Borrowed),
        target: target.map(super::text::unescape),
        protocol: protocol.map(Cow::Borrowed),
        status: status(t[2].text())?,
        bytes_in: count(t[b].text(), "%BYTES_RECEIVED%")?,
        bytes_out: count(t[b + 1].text(), "%BYTES_SENT%")?,
        latency_ms: millis(t[b + 2].text(), "%DURATION%")?,
        upstream_latency_ms: millis(t[b + 3].text(), "x-envoy-upstream-service-time")?,
        forwarded_for: field(t[b + 4].text()),
        user_agent: field(t[b + 5].text()),
        request_id: field(t[b + 6].text()),
        host: field(t[b + 7].text()),
        upstream: field(t[b + 8].text()),
        ..Default::default()
    };
    if istio {
        rec.peer = present(t[19].text()).map(Cow::Borrowed);
    }
    Ok(rec)
}

impl LogFormat for Envoy {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>) {
        emit(parse_line(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_istio() {
        let d = r#"[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" "tcp://10.0.2.1:80""#;
        let r = parse_line(d).unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.bytes_in, Some(154));
        assert_eq!(r.latency_ms, Some(226.0));
        assert_eq!(r.host.as_deref(), Some("locations"));
        let i = r#"[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" "curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.44.1.27:80" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default"#;
        let r = parse_line(i).unwrap();
        assert_eq!(r.status, 418);
        assert_eq!(r.peer.as_deref(), Some("10.44.1.23:46520"));
        assert_eq!(r.bytes_out, Some(135));
        assert_eq!(r.forwarded_for, None);
        assert_eq!(
            parse_line("[x] \"GET / HTTP/1.1\"").unwrap_err().kind,
            ParseErrorKind::Malformed
        );
    }

    /// Regression (fuzz/ `parse_envoy`): a negative or non-finite duration is a bad number,
    /// never a latency.
    #[test]
    fn negative_and_non_finite_durations_are_rejected() {
        let line = |d: &str, up: &str| {
            format!(
                r#"[2026-11-24T10:00:03.008Z] "GET /low HTTP/1.1" 200 - 0 0 {d} {up} "-" "-" "e0" "api.example.com" "-""#
            )
        };
        for (d, up) in [
            ("-0001", "-"),
            ("NaN", "-"),
            ("inf", "-"),
            ("1e999", "-"),
            ("5", "-2"),
        ] {
            let err = parse_line(&line(d, up)).unwrap_err();
            assert_eq!(err.kind, ParseErrorKind::BadNumber, "{d} {up}");
        }
        let ok = line("0", "-");
        let r = parse_line(&ok).unwrap();
        assert_eq!((r.latency_ms, r.upstream_latency_ms), (Some(0.0), None));
    }
}
