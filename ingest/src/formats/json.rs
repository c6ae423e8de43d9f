//! The JSON gateway formats as field tables: NGINX `escape=json`, Envoy JSON, Kong `http-log`,
//! AWS API Gateway, Traefik, and the generic `json` whose table is configured.
//!
//! Each event field has a list of candidate paths; the first one present in the line wins.
//! Configured paths (`[sources.NAME.fields]`) go in front of a preset's, so a deployment that
//! logs `jwt_sub` or a custom header adds it without losing the defaults.

use super::{Emit, FormatName, LogFormat};
use crate::error::{IngestError, ParseError, ParseErrorKind};
use crate::json::{Projection, Scalar, Value};
use crate::record::{AccessRecord, Text, clip, present, present_cow};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Unit of a logged duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    Ns,
    Us,
    #[default]
    Ms,
    S,
}

impl DurationUnit {
    fn to_ms(self) -> f64 {
        match self {
            Self::Ns => 1e-6,
            Self::Us => 1e-3,
            Self::Ms => 1.0,
            Self::S => 1e3,
        }
    }
}

/// Candidate JSON paths per event field (dot-separated for nested objects).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonMapping {
    /// RFC 3339, `$time_local`, or epoch seconds/ms/us/ns (told by magnitude).
    pub timestamp: Vec<String>,
    pub request_id: Vec<String>,
    /// The peer address the gateway saw (`1.2.3.4` or `1.2.3.4:port`).
    pub client_ip: Vec<String>,
    pub forwarded_for: Vec<String>,
    pub identity: Vec<String>,
    pub session: Vec<String>,
    /// The raw API key (hashed before it is stored).
    pub api_key: Vec<String>,
    /// A JWT or `Authorization: Bearer` value whose `sub`/`sid` may be read.
    pub jwt: Vec<String>,
    /// A `Cookie` header, searched for the session cookie.
    pub cookie: Vec<String>,
    pub method: Vec<String>,
    pub host: Vec<String>,
    /// Request path, with or without `?query`.
    pub path: Vec<String>,
    /// Query string logged apart from the path.
    pub query: Vec<String>,
    pub protocol: Vec<String>,
    pub status: Vec<String>,
    pub bytes_in: Vec<String>,
    pub bytes_out: Vec<String>,
    pub latency: Vec<String>,
    pub upstream_latency: Vec<String>,
    pub user_agent: Vec<String>,
    pub referer: Vec<String>,
    pub tls_version: Vec<String>,
    pub upstream: Vec<String>,
    /// An API key id already derived with the same salt (`vigil proxy`'s own events carry it
    /// instead of the key); used as is.
    pub api_key_id: Vec<String>,
    /// The action an enforcement point applied to the request (`vigil proxy`'s own events).
    pub enforced: Vec<String>,
    /// A TLS client fingerprint (JA4 or JA3) the gateway or a CDN in front logged.
    pub tls_fingerprint: Vec<String>,
    /// An HTTP client fingerprint (JA4H) the enforcement point computed.
    pub http_fingerprint: Vec<String>,
    /// Unit of `latency`; a preset's unit when unset, else `ms`.
    pub latency_unit: Option<DurationUnit>,
    /// Unit of `upstream_latency`; a preset's unit when unset, else `ms`.
    pub upstream_latency_unit: Option<DurationUnit>,
}

/// Field order of [`JsonMapping`]'s path lists; the index is the field's id below.
const FIELDS: usize = 27;
const TIMESTAMP: usize = 0;
const STATUS: usize = 14;
const BYTES_IN: usize = 15;
const BYTES_OUT: usize = 16;
const LATENCY: usize = 17;
const UPSTREAM_LATENCY: usize = 18;
const FIELD_NAMES: [&str; FIELDS] = [
    "timestamp",
    "request_id",
    "client_ip",
    "forwarded_for",
    "identity",
    "session",
    "api_key",
    "jwt",
    "cookie",
    "method",
    "host",
    "path",
    "query",
    "protocol",
    "status",
    "bytes_in",
    "bytes_out",
    "latency",
    "upstream_latency",
    "user_agent",
    "referer",
    "tls_version",
    "upstream",
    "api_key_id",
    "enforced",
    "tls_fingerprint",
    "http_fingerprint",
];

