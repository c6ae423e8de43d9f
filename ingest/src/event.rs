//! The normalized access event and its Arrow schema: the `events` table.
//!
//! Parsed records are appended straight into Arrow builders ([`EventBatchBuilder`]), so an
//! event is never an owned struct on the hot path; the `RecordBatch` is the event's canonical
//! form from here on (NDJSON output, the store, scoring all read it).

use crate::normalize::{Normalizer, split_target, tls_version, write_route};
use crate::record::AccessRecord;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};

/// Where a line came from: enough to find it again and to derive a stable event id.
#[derive(Debug, Clone)]
pub struct LineOrigin<'a> {
    /// The configured source (gateway) name, e.g. `edge-nginx`.
    pub gateway: &'a str,
    /// The format that parsed the line (`nginx`, `envoy-json`, ...).
    pub format: &'a str,
    /// Human-readable stream: `file:/var/log/nginx/access.log`, `kafka:gw-logs/3`, `http`.
    pub stream: &'a str,
    /// Seed for the event id: a hash of what identifies the stream's content (a file's first
    /// line, a topic-partition, an HTTP body), so the same line at the same position of the
    /// same stream always gets the same id.
    pub id_seed: u64,
    /// Byte offset or record offset of the line in its stream.
    pub position: u64,
    /// Line number within the record at `position`, for sources whose records hold several
    /// lines (a Kafka message with newlines); 0 otherwise.
    pub sub: u32,
}

impl LineOrigin<'_> {
    /// The event id of record `index` of this line (a line holds several records only in
    /// batched formats such as OTLP): 128 bits of XXH3 over the position, as 32 hex digits.
    ///
    /// Ids come from the position, never from the gateway's request id: a client can set its
    /// own `X-Request-Id`, and ids it controls could make distinct requests look like
    /// duplicates and disappear.
    pub fn event_id(&self, index: u32) -> u128 {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&self.position.to_le_bytes());
        buf[8..12].copy_from_slice(&self.sub.to_le_bytes());
        buf[12..].copy_from_slice(&index.to_le_bytes());
        xxhash_rust::xxh3::xxh3_128_with_seed(&buf, self.id_seed)
    }
}

/// Seed of [`LineOrigin::id_seed`] for a gateway and a stream identity.
pub fn stream_seed(gateway: &str, stream_identity: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(gateway.as_bytes());
    h.update(&[0]);
    h.update(stream_identity);
    h.digest()
}

/// Column names of the `events` table, in schema order.
pub mod col {
    pub const EVENT_ID: &str = "event_id";
    pub const TIMESTAMP: &str = "timestamp";
    pub const GATEWAY: &str = "gateway";
    pub const FORMAT: &str = "format";
    pub const ORIGIN: &str = "origin";
    pub const REQUEST_ID: &str = "request_id";
    pub const CLIENT_IP: &str = "client_ip";
    pub const FORWARDED_FOR: &str = "forwarded_for";
    pub const IDENTITY: &str = "identity";
    pub const SESSION: &str = "session";
    pub const API_KEY_ID: &str = "api_key_id";
    pub const METHOD: &str = "method";
    pub const HOST: &str = "host";
    pub const PATH: &str = "path";
    pub const ROUTE: &str = "route";
    pub const QUERY_PRESENT: &str = "query_present";
    pub const STATUS: &str = "status";
    pub const BYTES_IN: &str = "bytes_in";
    pub const BYTES_OUT: &str = "bytes_out";
    pub const LATENCY_MS: &str = "latency_ms";
    pub const UPSTREAM_LATENCY_MS: &str = "upstream_latency_ms";
    pub const USER_AGENT: &str = "user_agent";
    pub const REFERER: &str = "referer";
    pub const TLS_VERSION: &str = "tls_version";
    pub const UPSTREAM: &str = "upstream";
    pub const ENFORCED: &str = "enforced";
    pub const TLS_FINGERPRINT: &str = "tls_fingerprint";
    pub const HTTP_FINGERPRINT: &str = "http_fingerprint";
    pub const DEVICE: &str = "device";
    pub const ATTACK_CLASSES: &str = "attack_classes";
    pub const ATTACK_DETECTORS: &str = "attack_detectors";
    pub const EVIDENCE: &str = "evidence";
    pub const EVIDENCE_STRONG: &str = "evidence_strong";
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s(col::EVENT_ID, false),
        Field::new(
            col::TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        s(col::GATEWAY, false),
        s(col::FORMAT, false),
        s(col::ORIGIN, false),
        s(col::REQUEST_ID, true),
        s(col::CLIENT_IP, true),
        Field::new(
            col::FORWARDED_FOR,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        s(col::IDENTITY, true),
        s(col::SESSION, true),
        s(col::API_KEY_ID, true),
        s(col::METHOD, true),
        s(col::HOST, true),
        s(col::PATH, true),
        s(col::ROUTE, true),
        Field::new(col::QUERY_PRESENT, DataType::Boolean, false),
        Field::new(col::STATUS, DataType::UInt16, false),
        Field::new(col::BYTES_IN, DataType::UInt64, true),
        Field::new(col::BYTES_OUT, DataType::UInt64, true),
        Field::new(col::LATENCY_MS, DataType::Float64, true),
        Field::new(col::UPSTREAM_LATENCY_MS, DataType::Float64, true),
        s(col::USER_AGENT, true),
        s(col::REFERER, true),
        s(col::TLS_VERSION, true),
        s(col::UPSTREAM, true),
        s(col::ENFORCED, true),
        s(col::TLS_FINGERPRINT, true),
        s(col::HTTP_FINGERPRINT, true),
        s(col::DEVICE, true),
        Field::new(
            col::ATTACK_CLASSES,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            col::ATTACK_DETECTORS,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        s(col::EVIDENCE, true),
        Field::new(col::EVIDENCE_STRONG, DataType::Boolean, true),
    ]))
});

