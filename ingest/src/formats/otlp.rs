//! OpenTelemetry logs in the OTLP/JSON encoding: one `ExportLogsServiceRequest` per line (as
//! the Collector's file exporter writes them, and as `POST /v1/logs` receives them).
//!
//! A log record is an access event when its attributes carry the HTTP semantic conventions
//! (`http.request.method`, `url.path`, `http.response.status_code`, `client.address`, ...); a
//! record without them whose body is a text line (Envoy's OpenTelemetry access logger sends the
//! formatted line as the body) is parsed as an NGINX or Envoy line.

use super::{Emit, FormatOptions, LogFormat};
use crate::error::{IngestError, ParseError, ParseErrorKind};
use crate::json::CowStr;
use crate::record::{AccessRecord, present_cow};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

pub struct Otlp;

impl Otlp {
    pub fn new(opts: &FormatOptions) -> Result<Self, IngestError> {
        if opts.fields != Default::default() {
            return Err(IngestError::config(
                "fields",
                "the `otlp` format reads the HTTP semantic-convention attributes; it has no field mapping",
            ));
        }
        Ok(Otlp)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Export<'a> {
    #[serde(borrow, default)]
    resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogs<'a> {
    #[serde(borrow, default)]
    scope_logs: Vec<ScopeLogs<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogs<'a> {
    #[serde(borrow, default)]
    log_records: Vec<LogRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogRecord<'a> {
    #[serde(borrow, default)]
    time_unix_nano: Option<Num<'a>>,
    #[serde(borrow, default)]
    observed_time_unix_nano: Option<Num<'a>>,
    #[serde(borrow, default)]
    body: Option<AnyValue<'a>>,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: CowStr<'a>,
    #[serde(borrow, default)]
    value: Option<AnyValue<'a>>,
}

/// OTLP/JSON writes 64-bit integers as strings; accept numbers too.
///
/// Read as `#[serde(untagged)]` would read `Int(i64) | Float(f64) | Str(CowStr)`, with the
/// same result and the same error for anything else, but without buffering the value and
/// building an error message for each variant that does not match (the quoted integers OTLP
/// is made of fail two variants each). `tests::UntaggedNum` is the derived original.
enum Num<'a> {
    Int(i64),
    Float(f64),
    Str(CowStr<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Num<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The error is raised here, after the value, as the derived code raises it (which
        // makes serde_json place it where it placed the original's).
        d.deserialize_any(NumVisitor(PhantomData))?
            .ok_or_else(|| de::Error::custom("data did not match any variant of untagged enum Num"))
    }
}

struct NumVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for NumVisitor<'a> {
    /// `None`: no variant matches.
    type Value = Option<Num<'a>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a string")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Num::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // beyond i64, `Int` fails and `Float` takes it
        Ok(Some(
            i64::try_from(v).map_or(Num::Float(v as f64), Num::Int),
        ))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Num::Float(v)))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Num::Str(CowStr(Cow::Borrowed(v)))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Num::Str(CowStr(Cow::Owned(v.to_owned())))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Num::Str(CowStr(Cow::Owned(v)))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Content)?.is_some() {
            map.next_value_seed(Content)?;
        }
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Content)?.is_some() {}
        Ok(None)
    }
}

/// Reads any value as serde's buffered `Content` does (everything through `deserialize_any`,
/// so numbers are range-checked and strings unescaped), keeping nothing.
struct Content;

impl<'de> DeserializeSeed<'de> for Content {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Content)
    }
}

impl<'de> Visitor<'de> for Content {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Content)?.is_some() {
            map.next_value_seed(Content)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Content)?.is_some() {}
        Ok(())
    }
}

impl Num<'_> {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Num::Int(v) => Some(*v as f64),
            Num::Float(v) => Some(*v),
            Num::Str(s) => s.0.trim().parse().ok(),
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self {
            Num::Int(v) => Some(*v),
            Num::Float(v) if v.fract() == 0.0 => Some(*v as i64),
            Num::Float(_) => None,
            Num::Str(s) => s.0.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    #[serde(borrow, default)]
    string_value: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    int_value: Option<Num<'a>>,
    #[serde(default)]
    double_value: Option<f64>,
}

impl<'a> AnyValue<'a> {
    fn text(self) -> Option<Cow<'a, str>> {
        if let Some(s) = self.string_value {
            return present_cow(s.0);
        }
        if let Some(n) = self.int_value {
            return n.as_i64().map(|v| Cow::Owned(v.to_string()));
        }
        self.double_value.map(|v| Cow::Owned(v.to_string()))
    }
    fn number(&self) -> Option<f64> {
        if let Some(n) = &self.int_value {
            return n.as_f64();
        }
        if self.double_value.is_some() {
            return self.double_value;
        }
        self.string_value
            .as_ref()
            .and_then(|s| s.0.trim().parse().ok())
    }
}