impl JsonMapping {
    fn lists(&self) -> [&Vec<String>; FIELDS] {
        [
            &self.timestamp,
            &self.request_id,
            &self.client_ip,
            &self.forwarded_for,
            &self.identity,
            &self.session,
            &self.api_key,
            &self.jwt,
            &self.cookie,
            &self.method,
            &self.host,
            &self.path,
            &self.query,
            &self.protocol,
            &self.status,
            &self.bytes_in,
            &self.bytes_out,
            &self.latency,
            &self.upstream_latency,
            &self.user_agent,
            &self.referer,
            &self.tls_version,
            &self.upstream,
            &self.api_key_id,
            &self.enforced,
            &self.tls_fingerprint,
            &self.http_fingerprint,
        ]
    }

    fn lists_mut(&mut self) -> [&mut Vec<String>; FIELDS] {
        [
            &mut self.timestamp,
            &mut self.request_id,
            &mut self.client_ip,
            &mut self.forwarded_for,
            &mut self.identity,
            &mut self.session,
            &mut self.api_key,
            &mut self.jwt,
            &mut self.cookie,
            &mut self.method,
            &mut self.host,
            &mut self.path,
            &mut self.query,
            &mut self.protocol,
            &mut self.status,
            &mut self.bytes_in,
            &mut self.bytes_out,
            &mut self.latency,
            &mut self.upstream_latency,
            &mut self.user_agent,
            &mut self.referer,
            &mut self.tls_version,
            &mut self.upstream,
            &mut self.api_key_id,
            &mut self.enforced,
            &mut self.tls_fingerprint,
            &mut self.http_fingerprint,
        ]
    }

    /// `self`'s paths in front of `base`'s; `self`'s units win.
    pub fn layered_over(&self, base: &JsonMapping) -> JsonMapping {
        let mut out = base.clone();
        for (dst, src) in out.lists_mut().into_iter().zip(self.lists()) {
            let mut merged = src.clone();
            merged.extend(dst.iter().filter(|p| !src.contains(p)).cloned());
            *dst = merged;
        }
        out.latency_unit = self.latency_unit.or(base.latency_unit);
        out.upstream_latency_unit = self.upstream_latency_unit.or(base.upstream_latency_unit);
        out
    }