/// The Arrow schema of the `events` table (see the table in ARCHITECTURE.md).
pub fn events_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Arrow builders for one batch of events.
pub struct EventBatchBuilder {
    event_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    gateway: StringBuilder,
    format: StringBuilder,
    origin: StringBuilder,
    request_id: StringBuilder,
    client_ip: StringBuilder,
    forwarded_for: ListBuilder<StringBuilder>,
    identity: StringBuilder,
    session: StringBuilder,
    api_key_id: StringBuilder,
    method: StringBuilder,
    host: StringBuilder,
    path: StringBuilder,
    route: StringBuilder,
    query_present: BooleanBuilder,
    status: UInt16Builder,
    bytes_in: UInt64Builder,
    bytes_out: UInt64Builder,
    latency_ms: Float64Builder,
    upstream_latency_ms: Float64Builder,
    user_agent: StringBuilder,
    referer: StringBuilder,
    tls_version: StringBuilder,
    upstream: StringBuilder,
    enforced: StringBuilder,
    tls_fingerprint: StringBuilder,
    http_fingerprint: StringBuilder,
    device: StringBuilder,
    attack_classes: ListBuilder<StringBuilder>,
    attack_detectors: ListBuilder<StringBuilder>,
    evidence: StringBuilder,
    evidence_strong: BooleanBuilder,
    scratch: String,
    len: usize,
    /// Most rows the builders are sized for after an [`EventBatchBuilder::finish`].
    capacity: usize,
}