fn record<'a>(lr: LogRecord<'a>) -> Result<AccessRecord<'a>, ParseError> {
    let time_ns = lr
        .time_unix_nano
        .as_ref()
        .and_then(Num::as_i64)
        .filter(|t| *t > 0)
        .or_else(|| {
            lr.observed_time_unix_nano
                .as_ref()
                .and_then(Num::as_i64)
                .filter(|t| *t > 0)
        });
    let mut rec = AccessRecord::default();
    let mut status: Option<f64> = None;
    let mut duration_s: Option<f64> = None;
    for kv in lr.attributes {
        let Some(v) = kv.value else { continue };
        let k: &str = &kv.key.0;
        match k {
            "http.request.method" | "http.method" => rec.method = v.text(),
            "url.path" => rec.target = v.text(),
            "http.target" | "url.full" | "http.url" if rec.target.is_none() => {
                rec.target = v.text()
            }
            "url.query" => rec.query = v.text(),
            "http.response.status_code" | "http.status_code" => status = v.number(),
            "client.address" | "http.client_ip" | "source.address" | "net.sock.peer.addr" => {
                rec.peer = v.text()
            }
            "server.address" | "http.host" | "http.request.header.host" => rec.host = v.text(),
            "user_agent.original" | "http.user_agent" | "http.request.header.user-agent" => {
                rec.user_agent = v.text()
            }
            "http.request.body.size" | "http.request_content_length" => {
                rec.bytes_in = v.number().filter(|n| *n >= 0.0).map(|n| n as u64)
            }
            "http.response.body.size" | "http.response_content_length" => {
                rec.bytes_out = v.number().filter(|n| *n >= 0.0).map(|n| n as u64)
            }
            "http.server.request.duration" => duration_s = v.number(),
            "http.server.duration" | "duration_ms" => duration_s = v.number().map(|ms| ms / 1000.0),
            "enduser.id" | "user.id" => rec.identity = v.text(),
            "session.id" => rec.session = v.text(),
            "http.request.header.authorization" => rec.jwt = v.text(),
            "http.request.header.x-api-key" => rec.api_key = v.text(),
            "http.request.header.cookie" => rec.cookie = v.text(),
            "http.request.header.referer" => rec.referer = v.text(),
            "http.request.header.x-request-id" | "http.request.id" => rec.request_id = v.text(),
            "http.request.header.x-forwarded-for" => rec.forwarded_for = v.text(),
            "tls.protocol.version" => rec.tls_version = v.text(),
            "tls.client.ja4" => rec.tls_fingerprint = v.text(),
            "tls.client.ja3" if rec.tls_fingerprint.is_none() => rec.tls_fingerprint = v.text(),
            "http.request.ja4h" => rec.http_fingerprint = v.text(),
            "network.protocol.version" => rec.protocol = v.text(),
            "upstream.address" | "server.upstream.address" => rec.upstream = v.text(),
            _ => {}
        }
    }
    if status.is_none() && rec.method.is_none() {
        // No HTTP attributes: maybe the body is a formatted access-log line.
        if let Some(line) = lr.body.and_then(|b| b.string_value) {
            return super::auto::parse_text_line(&line.0)
                .map(AccessRecord::into_owned)
                .map_err(|e| {
                    ParseError::new(
                        ParseErrorKind::MissingField,
                        format!(
                            "log record has no HTTP attributes and its body is not an access-log line ({e})"
                        ),
                    )
                });
        }
        return Err(ParseError::new(
            ParseErrorKind::MissingField,
            "log record has no HTTP attributes (http.response.status_code) and no text body",
        ));
    }
    let Some(ns) = time_ns else {
        return Err(ParseError::missing("timeUnixNano"));
    };
    rec.timestamp_us = ns / 1000;
    rec.status = match status {
        Some(s) if (0.0..=999.0).contains(&s) && s.fract() == 0.0 => s as u16,
        Some(s) => {
            return Err(ParseError::new(
                ParseErrorKind::BadStatus,
                format!("status {s} is not an HTTP status code"),
            ));
        }
        None => return Err(ParseError::missing("http.response.status_code")),
    };
    rec.latency_ms = duration_s
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| d * 1000.0);
    Ok(rec)
}