    /// The preset table of a JSON format (empty for others).
    pub fn preset(format: FormatName) -> JsonMapping {
        fn v(paths: &[&str]) -> Vec<String> {
            paths.iter().map(|s| s.to_string()).collect()
        }
        match format {
            FormatName::NginxJson => JsonMapping {
                timestamp: v(&[
                    "time_iso8601",
                    "msec",
                    "time_local",
                    "timestamp",
                    "@timestamp",
                ]),
                request_id: v(&["request_id", "http_x_request_id"]),
                client_ip: v(&["remote_addr", "realip_remote_addr"]),
                forwarded_for: v(&["http_x_forwarded_for"]),
                identity: v(&["remote_user", "jwt_sub", "http_x_user_id"]),
                session: v(&["cookie_session", "session_id", "http_x_session_id"]),
                api_key: v(&["http_x_api_key", "http_apikey"]),
                jwt: v(&["http_authorization"]),
                cookie: v(&["http_cookie"]),
                method: v(&["request_method"]),
                host: v(&["host", "http_host", "server_name"]),
                path: v(&["request_uri", "uri"]),
                query: v(&["args", "query_string"]),
                protocol: v(&["server_protocol"]),
                status: v(&["status"]),
                bytes_in: v(&["request_length"]),
                bytes_out: v(&["body_bytes_sent", "bytes_sent"]),
                latency: v(&["request_time"]),
                upstream_latency: v(&["upstream_response_time"]),
                user_agent: v(&["http_user_agent"]),
                referer: v(&["http_referer"]),
                tls_version: v(&["ssl_protocol"]),
                upstream: v(&["upstream_addr"]),
                api_key_id: Vec::new(),
                enforced: Vec::new(),
                tls_fingerprint: v(&["ja4", "http_x_ja4", "ja3", "http_x_ja3"]),
                http_fingerprint: v(&["ja4h"]),
                latency_unit: Some(DurationUnit::S),
                upstream_latency_unit: Some(DurationUnit::S),
            },
            FormatName::EnvoyJson => JsonMapping {
                timestamp: v(&["start_time", "timestamp", "@timestamp"]),
                request_id: v(&["request_id", "x_request_id", "x-request-id"]),
                client_ip: v(&[
                    "downstream_remote_address",
                    "downstream_peer_address",
                    "client_ip",
                ]),
                forwarded_for: v(&["x_forwarded_for", "x-forwarded-for"]),
                identity: v(&["identity", "user", "jwt_sub", "x_user_id"]),
                session: v(&["session", "session_id", "x_session_id"]),
                api_key: v(&["x_api_key", "api_key", "x-api-key"]),
                jwt: v(&["authorization", "jwt"]),
                cookie: v(&["cookie"]),
                method: v(&["method", ":method"]),
                host: v(&["authority", ":authority", "host"]),
                path: v(&["path", "x_envoy_original_path", ":path"]),
                query: v(&[]),
                protocol: v(&["protocol"]),
                status: v(&["response_code", "status"]),
                bytes_in: v(&["bytes_received"]),
                bytes_out: v(&["bytes_sent"]),
                latency: v(&["duration"]),
                upstream_latency: v(&["upstream_service_time", "x_envoy_upstream_service_time"]),
                user_agent: v(&["user_agent", "user-agent"]),
                referer: v(&["referer", "referrer"]),
                tls_version: v(&["tls_version", "downstream_tls_version"]),
                upstream: v(&["upstream_host"]),
                api_key_id: Vec::new(),
                enforced: Vec::new(),
                tls_fingerprint: v(&["ja4", "tls_ja4_fingerprint", "ja3", "tls_ja3_fingerprint"]),
                http_fingerprint: v(&["ja4h"]),
                latency_unit: Some(DurationUnit::Ms),
                upstream_latency_unit: Some(DurationUnit::Ms),
            },
            FormatName::Kong => JsonMapping {
                timestamp: v(&["started_at"]),
                request_id: v(&[
                    "request.id",
                    "request.headers.x-request-id",
                    "request.headers.kong-request-id",
                ]),
                client_ip: v(&["client_ip"]),
                forwarded_for: v(&["request.headers.x-forwarded-for"]),
                identity: v(&[
                    "consumer.username",
                    "consumer.custom_id",
                    "consumer.id",
                    "authenticated_entity.id",
                ]),
                session: v(&["request.headers.x-session-id"]),
                api_key: v(&["request.headers.apikey", "request.headers.x-api-key"]),
                jwt: v(&["request.headers.authorization"]),
                cookie: v(&["request.headers.cookie"]),
                method: v(&["request.method"]),
                host: v(&["request.headers.host"]),
                path: v(&["request.uri", "request.url", "upstream_uri"]),
                query: v(&[]),
                protocol: v(&[]),
                status: v(&["response.status"]),
                bytes_in: v(&["request.size"]),
                bytes_out: v(&["response.size"]),
                latency: v(&["latencies.request"]),
                upstream_latency: v(&["latencies.proxy"]),
                user_agent: v(&["request.headers.user-agent"]),
                referer: v(&["request.headers.referer"]),
                tls_version: v(&["request.tls.version"]),
                upstream: v(&["service.host", "upstream_status"]),
                api_key_id: Vec::new(),
                enforced: Vec::new(),
                tls_fingerprint: Vec::new(),
                http_fingerprint: Vec::new(),
                latency_unit: Some(DurationUnit::Ms),
                upstream_latency_unit: Some(DurationUnit::Ms),
            },
            FormatName::AwsApigateway => JsonMapping {
                timestamp: v(&["requestTimeEpoch", "requestTime", "timestamp"]),
                request_id: v(&["requestId", "extendedRequestId"]),
                client_ip: v(&["ip", "sourceIp", "identity.sourceIp"]),
                forwarded_for: v(&["xForwardedFor"]),
                identity: v(&[
                    "sub",
                    "principalId",
                    "claims.sub",
                    "authorizer.claims.sub",
                    "authorizer.principalId",
                    "user",
                    "caller",
                ]),
                session: v(&["sessionId", "sid", "authorizer.claims.sid"]),
                api_key: v(&["apiKeyId", "apiKey", "identity.apiKeyId", "identity.apiKey"]),
                jwt: v(&["authorization"]),
                cookie: v(&["cookie"]),
                method: v(&["httpMethod", "method"]),
                host: v(&["domainName"]),
                path: v(&["path", "resourcePath", "routeKey"]),
                query: v(&[]),
                protocol: v(&["protocol"]),
                status: v(&["status"]),
                bytes_in: v(&["requestLength"]),
                bytes_out: v(&["responseLength"]),
                latency: v(&["responseLatency"]),
                upstream_latency: v(&["integrationLatency"]),
                user_agent: v(&["userAgent", "identity.userAgent"]),
                referer: v(&["referer"]),
                tls_version: v(&["tlsVersion"]),
                upstream: v(&["integrationStatus"]),
                api_key_id: Vec::new(),
                enforced: Vec::new(),
                tls_fingerprint: Vec::new(),
                http_fingerprint: Vec::new(),
                latency_unit: Some(DurationUnit::Ms),
                upstream_latency_unit: Some(DurationUnit::Ms),
            },
            FormatName::TraefikJson => JsonMapping {
                timestamp: v(&["StartUTC", "StartLocal", "time"]),
                request_id: v(&["request_X-Request-Id", "request_X-Request-ID"]),
                client_ip: v(&["ClientAddr", "ClientHost"]),
                forwarded_for: v(&["request_X-Forwarded-For"]),
                identity: v(&["ClientUsername", "request_X-User-Id"]),
                session: v(&["request_X-Session-Id"]),
                api_key: v(&["request_X-Api-Key"]),
                jwt: v(&["request_Authorization"]),
                cookie: v(&["request_Cookie"]),
                method: v(&["RequestMethod"]),
                host: v(&["RequestHost", "RequestAddr"]),
                path: v(&["RequestPath"]),
                query: v(&[]),
                protocol: v(&["RequestProtocol"]),
                status: v(&["DownstreamStatus", "OriginStatus"]),
                bytes_in: v(&["RequestContentSize"]),
                bytes_out: v(&["DownstreamContentSize", "OriginContentSize"]),
                latency: v(&["Duration"]),
                upstream_latency: v(&["OriginDuration"]),
                user_agent: v(&["request_User-Agent"]),
                referer: v(&["request_Referer"]),
                tls_version: v(&["TLSVersion"]),
                upstream: v(&["ServiceAddr"]),
                api_key_id: Vec::new(),
                enforced: Vec::new(),
                tls_fingerprint: v(&["request_X-Ja4", "request_Cf-Ja4", "request_X-Ja3"]),
                http_fingerprint: Vec::new(),
                latency_unit: Some(DurationUnit::Ns),
                upstream_latency_unit: Some(DurationUnit::Ns),
            },
            FormatName::Json => JsonMapping {
                timestamp: v(&["timestamp", "time", "@timestamp", "ts"]),
                request_id: v(&["request_id"]),
                client_ip: v(&["client_ip"]),
                forwarded_for: v(&["forwarded_for"]),
                identity: v(&["identity"]),
                session: v(&["session"]),
                api_key: v(&["api_key"]),
                jwt: v(&["jwt", "authorization"]),
                cookie: v(&["cookie"]),
                method: v(&["method"]),
                host: v(&["host"]),
                path: v(&["path"]),
                query: v(&["query"]),
                protocol: v(&["protocol"]),
                status: v(&["status"]),
                bytes_in: v(&["bytes_in"]),
                bytes_out: v(&["bytes_out"]),
                latency: v(&["latency_ms"]),
                upstream_latency: v(&["upstream_latency_ms"]),
                user_agent: v(&["user_agent"]),
                referer: v(&["referer"]),
                tls_version: v(&["tls_version"]),
                upstream: v(&["upstream"]),
                api_key_id: v(&["api_key_id"]),
                enforced: v(&["enforced"]),
                tls_fingerprint: v(&["tls_fingerprint", "ja4", "ja3"]),
                http_fingerprint: v(&["http_fingerprint", "ja4h"]),
                latency_unit: Some(DurationUnit::Ms),
                upstream_latency_unit: Some(DurationUnit::Ms),
            },
            _ => JsonMapping::default(),
        }
    }
}