/// Lowercase hex of a 128-bit id, without the formatting machinery (once per event).
fn hex32(v: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// `v` in decimal, in the tail of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// `a.b.c.d`, as `Ipv4Addr`'s `Display` writes it.
fn dotted_quad(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (k, octet) in ip.octets().into_iter().enumerate() {
        if k > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

fn opt(b: &mut StringBuilder, v: Option<&str>) {
    match v {
        Some(s) => b.append_value(s),
        None => b.append_null(),
    }
}

impl Default for EventBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl EventBatchBuilder {
    pub fn with_capacity(n: usize) -> Self {
        let s = |bytes_per: usize| StringBuilder::with_capacity(n, n * bytes_per);
        Self {
            event_id: s(32),
            timestamp: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00"),
            gateway: s(8),
            format: s(8),
            origin: s(48),
            request_id: s(36),
            client_ip: s(15),
            forwarded_for: ListBuilder::new(StringBuilder::new()),
            identity: s(12),
            session: s(16),
            api_key_id: s(8),
            method: s(4),
            host: s(16),
            path: s(32),
            route: s(24),
            query_present: BooleanBuilder::with_capacity(n),
            status: UInt16Builder::with_capacity(n),
            bytes_in: UInt64Builder::with_capacity(n),
            bytes_out: UInt64Builder::with_capacity(n),
            latency_ms: Float64Builder::with_capacity(n),
            upstream_latency_ms: Float64Builder::with_capacity(n),
            user_agent: s(64),
            referer: s(16),
            tls_version: s(7),
            upstream: s(16),
            enforced: s(4),
            tls_fingerprint: s(8),
            http_fingerprint: s(8),
            device: s(8),
            attack_classes: ListBuilder::new(StringBuilder::new()),
            attack_detectors: ListBuilder::new(StringBuilder::new()),
            evidence: s(0),
            evidence_strong: BooleanBuilder::with_capacity(n),
            scratch: String::new(),
            len: 0,
            capacity: n,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends record `index` of the line at `origin` as one event row.
    pub fn append(
        &mut self,
        rec: &AccessRecord<'_>,
        origin: &LineOrigin<'_>,
        index: u32,
        norm: &mut Normalizer,
    ) {
        let id = hex32(origin.event_id(index));
        self.event_id
            .append_value(std::str::from_utf8(&id).unwrap_or_default());
        self.timestamp.append_value(rec.timestamp_us);
        self.gateway.append_value(origin.gateway);
        self.format.append_value(origin.format);
        // `stream:position[/sub][#index]`, written without the formatting machinery.
        let mut digits = [0u8; 20];
        let _ = self.origin.write_str(origin.stream);
        let _ = self.origin.write_str(":");
        let _ = self.origin.write_str(decimal(origin.position, &mut digits));
        if origin.sub > 0 {
            let _ = self.origin.write_str("/");
            let _ = self
                .origin
                .write_str(decimal(origin.sub.into(), &mut digits));
        }
        if index > 0 {
            let _ = self.origin.write_str("#");
            let _ = self.origin.write_str(decimal(index.into(), &mut digits));
        }
        self.origin.append_value("");
        opt(&mut self.request_id, rec.request_id.as_deref());

        let max_route = norm.config().max_route_bytes;
        let subjects = norm.subjects(rec);
        match subjects.client_ip {
            Some(IpAddr::V4(ip)) => {
                let mut buf = [0u8; 15];
                self.client_ip.append_value(dotted_quad(ip, &mut buf));
            }
            Some(ip) => {
                let _ = write!(self.client_ip, "{ip}");
                self.client_ip.append_value("");
            }
            None => self.client_ip.append_null(),
        }
        match rec.forwarded_for.as_deref() {
            Some(xff) => {
                let mut rest = xff;
                loop {
                    let (hop, next) = match memchr::memchr(b',', rest.as_bytes()) {
                        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                        None => (rest, None),
                    };
                    let hop = hop.trim();
                    if !hop.is_empty() {
                        self.forwarded_for.values().append_value(hop);
                    }
                    match next {
                        Some(n) => rest = n,
                        None => break,
                    }
                }
                self.forwarded_for.append(true);
            }
            None => self.forwarded_for.append_null(),
        }
        opt(&mut self.identity, subjects.identity);
        opt(&mut self.session, subjects.session);
        opt(&mut self.api_key_id, subjects.api_key_id);
        opt(&mut self.method, rec.method.as_deref());
        opt(&mut self.host, rec.host.as_deref());

        match rec.target.as_deref() {
            Some(target) => {
                let (path, query) = split_target(target);
                self.path.append_value(path);
                self.scratch.clear();
                write_route(path, max_route, &mut self.scratch);
                self.route.append_value(&self.scratch);
                let q = query.or(rec.query.as_deref());
                self.query_present
                    .append_value(q.is_some_and(|q| !q.is_empty()));
            }
            None => {
                self.path.append_null();
                self.route.append_null();
                self.query_present
                    .append_value(rec.query.as_deref().is_some_and(|q| !q.is_empty()));
            }
        }
        self.status.append_value(rec.status);
        self.bytes_in.append_option(rec.bytes_in);
        self.bytes_out.append_option(rec.bytes_out);
        self.latency_ms.append_option(rec.latency_ms);
        self.upstream_latency_ms
            .append_option(rec.upstream_latency_ms);
        opt(&mut self.user_agent, rec.user_agent.as_deref());
        opt(&mut self.referer, rec.referer.as_deref());
        match rec.tls_version.as_deref() {
            Some(v) => self.tls_version.append_value(tls_version(v)),
            None => self.tls_version.append_null(),
        }
        opt(&mut self.upstream, rec.upstream.as_deref());
        opt(&mut self.enforced, rec.enforced.as_deref());
        let tls = rec.tls_fingerprint.as_deref();
        let http = rec.http_fingerprint.as_deref();
        opt(&mut self.tls_fingerprint, tls);
        opt(&mut self.http_fingerprint, http);
        self.scratch.clear();
        if crate::normalize::write_device(tls, http, &mut self.scratch) {
            self.device.append_value(&self.scratch);
        } else {
            self.device.append_null();
        }
        let evidence = norm.inspect(rec);
        if let Some(found) = &rec.found {
            // the enforcement point's strong evidence first, then what the record shows
            let mut classes: Vec<vigil_detect::AttackClass> = found.classes.clone();
            classes.extend(evidence.classes().filter(|c| !found.classes.contains(c)));
            for c in &classes {
                self.attack_classes.values().append_value(c.as_str());
            }
            self.attack_classes.append(true);
            for m in evidence.matches() {
                self.attack_detectors.values().append_value(m.detector);
            }
            self.attack_detectors.append(true);
            if evidence.is_empty() {
                self.evidence.append_value(&found.description);
            } else {
                self.evidence.append_value(format!(
                    "{}; {}",
                    found.description,
                    evidence.describe()
                ));
            }
            self.evidence_strong.append_value(true);
        } else if evidence.is_empty() {
            self.attack_classes.append(true);
            self.attack_detectors.append(true);
            self.evidence.append_null();
            self.evidence_strong.append_value(false);
        } else {
            for c in evidence.classes() {
                self.attack_classes.values().append_value(c.as_str());
            }
            self.attack_classes.append(true);
            for m in evidence.matches() {
                self.attack_detectors.values().append_value(m.detector);
            }
            self.attack_detectors.append(true);
            self.evidence.append_value(evidence.describe());
            self.evidence_strong.append_value(
                evidence
                    .classes()
                    .any(|c| evidence.strength(c) == Some(vigil_detect::Strength::Strong)),
            );
        }
        self.len += 1;
    }

    /// Takes the rows appended so far as a `RecordBatch`; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.gateway.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.origin.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.forwarded_for.finish()),
            Arc::new(self.identity.finish()),
            Arc::new(self.session.finish()),
            Arc::new(self.api_key_id.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.query_present.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.bytes_in.finish()),
            Arc::new(self.bytes_out.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.upstream_latency_ms.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.referer.finish()),
            Arc::new(self.tls_version.finish()),
            Arc::new(self.upstream.finish()),
            Arc::new(self.enforced.finish()),
            Arc::new(self.tls_fingerprint.finish()),
            Arc::new(self.http_fingerprint.finish()),
            Arc::new(self.device.finish()),
            Arc::new(self.attack_classes.finish()),
            Arc::new(self.attack_detectors.finish()),
            Arc::new(self.evidence.finish()),
            Arc::new(self.evidence_strong.finish()),
        ];
        // Arrow's builders start again empty. Sized for as many rows as this batch had (at
        // most the capacity asked for), they fill a batch like it without growing (and
        // copying) their buffers step by step, and a trickle of small batches does not each
        // hold buffers for a full one.
        let (scratch, rows, capacity) =
            (std::mem::take(&mut self.scratch), self.len, self.capacity);
        *self = Self::with_capacity(rows.min(capacity));
        self.capacity = capacity;
        self.scratch = scratch;
        // The builders and the schema are written together above; a mismatch is a bug here,
        // not bad input.
        RecordBatch::try_new(events_schema(), columns).expect("event builders match the schema")
    }
}

/// Writes a batch as NDJSON with the schema's field names (nulls omitted).
pub fn write_ndjson<W: std::io::Write>(
    out: W,
    batch: &RecordBatch,
) -> Result<(), arrow::error::ArrowError> {
    let mut w = arrow::json::LineDelimitedWriter::new(out);
    w.write(batch)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_formatting_matches_display() {
        let mut buf = [0u8; 20];
        for v in [0, 7, 10, 99, 1234, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(decimal(v, &mut buf), v.to_string());
        }
        let mut buf = [0u8; 15];
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "255.255.255.255",
            "192.168.1.20",
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(dotted_quad(ip, &mut buf), ip.to_string());
        }
    }
}
