//! Rendering a [`SimRequest`] as one access-log line of each supported gateway format.
//!
//! Every renderer appends to a caller-owned `String` (no trailing newline) and allocates
//! nothing itself: numbers and timestamps are written by hand, JSON strings are escaped by a
//! small escaper checked against serde_json. Absent values follow each gateway's convention:
//! `-` in text formats, `""` in nginx JSON, `null` in Envoy JSON, `-` in AWS's substitutions,
//! and omission in Kong, Traefik, OTLP and vigil's generic JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SimRequest;
use super::config::SimError;
use super::text::{
    Frac, ms_round, ms_to_us, push_clf, push_fixed, push_iso8601_offset, push_json_str, push_key,
    push_msec, push_nginx_escaped, push_rfc3339, push_secs3, push_u64, unix_ms,
};
use super::traffic::service_name;

/// `service.name` of the OTLP resource written by [`render`] and [`super::write_logs`].
pub const DEFAULT_OTLP_SERVICE: &str = "edge-gateway";

/// A gateway access-log format the simulator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimFormat {
    /// nginx `combined` plus `$request_time $upstream_response_time`.
    Nginx,
    /// nginx `log_format ... escape=json` with the usual variables.
    NginxJson,
    /// Envoy's default text access-log format.
    Envoy,
    /// Envoy's JSON access log with the default format's fields and a few headers.
    EnvoyJson,
    /// Kong's http-log plugin payload.
    Kong,
    /// AWS API Gateway (REST) JSON access log.
    AwsApigateway,
    /// Traefik's JSON access log with kept request headers.
    TraefikJson,
    /// OTLP/JSON `ExportLogsServiceRequest`, one per line.
    Otlp,
    /// vigil's generic JSON mapping (the events schema's names).
    Json,
}

const FORMAT_NAMES: &str =
    "nginx, nginx-json, envoy, envoy-json, kong, aws-apigateway, traefik-json, otlp, json";

impl SimFormat {
    /// Every format, in a fixed order.
    pub const ALL: [SimFormat; 9] = [
        SimFormat::Nginx,
        SimFormat::NginxJson,
        SimFormat::Envoy,
        SimFormat::EnvoyJson,
        SimFormat::Kong,
        SimFormat::AwsApigateway,
        SimFormat::TraefikJson,
        SimFormat::Otlp,
        SimFormat::Json,
    ];

    /// The format's name, as the CLI and the parsers spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SimFormat::Nginx => "nginx",
            SimFormat::NginxJson => "nginx-json",
            SimFormat::Envoy => "envoy",
            SimFormat::EnvoyJson => "envoy-json",
            SimFormat::Kong => "kong",
            SimFormat::AwsApigateway => "aws-apigateway",
            SimFormat::TraefikJson => "traefik-json",
            SimFormat::Otlp => "otlp",
            SimFormat::Json => "json",
        }
    }

    /// Whether lines are JSON documents.
    pub fn is_json(&self) -> bool {
        !matches!(self, SimFormat::Nginx | SimFormat::Envoy)
    }
}

impl fmt::Display for SimFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SimFormat {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        SimFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted || f.as_str().replace('-', "_") == wanted)
            .ok_or_else(|| SimError::UnknownFormat {
                name: s.to_owned(),
                expected: FORMAT_NAMES,
            })
    }
}