/// A JSON format compiled from its table.
pub struct JsonFormat {
    name: &'static str,
    projection: Projection,
    /// The projection slots of every field's candidate paths, field after field, each field's
    /// in priority order; field `f`'s are `candidates[starts[f]..starts[f + 1]]`.
    candidates: Vec<usize>,
    starts: [usize; FIELDS + 1],
    latency_scale: f64,
    upstream_scale: f64,
}

impl JsonFormat {
    /// `user` is layered over the preset of `format`; for `json` an empty `user` means the
    /// default table (the `events` field names).
    pub fn new(format: FormatName, user: &JsonMapping) -> Result<Self, IngestError> {
        let mapping = user.layered_over(&JsonMapping::preset(format));
        for (name, list) in FIELD_NAMES.iter().zip(mapping.lists()) {
            for (i, p) in list.iter().enumerate() {
                if p.is_empty() || p.split('.').any(str::is_empty) {
                    return Err(IngestError::config(
                        format!("fields.{name}[{i}]"),
                        format!("`{p}` is not a field path (keys separated by `.`)"),
                    ));
                }
            }
        }
        if mapping.timestamp.is_empty() || mapping.status.is_empty() {
            return Err(IngestError::config(
                "fields",
                "a JSON mapping needs at least `timestamp` and `status` paths",
            ));
        }
        let all: Vec<&String> = mapping.lists().into_iter().flatten().collect();
        let (projection, slot_of) = Projection::new(&all);
        // `slot_of` lists the slots field after field, in `lists()` order.
        let mut starts = [0; FIELDS + 1];
        for (f, list) in mapping.lists().into_iter().enumerate() {
            starts[f + 1] = starts[f] + list.len();
        }
        Ok(Self {
            name: format.as_str(),
            projection,
            candidates: slot_of,
            starts,
            latency_scale: mapping.latency_unit.unwrap_or_default().to_ms(),
            upstream_scale: mapping.upstream_latency_unit.unwrap_or_default().to_ms(),
        })
    }