impl LogFormat for Otlp {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>) {
        let export: Export<'a> = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                emit(Err(ParseError::new(
                    ParseErrorKind::InvalidJson,
                    e.to_string(),
                )));
                return;
            }
        };
        let mut any = false;
        for rl in export.resource_logs {
            for sl in rl.scope_logs {
                for lr in sl.log_records {
                    any = true;
                    emit(record(lr));
                }
            }
        }
        if !any {
            emit(Err(ParseError::missing(
                "resourceLogs[].scopeLogs[].logRecords",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original, derived `Num` (same name, so the same error message).
    mod reference {
        use super::super::CowStr;
        use serde::Deserialize;

        #[derive(Deserialize)]
        #[serde(untagged)]
        pub enum Num<'a> {
            Int(i64),
            Float(f64),
            #[serde(borrow)]
            Str(CowStr<'a>),
        }
    }
    use reference::Num as UntaggedNum;

    #[derive(Deserialize)]
    struct Holder<N> {
        #[serde(default)]
        #[allow(dead_code)]
        a: Option<serde_json::Value>,
        n: Option<N>,
    }

    fn show(n: &Num<'_>) -> String {
        match n {
            Num::Int(v) => format!("int {v}"),
            Num::Float(v) => format!("float {:?}", v.to_bits()),
            Num::Str(s) => format!("str {:?} {}", s.0, matches!(s.0, Cow::Borrowed(_))),
        }
    }

    fn show_untagged(n: &UntaggedNum<'_>) -> String {
        match n {
            UntaggedNum::Int(v) => format!("int {v}"),
            UntaggedNum::Float(v) => format!("float {:?}", v.to_bits()),
            UntaggedNum::Str(s) => format!("str {:?} {}", s.0, matches!(s.0, Cow::Borrowed(_))),
        }
    }

    /// Same values (and borrowing) and same errors, positions included, as the derived enum.
    fn same_as_untagged(doc: &str) {
        let new = serde_json::from_str::<Holder<Num<'_>>>(doc)
            .map(|h| h.n.as_ref().map(show))
            .map_err(|e| e.to_string());
        let old = serde_json::from_str::<Holder<UntaggedNum<'_>>>(doc)
            .map(|h| h.n.as_ref().map(show_untagged))
            .map_err(|e| e.to_string());
        assert_eq!(new, old, "{doc}");
    }

    #[test]
    fn num_reads_as_the_untagged_enum() {
        let values = [
            "0",
            "-1",
            "200",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1.5",
            "-0",
            "1e3",
            "1e400",
            "\"200\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "true",
            "false",
            "null",
            "{}",
            "[]",
            "{\"a\":1}",
            "[1,\"x\",{\"b\":[2]}]",
            "{\"a\":1e400}",
            "[1e400]",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":}",
            "[1,]",
            "tru",
            "\"unterminated",
            "01",
        ];
        for v in values {
            for doc in [
                format!("{{\"n\":{v}}}"),
                format!("{{\"n\": {v} }}"),
                format!("{{\"n\":{v},\"a\":1}}"),
                format!("{{\"a\":[1],\n\"n\":{v}\n}}"),
            ] {
                same_as_untagged(&doc);
            }
        }
        let deep = format!("{{\"n\":{}1{}}}", "[".repeat(130), "]".repeat(130));
        same_as_untagged(&deep);
    }

    #[test]
    fn attributes_and_body_lines() {
        let line = r#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[
          {"timeUnixNano":"1795996800000000000","attributes":[
            {"key":"http.request.method","value":{"stringValue":"GET"}},
            {"key":"url.path","value":{"stringValue":"/a/1"}},
            {"key":"http.response.status_code","value":{"intValue":"503"}},
            {"key":"http.server.request.duration","value":{"doubleValue":0.25}},
            {"key":"enduser.id","value":{"stringValue":"bob"}}]},
          {"timeUnixNano":"0","body":{"stringValue":"[2026-11-24T00:00:00.000Z] \"GET /x HTTP/1.1\" 200 - 0 1 2 1 \"1.2.3.4\" \"ua\" \"id\" \"h\" \"u\""}},
          {"timeUnixNano":"1","attributes":[{"key":"http.response.status_code","value":{"intValue":"2000"}}]}
        ]}]}]}"#;
        let out = super::super::parse_collect(&Otlp, line);
        assert_eq!(out.len(), 3);
        let a = out[0].as_ref().unwrap();
        assert_eq!(
            (a.status, a.latency_ms, a.identity.as_deref()),
            (503, Some(250.0), Some("bob"))
        );
        assert_eq!(out[1].as_ref().unwrap().target.as_deref(), Some("/x"));
        assert_eq!(out[2].as_ref().unwrap_err().kind, ParseErrorKind::BadStatus);
        let bad = super::super::parse_collect(&Otlp, "{\"resourceLogs\":[]}");
        assert_eq!(
            bad[0].as_ref().unwrap_err().kind,
            ParseErrorKind::MissingField
        );
    }
}