/// Appends `req` as one line of `format`, without the trailing newline. OTLP writes a request
/// of one record (see [`render_otlp_batch`] for many records per line).
pub fn render(format: SimFormat, req: &SimRequest, out: &mut String) {
    match format {
        SimFormat::Nginx => nginx(req, out),
        SimFormat::NginxJson => nginx_json(req, out),
        SimFormat::Envoy => envoy(req, out),
        SimFormat::EnvoyJson => envoy_json(req, out),
        SimFormat::Kong => kong(req, out),
        SimFormat::AwsApigateway => aws(req, out),
        SimFormat::TraefikJson => traefik(req, out),
        SimFormat::Otlp => render_otlp_batch(std::slice::from_ref(req), DEFAULT_OTLP_SERVICE, out),
        SimFormat::Json => json(req, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A client source port, stable per request (derived from the request id).
fn client_port(req: &SimRequest) -> u64 {
    32_768 + xxhash_rust::xxh3::xxh3_64(req.request_id.as_bytes()) % 28_000
}

/// The `X-Forwarded-For` a gateway forwards: the received chain plus the client address.
fn push_xff_chain(out: &mut String, req: &SimRequest, sep: &str) {
    for f in &req.forwarded_for {
        out.push_str(f);
        out.push_str(sep);
    }
    out.push_str(&req.client_ip);
}

fn join_forwarded(req: &SimRequest, sep: &str) -> String {
    req.forwarded_for.join(sep)
}

/// `"key":"value",` with JSON escaping.
fn kv(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_str(out, value);
    out.push(',');
}

/// `"key":123,`
fn kn(out: &mut String, key: &str, value: u64) {
    push_key(out, key);
    push_u64(out, value);
    out.push(',');
}

/// `"key":"123",`
fn kns(out: &mut String, key: &str, value: u64) {
    push_key(out, key);
    out.push('"');
    push_u64(out, value);
    out.push_str("\",");
}

/// `"key":"value",` or `"key":null,`
fn kv_or_null(out: &mut String, key: &str, value: Option<&str>) {
    push_key(out, key);
    match value {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
    out.push(',');
}

/// Replaces a trailing `,` with `close`.
fn close(out: &mut String, close: char) {
    if out.ends_with(',') {
        out.pop();
    }
    out.push(close);
}

fn bearer(jwt: &str) -> String {
    let mut s = String::with_capacity(7 + jwt.len());
    s.push_str("Bearer ");
    s.push_str(jwt);
    s
}

/// A quoted text field with nginx escaping, or `"-"`.
fn quoted_or_dash(out: &mut String, v: Option<&str>) {
    out.push('"');
    match v {
        Some(v) => push_nginx_escaped(out, v, false),
        None => out.push('-'),
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Formats.

fn nginx(r: &SimRequest, out: &mut String) {
    match nonempty(&r.client_ip) {
        Some(ip) => push_nginx_escaped(out, ip, true),
        None => out.push('-'),
    }
    out.push_str(" - ");
    match r.identity.as_deref().and_then(nonempty) {
        Some(id) => push_nginx_escaped(out, id, true),
        None => out.push('-'),
    }
    out.push_str(" [");
    push_clf(out, r.timestamp_us);
    out.push_str("] \"");
    push_nginx_escaped(out, r.method, false);
    out.push(' ');
    push_nginx_escaped(out, &r.path, true);
    out.push_str(" HTTP/1.1\" ");
    push_u64(out, u64::from(r.status));
    out.push(' ');
    push_u64(out, r.bytes_out);
    out.push(' ');
    quoted_or_dash(out, r.referer.as_deref().and_then(nonempty));
    out.push(' ');
    quoted_or_dash(out, nonempty(&r.user_agent));
    out.push(' ');
    push_secs3(out, r.latency_ms);
    out.push(' ');
    push_secs3(out, r.upstream_latency_ms);
}

fn nginx_json(r: &SimRequest, out: &mut String) {
    out.push('{');
    push_key(out, "time_iso8601");
    out.push('"');
    push_iso8601_offset(out, r.timestamp_us);
    out.push_str("\",");
    push_key(out, "msec");
    out.push('"');
    push_msec(out, r.timestamp_us);
    out.push_str("\",");
    kv(out, "remote_addr", &r.client_ip);
    kv(out, "remote_user", r.identity.as_deref().unwrap_or(""));
    kv(out, "request_id", &r.request_id);
    kv(out, "request_method", r.method);
    kv(out, "host", &r.host);
    kv(out, "request_uri", &r.path);
    kv(out, "server_protocol", "HTTP/1.1");
    kns(out, "status", u64::from(r.status));
    kns(out, "request_length", r.bytes_in);
    kns(out, "body_bytes_sent", r.bytes_out);
    push_key(out, "request_time");
    out.push('"');
    push_secs3(out, r.latency_ms);
    out.push_str("\",");
    push_key(out, "upstream_response_time");
    out.push('"');
    push_secs3(out, r.upstream_latency_ms);
    out.push_str("\",");
    kv(out, "upstream_addr", &r.upstream);
    kv(out, "http_user_agent", &r.user_agent);
    kv(out, "http_referer", r.referer.as_deref().unwrap_or(""));
    kv(out, "http_x_forwarded_for", &join_forwarded(r, ", "));
    match &r.jwt {
        Some(j) => kv(out, "http_authorization", &bearer(j)),
        None => kv(out, "http_authorization", ""),
    }
    kv(out, "http_x_api_key", r.api_key.as_deref().unwrap_or(""));
    kv(out, "cookie_session", r.session.as_deref().unwrap_or(""));
    kv(out, "ssl_protocol", r.tls_version);
    // As logged with FoxIO's JA4 module for NGINX (`$http_ssl_ja4`, `$http_ssl_ja4h`).
    kv(out, "ja4", &r.tls_fingerprint);
    kv(out, "ja4h", &r.http_fingerprint);
    close(out, '}');
}

/// Envoy's `%RESPONSE_FLAGS%` for the statuses it generates itself.
fn envoy_flags(status: u16) -> &'static str {
    match status {
        503 => "UF",
        504 => "UT",
        _ => "-",
    }
}

fn envoy(r: &SimRequest, out: &mut String) {
    out.push('[');
    push_rfc3339(out, r.timestamp_us, Frac::Millis);
    out.push_str("] \"");
    push_nginx_escaped(out, r.method, false);
    out.push(' ');
    push_nginx_escaped(out, &r.path, true);
    out.push_str(" HTTP/1.1\" ");
    push_u64(out, u64::from(r.status));
    out.push(' ');
    out.push_str(envoy_flags(r.status));
    out.push(' ');
    push_u64(out, r.bytes_in);
    out.push(' ');
    push_u64(out, r.bytes_out);
    out.push(' ');
    // %DURATION% is whole milliseconds, truncated.
    push_u64(out, ms_to_us(r.latency_ms) / 1000);
    out.push(' ');
    push_u64(out, ms_to_us(r.upstream_latency_ms) / 1000);
    out.push_str(" \"");
    let mut xff = String::new();
    push_xff_chain(&mut xff, r, ",");
    push_nginx_escaped(out, &xff, false);
    out.push_str("\" ");
    quoted_or_dash(out, nonempty(&r.user_agent));
    out.push(' ');
    quoted_or_dash(out, nonempty(&r.request_id));
    out.push(' ');
    quoted_or_dash(out, nonempty(&r.host));
    out.push(' ');
    quoted_or_dash(out, nonempty(&r.upstream));
}

fn envoy_json(r: &SimRequest, out: &mut String) {
    out.push('{');
    push_key(out, "start_time");
    out.push('"');
    push_rfc3339(out, r.timestamp_us, Frac::Millis);
    out.push_str("\",");
    kv(out, "method", r.method);
    kv(out, "path", &r.path);
    kv(out, "protocol", "HTTP/1.1");
    kn(out, "response_code", u64::from(r.status));
    kv(out, "response_flags", envoy_flags(r.status));
    kn(out, "bytes_received", r.bytes_in);
    kn(out, "bytes_sent", r.bytes_out);
    kn(out, "duration", ms_to_us(r.latency_ms) / 1000);
    kns(
        out,
        "upstream_service_time",
        ms_to_us(r.upstream_latency_ms) / 1000,
    );
    let mut xff = String::new();
    push_xff_chain(&mut xff, r, ",");
    kv(out, "x_forwarded_for", &xff);
    push_key(out, "downstream_remote_address");
    out.push('"');
    out.push_str(&json_safe(&r.client_ip));
    out.push(':');
    push_u64(out, client_port(r));
    out.push_str("\",");
    kv_or_null(out, "user_agent", nonempty(&r.user_agent));
    kv(out, "request_id", &r.request_id);
    kv(out, "authority", &r.host);
    kv(out, "upstream_host", &r.upstream);
    kv(out, "tls_version", r.tls_version);
    kv_or_null(
        out,
        "authorization",
        r.jwt.as_deref().map(bearer).as_deref(),
    );
    kv_or_null(out, "x_api_key", r.api_key.as_deref());
    kv_or_null(out, "referer", r.referer.as_deref());
    // `%TLS_JA4_FINGERPRINT%`: Envoy computes JA4, not JA4H.
    kv(out, "ja4", &r.tls_fingerprint);
    close(out, '}');
}

/// `s` JSON-escaped without the quotes (for values built from several parts).
fn json_safe(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    push_json_str(&mut q, s);
    q[1..q.len() - 1].to_owned()
}

/// Kong's `request.querystring`: decoded arguments, `true` for arguments without a value.
fn push_querystring(out: &mut String, query: Option<&str>) {
    out.push('{');
    for arg in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
        let (k, v) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg, None),
        };
        push_json_str(out, &decode_component(k));
        out.push(':');
        match v {
            Some(v) => push_json_str(out, &decode_component(v)),
            None => out.push_str("true"),
        }
        out.push(',');
    }
    close(out, '}');
}

fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

fn kong(r: &SimRequest, out: &mut String) {
    let (_, query) = split_query(&r.path);
    out.push_str("{\"request\":{");
    kv(out, "method", r.method);
    kv(out, "uri", &r.path);
    push_key(out, "url");
    let mut url = String::with_capacity(8 + r.host.len() + r.path.len());
    url.push_str("https://");
    url.push_str(&r.host);
    url.push_str(&r.path);
    push_json_str(out, &url);
    out.push(',');
    kn(out, "size", r.bytes_in);
    out.push_str("\"headers\":{");
    kv(out, "host", &r.host);
    if let Some(ua) = nonempty(&r.user_agent) {
        kv(out, "user-agent", ua);
    }
    if let Some(j) = &r.jwt {
        kv(out, "authorization", &bearer(j));
    }
    if let Some(k) = &r.api_key {
        kv(out, "x-api-key", k);
    }
    if let Some(x) = &r.referer {
        kv(out, "referer", x);
    }
    kv(out, "x-request-id", &r.request_id);
    if let Some(s) = &r.session {
        let mut cookie = String::with_capacity(8 + s.len());
        cookie.push_str("session=");
        cookie.push_str(s);
        kv(out, "cookie", &cookie);
    }
    if !r.forwarded_for.is_empty() {
        kv(out, "x-forwarded-for", &join_forwarded(r, ", "));
    }
    close(out, '}');
    out.push_str(",\"querystring\":");
    push_querystring(out, query);
    out.push_str(",\"tls\":{");
    kv(out, "version", r.tls_version);
    close(out, '}');
    out.push_str("},\"response\":{");
    kn(out, "status", u64::from(r.status));
    kn(out, "size", r.bytes_out);
    out.push_str("\"headers\":{");
    kns(out, "content-length", r.bytes_out);
    close(out, '}');
    out.push_str("},\"latencies\":{");
    let request = ms_round(r.latency_ms);
    let proxy = ms_round(r.upstream_latency_ms).min(request);
    kn(out, "request", request);
    kn(out, "kong", request - proxy);
    kn(out, "proxy", proxy);
    close(out, '}');
    out.push(',');
    kv(out, "client_ip", &r.client_ip);
    push_key(out, "started_at");
    super::text::push_i64(out, unix_ms(r.timestamp_us));
    out.push(',');
    kv(out, "upstream_uri", &r.path);
    out.push_str("\"service\":{");
    let name = service_name(&r.upstream);
    kv(out, "name", name);
    let (host, port) = match r.upstream.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().unwrap_or(80)),
        None => (r.upstream.as_str(), 80),
    };
    kv(out, "host", host);
    kn(out, "port", u64::from(port));
    close(out, '}');
    out.push(',');
    if let Some(id) = &r.identity {
        out.push_str("\"consumer\":{");
        kv(
            out,
            "id",
            &super::traffic::uuid_from_name(id, "kong-consumer"),
        );
        kv(out, "username", id);
        close(out, '}');
        out.push_str(",\"authenticated_entity\":{");
        kv(
            out,
            "id",
            &super::traffic::uuid_from_name(id, "kong-credential"),
        );
        close(out, '}');
        out.push(',');
    }
    close(out, '}');
}