    pub(crate) fn parse_line<'a>(&self, line: &'a str) -> Result<AccessRecord<'a>, ParseError> {
        self.projection
            .project_with(line, |vals, unescaped| self.record(line, vals, unescaped))
            .map_err(|e| ParseError::new(ParseErrorKind::InvalidJson, e.to_string()))?
    }

    /// The record from the projected values of `line` (strings with escapes are in
    /// `unescaped`).
    fn record<'a>(
        &self,
        line: &'a str,
        vals: &mut [Value],
        unescaped: &str,
    ) -> Result<AccessRecord<'a>, ParseError> {
        let mut take = |field: usize| self.take(field, vals, line, unescaped);
        let timestamp_us = match take(TIMESTAMP).scalar() {
            None => return Err(ParseError::missing(FIELD_NAMES[TIMESTAMP])),
            Some(v) => timestamp(&v)?,
        };
        let status = match take(STATUS).scalar() {
            None => return Err(ParseError::missing(FIELD_NAMES[STATUS])),
            Some(v) => status_of(&v)?,
        };
        let bytes_in = count(take(BYTES_IN).scalar(), "bytes_in")?;
        let bytes_out = count(take(BYTES_OUT).scalar(), "bytes_out")?;
        let latency_ms = duration(take(LATENCY).scalar(), self.latency_scale, "latency")?;
        let upstream_latency_ms = duration(
            take(UPSTREAM_LATENCY).scalar(),
            self.upstream_scale,
            "upstream_latency",
        )?;
        let mut text = |field: usize| take(field).text();
        Ok(AccessRecord {
            timestamp_us,
            request_id: text(1),
            peer: text(2),
            forwarded_for: text(3),
            identity: text(4),
            session: text(5),
            api_key: text(6),
            api_key_id: text(23),
            jwt: text(7),
            cookie: text(8),
            method: text(9),
            host: text(10),
            target: text(11),
            query: text(12),
            protocol: text(13),
            status,
            bytes_in,
            bytes_out,
            latency_ms,
            upstream_latency_ms,
            user_agent: text(19),
            referer: text(20),
            tls_version: text(21),
            upstream: text(22),
            enforced: text(24),
            tls_fingerprint: text(25),
            http_fingerprint: text(26),
            found: None,
        })
    }
}

impl JsonFormat {
    /// The first candidate of `field` that is present. Every candidate looked at is used up,
    /// as a path listed for two fields goes to the first field that takes it.
    #[inline(always)]
    fn take<'a, 'u>(
        &self,
        field: usize,
        vals: &mut [Value],
        line: &'a str,
        unescaped: &'u str,
    ) -> Got<'a, 'u> {
        let cands = self
            .candidates
            .get(self.starts[field]..self.starts[field + 1])
            .unwrap_or_default();
        for &s in cands {
            let Some(slot) = vals.get_mut(s) else {
                continue;
            };
            // an empty or "-" string does not hide a later candidate
            match *slot {
                Value::Absent => continue,
                Value::Raw { start, end } => {
                    *slot = Value::Absent;
                    let raw = line.get(start..end).unwrap_or_default();
                    if let Some(t) = present(raw) {
                        return Got::Line(raw, t);
                    }
                }
                Value::Unescaped { start, end } => {
                    *slot = Value::Absent;
                    let raw = unescaped.get(start..end).unwrap_or_default();
                    if let Some(t) = present(raw) {
                        return Got::Unescaped(raw, t);
                    }
                }
                v => {
                    *slot = Value::Absent;
                    return Got::Other(v);
                }
            }
        }
        Got::Absent
    }
}

