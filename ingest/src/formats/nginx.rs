//! NGINX `combined`:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! ```
//!
//! optionally followed by `"$http_x_forwarded_for"` (NGINX's stock `main` format) and/or
//! `$request_time $upstream_response_time` (seconds; the upstream time may list several
//! upstreams, which are summed). `$remote_user` is the identity when set.

use super::text::{Tok, count, duration_sum, field, request_line, status, tokenize};
use super::{Emit, LogFormat};
use crate::error::{ParseError, ParseErrorKind};
use crate::record::{AccessRecord, clip, present};
use std::borrow::Cow;

pub struct Nginx;

fn seconds_to_ms(s: &str, what: &str) -> Result<Option<f64>, ParseError> {
    duration_sum(s)
        .map(|v| v.map(|s| s * 1000.0))
        .map_err(|()| {
            ParseError::new(
                ParseErrorKind::BadNumber,
                format!("{what} `{}` is not a duration", clip(s)),
            )
        })
}

pub(crate) fn parse_line(line: &str) -> Result<AccessRecord<'_>, ParseError> {
    let toks = tokenize(line).map_err(ParseError::malformed)?;
    parse_tokens(&toks)
}

fn parse_tokens<'a>(t: &[Tok<'a>]) -> Result<AccessRecord<'a>, ParseError> {
    if t.len() < 9 {
        return Err(ParseError::malformed(format!(
            "expected at least 9 fields of NGINX combined, found {}",
            t.len()
        )));
    }
    let (Tok::Bracketed(time), Tok::Quoted(request), Tok::Quoted(referer), Tok::Quoted(ua)) =
        (t[3], t[4], t[7], t[8])
    else {
        return Err(ParseError::malformed(
            "fields 4, 5, 8 and 9 must be [time], \"request\", \"referer\", \"user agent\"",
        ));
    };
    let timestamp_us = crate::time::parse_clf(time).ok_or_else(|| {
        ParseError::new(
            ParseErrorKind::BadTimestamp,
            format!("`{}` is not $time_local", clip(time)),
        )
    })?;
    let (method, target, protocol) = request_line(request);
    let mut rec = AccessRecord {
        timestamp_us,
        peer: present(t[0].text()).map(Cow::Borrowed),
        identity: field(t[2].text()),
        method: method.map(Cow::Borrowed),
        target: target.map(super::text::unescape),
        protocol: protocol.map(Cow::Borrowed),
        status: status(t[5].text())?,
        bytes_out: count(t[6].text(), "$body_bytes_sent")?,
        referer: field(referer),
        user_agent: field(ua),
        ..Default::default()
    };
    let mut rest = &t[9..];
    if let Some(Tok::Quoted(xff)) = rest.first() {
        rec.forwarded_for = field(xff);
        rest = &rest[1..];
    }
    if let Some(first) = rest.first() {
        rec.latency_ms = seconds_to_ms(first.text(), "$request_time")?;
        // `$upstream_response_time` may be `0.010, 0.020 : 0.005`: several tokens, summed.
        for tok in &rest[1..] {
            if let Some(ms) = seconds_to_ms(tok.text(), "$upstream_response_time")? {
                *rec.upstream_latency_ms.get_or_insert(0.0) += ms;
            }
        }
    }
    Ok(rec)
}

impl LogFormat for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>) {
        emit(parse_line(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_with_times_and_xff() {
        let l = r#"203.0.113.7 - alice [24/Nov/2026:10:00:00 +0000] "GET /api/v1/items/12?x=1 HTTP/1.1" 200 5123 "-" "curl/8.5.0" "198.51.100.1" 0.012 0.004, 0.006"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.identity.as_deref(), Some("alice"));
        assert_eq!(r.forwarded_for.as_deref(), Some("198.51.100.1"));
        assert_eq!(r.latency_ms, Some(12.0));
        assert!((r.upstream_latency_ms.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(r.referer, None);
        let bad = r#"1.2.3.4 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 2x0 1 "-" "-""#;
        assert_eq!(parse_line(bad).unwrap_err().kind, ParseErrorKind::BadStatus);
        assert_eq!(
            parse_line("garbage").unwrap_err().kind,
            ParseErrorKind::Malformed
        );
    }
}