/// API Gateway's `$context.resourcePath`: the matched resource template.
fn resource_path(path: &str) -> String {
    if path.starts_with("/api/") || path == "/login" {
        let mut out = String::with_capacity(path.len() + 8);
        for seg in path.split('/').skip(1) {
            out.push('/');
            let id_like = !seg.is_empty()
                && (seg.bytes().all(|b| b.is_ascii_digit()) || seg.starts_with("SKU-"));
            out.push_str(if id_like { "{id}" } else { seg });
        }
        out
    } else if path.starts_with("/static/") {
        "/static/{proxy+}".into()
    } else {
        "/{proxy+}".into()
    }
}

/// `"key":"value",` or `"key":"-",` (AWS writes `-` for empty context variables).
fn kv_or_dash(out: &mut String, key: &str, value: Option<&str>) {
    kv(out, key, value.and_then(nonempty).unwrap_or("-"));
}

fn aws(r: &SimRequest, out: &mut String) {
    let (path, _) = split_query(&r.path);
    out.push('{');
    kv(out, "requestId", &r.request_id);
    let h = xxhash_rust::xxh3::xxh3_128(r.request_id.as_bytes()).to_be_bytes();
    let mut ext = String::with_capacity(16);
    base64::Engine::encode_string(
        &base64::engine::general_purpose::STANDARD,
        &h[..10],
        &mut ext,
    );
    kv(out, "extendedRequestId", &ext);
    kv(out, "ip", &r.client_ip);
    kv(out, "caller", "-");
    kv(out, "user", "-");
    push_key(out, "requestTime");
    out.push('"');
    push_clf(out, r.timestamp_us);
    out.push_str("\",");
    push_key(out, "requestTimeEpoch");
    out.push('"');
    super::text::push_i64(out, unix_ms(r.timestamp_us));
    out.push_str("\",");
    kv(out, "httpMethod", r.method);
    kv(out, "resourcePath", &resource_path(path));
    let mut staged = String::with_capacity(5 + path.len());
    staged.push_str("/prod");
    staged.push_str(path);
    kv(out, "path", &staged);
    kns(out, "status", u64::from(r.status));
    kv(out, "protocol", "HTTP/1.1");
    kns(out, "responseLength", r.bytes_out);
    kns(out, "responseLatency", ms_round(r.latency_ms));
    kns(out, "integrationLatency", ms_round(r.upstream_latency_ms));
    kv_or_dash(out, "userAgent", Some(&r.user_agent));
    kv(out, "domainName", &r.host);
    kv_or_dash(out, "apiKeyId", r.api_key.as_deref());
    kv_or_dash(out, "principalId", r.identity.as_deref());
    kv_or_dash(out, "sub", r.identity.as_deref());
    kv_or_dash(out, "sessionId", r.session.as_deref());
    close(out, '}');
}