/// A field's value: a string as logged and without its surrounding whitespace (of the line,
/// or of the unescape buffer), or a number or boolean.
enum Got<'a, 'u> {
    Absent,
    Line(&'a str, &'a str),
    Unescaped(&'u str, &'u str),
    Other(Value),
}

impl<'a> Got<'a, '_> {
    fn scalar(self) -> Option<Scalar<'a>> {
        match self {
            Got::Absent => None,
            Got::Line(raw, _) => Some(Scalar::Str(Cow::Borrowed(raw))),
            Got::Unescaped(raw, _) => Some(Scalar::Str(Cow::Owned(raw.into()))),
            // not a string: nothing to borrow
            Got::Other(v) => v.scalar("", ""),
        }
    }

    fn text(self) -> Text<'a> {
        match self {
            Got::Absent => None,
            Got::Line(_, t) => Some(Cow::Borrowed(t)),
            Got::Unescaped(_, t) => Some(Cow::Owned(t.into())),
            Got::Other(v) => present_cow(v.scalar("", "")?.into_text()),
        }
    }
}

fn timestamp(v: &Scalar<'_>) -> Result<i64, ParseError> {
    let ts = match v {
        Scalar::Str(s) => crate::time::parse_any(s),
        other => other
            .as_f64()
            .ok()
            .flatten()
            .and_then(crate::time::from_epoch_auto),
    };
    ts.ok_or_else(|| {
        ParseError::new(
            ParseErrorKind::BadTimestamp,
            format!("`{}` is not a timestamp", clip(&v.clone().into_text())),
        )
    })
}

fn status_of(v: &Scalar<'_>) -> Result<u16, ParseError> {
    match v.as_f64() {
        Ok(Some(f)) if (0.0..=999.0).contains(&f) && f.fract() == 0.0 => Ok(f as u16),
        _ => Err(ParseError::new(
            ParseErrorKind::BadStatus,
            format!(
                "status `{}` is not an HTTP status code",
                clip(&v.clone().into_text())
            ),
        )),
    }
}

fn count(v: Option<Scalar<'_>>, what: &str) -> Result<Option<u64>, ParseError> {
    let Some(v) = v else { return Ok(None) };
    match v.as_f64() {
        Ok(None) => Ok(None),
        Ok(Some(f)) if f >= 0.0 && f.is_finite() && f < 1.8e19 => Ok(Some(f as u64)),
        _ => Err(ParseError::new(
            ParseErrorKind::BadNumber,
            format!("{what} `{}` is not a count", clip(&v.into_text())),
        )),
    }
}

fn duration(v: Option<Scalar<'_>>, scale: f64, what: &str) -> Result<Option<f64>, ParseError> {
    let Some(v) = v else { return Ok(None) };
    let secs = match &v {
        // A plain count of units (`"203"`) reads as `duration_sum` reads it, sooner;
        // "0.010, 0.020": one duration per upstream tried.
        Scalar::Str(s) => match crate::json::digits_f64(s) {
            Some(n) => Some(Some(n)),
            None => super::text::duration_sum(s).ok(),
        },
        // Negative means "not measured" (Kong logs -1 for requests that never reached the
        // upstream): absent, not an error.
        other => match other.as_f64() {
            Ok(Some(f)) if f.is_finite() => Some((f >= 0.0).then_some(f)),
            Ok(None) => Some(None),
            _ => None,
        },
    };
    secs.map(|o| o.map(|x| x * scale)).ok_or_else(|| {
        ParseError::new(
            ParseErrorKind::BadNumber,
            format!("{what} `{}` is not a duration", clip(&v.into_text())),
        )
    })
}