fn traefik(r: &SimRequest, out: &mut String) {
    let port = client_port(r);
    out.push('{');
    push_key(out, "ClientAddr");
    out.push('"');
    out.push_str(&json_safe(&r.client_ip));
    out.push(':');
    push_u64(out, port);
    out.push_str("\",");
    kv(out, "ClientHost", &r.client_ip);
    kns(out, "ClientPort", port);
    kv_or_dash(out, "ClientUsername", r.identity.as_deref());
    kn(out, "DownstreamContentSize", r.bytes_out);
    kn(out, "DownstreamStatus", u64::from(r.status));
    kn(out, "Duration", ms_to_us(r.latency_ms) * 1000);
    kn(out, "OriginContentSize", r.bytes_out);
    kn(
        out,
        "OriginDuration",
        ms_to_us(r.upstream_latency_ms) * 1000,
    );
    kn(out, "OriginStatus", u64::from(r.status));
    kv(out, "RequestAddr", &r.host);
    kn(out, "RequestContentSize", r.bytes_in);
    kv(out, "RequestHost", &r.host);
    kv(out, "RequestMethod", r.method);
    kv(out, "RequestPath", &r.path);
    kv(out, "RequestProtocol", "HTTP/1.1");
    kv(out, "RequestScheme", "https");
    let mut router = String::with_capacity(16);
    router.push_str(service_name(&r.upstream));
    router.push_str("@file");
    kv(out, "RouterName", &router);
    kv(out, "ServiceAddr", &r.upstream);
    kv(out, "ServiceName", &router);
    push_key(out, "StartUTC");
    out.push('"');
    push_rfc3339(out, r.timestamp_us, Frac::Nanos);
    out.push_str("\",");
    kv(out, "TLSVersion", r.tls_version.trim_start_matches("TLSv"));
    kv(out, "entryPointName", "websecure");
    kv(out, "level", "info");
    kv(out, "msg", "");
    push_key(out, "time");
    out.push('"');
    push_rfc3339(out, r.timestamp_us, Frac::None);
    out.push_str("\",");
    if let Some(ua) = nonempty(&r.user_agent) {
        kv(out, "request_User-Agent", ua);
    }
    if let Some(x) = &r.referer {
        kv(out, "request_Referer", x);
    }
    kv(out, "request_X-Request-Id", &r.request_id);
    if let Some(j) = &r.jwt {
        kv(out, "request_Authorization", &bearer(j));
    }
    if let Some(k) = &r.api_key {
        kv(out, "request_X-Api-Key", k);
    }
    if let Some(s) = &r.session {
        let mut cookie = String::with_capacity(8 + s.len());
        cookie.push_str("session=");
        cookie.push_str(s);
        kv(out, "request_Cookie", &cookie);
    }
    if !r.forwarded_for.is_empty() {
        kv(out, "request_X-Forwarded-For", &join_forwarded(r, ", "));
    }
    // Set by a CDN in front of Traefik that computes JA4 and passes it on as a header.
    kv(out, "request_X-Ja4", &r.tls_fingerprint);
    close(out, '}');
}

fn otlp_str(out: &mut String, key: &str, value: &str) {
    out.push_str("{\"key\":\"");
    out.push_str(key);
    out.push_str("\",\"value\":{\"stringValue\":");
    push_json_str(out, value);
    out.push_str("}},");
}

fn otlp_int(out: &mut String, key: &str, value: u64) {
    out.push_str("{\"key\":\"");
    out.push_str(key);
    out.push_str("\",\"value\":{\"intValue\":\"");
    push_u64(out, value);
    out.push_str("\"}},");
}

/// Appends one OTLP/JSON `ExportLogsServiceRequest` holding a log record per request, under a
/// resource with the given `service.name`. No trailing newline.
pub fn render_otlp_batch(reqs: &[SimRequest], service_name: &str, out: &mut String) {
    out.push_str(
        "{\"resourceLogs\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":",
    );
    push_json_str(out, service_name);
    out.push_str("}}]},\"scopeLogs\":[{\"scope\":{\"name\":\"vigil-simulate\"},\"logRecords\":[");
    for (i, r) in reqs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        otlp_record(r, out);
    }
    out.push_str("]}]}]}");
}

fn push_unix_nanos(out: &mut String, ts_us: i64) {
    out.push('"');
    if ts_us < 0 {
        out.push('-');
    }
    push_u64(out, ts_us.unsigned_abs());
    out.push_str("000\"");
}