impl LogFormat for JsonFormat {
    fn name(&self) -> &'static str {
        self.name
    }

    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>) {
        // `parse_line`, with the record handed on where it is built rather than moved out
        // through the projection's scratch buffers (it is some 600 bytes).
        let done = self.projection.project_with(line, |vals, unescaped| {
            emit(self.record(line, vals, unescaped))
        });
        if let Err(e) = done {
            emit(Err(ParseError::new(
                ParseErrorKind::InvalidJson,
                e.to_string(),
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: FormatName) -> JsonFormat {
        JsonFormat::new(f, &JsonMapping::default()).unwrap()
    }

    #[test]
    fn user_paths_win_and_bad_paths_are_named() {
        let user = JsonMapping {
            identity: vec!["claims.user".into()],
            ..Default::default()
        };
        let f = JsonFormat::new(FormatName::EnvoyJson, &user).unwrap();
        let r = f
            .parse_line(r#"{"start_time":"2026-11-24T10:00:00Z","response_code":200,"user":"u1","claims":{"user":"u2"}}"#)
            .unwrap();
        assert_eq!(r.identity.as_deref(), Some("u2"));
        let bad = JsonMapping {
            session: vec!["a..b".into()],
            ..Default::default()
        };
        let e = JsonFormat::new(FormatName::Json, &bad)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fields.session[0]"), "{e}");
    }

    #[test]
    fn placeholders_fall_through_and_units_apply() {
        let f = fmt(FormatName::NginxJson);
        let r = f
            .parse_line(r#"{"time_iso8601":"","msec":"1795996800.500","status":"404","request_time":"0.250","upstream_response_time":"0.1, 0.05","remote_user":"","body_bytes_sent":"-"}"#)
            .unwrap();
        assert_eq!(r.timestamp_us, 1_795_996_800_500_000);
        assert_eq!(r.status, 404);
        assert_eq!(r.latency_ms, Some(250.0));
        assert!((r.upstream_latency_ms.unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(r.identity, None);
        assert_eq!(r.bytes_out, None);
        let t = fmt(FormatName::TraefikJson);
        let r = t
            .parse_line(r#"{"StartUTC":"2026-11-24T10:00:00.123456789Z","DownstreamStatus":200,"Duration":12000000}"#)
            .unwrap();
        assert_eq!(r.latency_ms, Some(12.0));
    }

    #[test]
    fn errors_have_kinds() {
        let f = fmt(FormatName::Kong);
        let k = |l: &str| f.parse_line(l).unwrap_err().kind;
        assert_eq!(k("{"), ParseErrorKind::InvalidJson);
        assert_eq!(
            k(r#"{"response":{"status":200}}"#),
            ParseErrorKind::MissingField
        );
        assert_eq!(
            k(r#"{"started_at":"soon","response":{"status":200}}"#),
            ParseErrorKind::BadTimestamp
        );
        assert_eq!(
            k(r#"{"started_at":1,"response":{"status":1000}}"#),
            ParseErrorKind::BadStatus
        );
        assert_eq!(
            k(r#"{"started_at":1795996800000,"response":{"status":200,"size":"big"}}"#),
            ParseErrorKind::BadNumber
        );
    }

    /// Gateways' real lines (the simulator's) go through the fast walker without falling back,
    /// and parse as they did with serde_json alone.
    #[test]
    fn simulated_lines_take_the_fast_path() {
        use crate::simulate::{SimConfig, SimFormat, Simulation, write_logs};
        let sim = Simulation::new(SimConfig {
            benign_users: 50,
            duration_secs: 600,
            ..Default::default()
        })
        .unwrap();
        for name in [
            FormatName::NginxJson,
            FormatName::EnvoyJson,
            FormatName::Kong,
            FormatName::AwsApigateway,
            FormatName::TraefikJson,
            FormatName::Json,
        ] {
            let f = fmt(name);
            let mut out = Vec::new();
            write_logs(
                &sim,
                name.as_str().parse::<SimFormat>().unwrap(),
                Some(2000),
                &mut out,
            )
            .unwrap();
            let text = String::from_utf8(out).unwrap();
            for line in text.lines() {
                assert!(f.projection.is_fast_for(line), "{name}: {line}");
                let mut want = Vec::new();
                f.projection.extract(line, &mut want).unwrap();
                let mut got = vec![Value::Absent; f.projection.slots()];
                let mut unescaped = String::new();
                f.projection
                    .project(line, &mut got, &mut unescaped)
                    .unwrap();
                let got: Vec<_> = got.iter().map(|v| v.scalar(line, &unescaped)).collect();
                assert_eq!(got, want, "{name}: {line}");
            }
        }
    }
}