fn otlp_record(r: &SimRequest, out: &mut String) {
    let (path, query) = split_query(&r.path);
    out.push_str("{\"timeUnixNano\":");
    push_unix_nanos(out, r.timestamp_us);
    out.push_str(",\"observedTimeUnixNano\":");
    let latency_us = i64::try_from(ms_to_us(r.latency_ms)).unwrap_or(i64::MAX);
    push_unix_nanos(out, r.timestamp_us.saturating_add(latency_us));
    out.push_str(",\"severityText\":\"INFO\",\"body\":{\"stringValue\":");
    let mut body = String::with_capacity(r.method.len() + path.len() + 6);
    body.push_str(r.method);
    body.push(' ');
    body.push_str(path);
    body.push(' ');
    push_u64(&mut body, u64::from(r.status));
    push_json_str(out, &body);
    out.push_str("},\"attributes\":[");
    otlp_str(out, "http.request.method", r.method);
    otlp_str(out, "url.path", path);
    if let Some(q) = query.and_then(nonempty) {
        otlp_str(out, "url.query", q);
    }
    otlp_int(out, "http.response.status_code", u64::from(r.status));
    otlp_str(out, "client.address", &r.client_ip);
    otlp_str(out, "server.address", &r.host);
    if let Some(ua) = nonempty(&r.user_agent) {
        otlp_str(out, "user_agent.original", ua);
    }
    otlp_int(out, "http.request.body.size", r.bytes_in);
    otlp_int(out, "http.response.body.size", r.bytes_out);
    out.push_str("{\"key\":\"http.server.request.duration\",\"value\":{\"doubleValue\":");
    push_fixed(out, ms_to_us(r.latency_ms), 6, 1);
    out.push_str("}},");
    otlp_str(out, "http.request.header.x-request-id", &r.request_id);
    if let Some(j) = &r.jwt {
        otlp_str(out, "http.request.header.authorization", &bearer(j));
    }
    if let Some(k) = &r.api_key {
        otlp_str(out, "http.request.header.x-api-key", k);
    }
    if let Some(x) = &r.referer {
        otlp_str(out, "http.request.header.referer", x);
    }
    if !r.forwarded_for.is_empty() {
        otlp_str(
            out,
            "http.request.header.x-forwarded-for",
            &join_forwarded(r, ", "),
        );
    }
    if let Some(id) = &r.identity {
        otlp_str(out, "enduser.id", id);
    }
    if let Some(s) = &r.session {
        otlp_str(out, "session.id", s);
    }
    otlp_str(
        out,
        "tls.protocol.version",
        r.tls_version.trim_start_matches("TLSv"),
    );
    otlp_str(out, "upstream.address", &r.upstream);
    otlp_str(out, "tls.client.ja4", &r.tls_fingerprint);
    otlp_str(out, "http.request.ja4h", &r.http_fingerprint);
    close(out, ']');
    out.push('}');
}

fn json(r: &SimRequest, out: &mut String) {
    out.push('{');
    push_key(out, "timestamp");
    out.push('"');
    push_rfc3339(out, r.timestamp_us, Frac::Micros);
    out.push_str("\",");
    kv(out, "client_ip", &r.client_ip);
    if !r.forwarded_for.is_empty() {
        kv(out, "forwarded_for", &join_forwarded(r, ", "));
    }
    if let Some(v) = &r.identity {
        kv(out, "identity", v);
    }
    if let Some(v) = &r.session {
        kv(out, "session", v);
    }
    if let Some(v) = &r.api_key {
        kv(out, "api_key", v);
    }
    kv(out, "request_id", &r.request_id);
    kv(out, "method", r.method);
    kv(out, "host", &r.host);
    kv(out, "path", &r.path);
    kn(out, "status", u64::from(r.status));
    kn(out, "bytes_in", r.bytes_in);
    kn(out, "bytes_out", r.bytes_out);
    push_key(out, "latency_ms");
    push_fixed(out, ms_to_us(r.latency_ms), 3, 1);
    out.push(',');
    push_key(out, "upstream_latency_ms");
    push_fixed(out, ms_to_us(r.upstream_latency_ms), 3, 1);
    out.push(',');
    if let Some(ua) = nonempty(&r.user_agent) {
        kv(out, "user_agent", ua);
    }
    if let Some(v) = &r.referer {
        kv(out, "referer", v);
    }
    kv(out, "tls_version", r.tls_version);
    kv(out, "tls_fingerprint", &r.tls_fingerprint);
    kv(out, "http_fingerprint", &r.http_fingerprint);
    if let Some(u) = nonempty(&r.upstream) {
        kv(out, "upstream", u);
    }
    close(out, '}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in SimFormat::ALL {
            assert_eq!(f.as_str().parse::<SimFormat>(), Ok(f));
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.as_str())
            );
            assert!(FORMAT_NAMES.contains(f.as_str()));
        }
        assert_eq!("nginx_json".parse::<SimFormat>(), Ok(SimFormat::NginxJson));
        let err = "apache".parse::<SimFormat>().unwrap_err().to_string();
        assert!(err.contains("traefik-json"), "{err}");
    }

    #[test]
    fn resource_paths_are_templates() {
        assert_eq!(
            resource_path("/api/v1/products/12"),
            "/api/v1/products/{id}"
        );
        assert_eq!(
            resource_path("/api/v1/products/12/reviews"),
            "/api/v1/products/{id}/reviews"
        );
        assert_eq!(
            resource_path("/api/v1/inventory/SKU-123456"),
            "/api/v1/inventory/{id}"
        );
        assert_eq!(resource_path("/login"), "/login");
        assert_eq!(resource_path("/static/js/app.js"), "/static/{proxy+}");
        assert_eq!(resource_path("/.env"), "/{proxy+}");
        assert_eq!(resource_path("/api/"), "/api/");
    }

    #[test]
    fn querystrings_decode_like_kong() {
        let mut out = String::new();
        push_querystring(&mut out, Some("q=running+shoes&page=2&flag&x=%C3%A9"));
        assert_eq!(
            out,
            r#"{"q":"running shoes","page":"2","flag":true,"x":"é"}"#
        );
        out.clear();
        push_querystring(&mut out, None);
        assert_eq!(out, "{}");
    }
}
