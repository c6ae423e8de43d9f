//! The normalized access event and its Arrow schema: the `events` table.
//!
//! Parsed records are appended straight into Arrow builders ([`EventBatchBuilder`]), so an
//! event is never an owned struct on the hot path; the `RecordBatch` is the event's canonical
//! form from here on (NDJSON output, the store, scoring all read it).

use crate::normalize::{Normalizer, split_target, tls_version, write_route};
use crate::record::AccessRecord;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, RecordBatch, RecordBatchOptions,
    StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt64Builder,
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
    /// The rows asked for; after an [`EventBatchBuilder::finish`] the builders are sized for
    /// at most twice as many.
    capacity: usize,
    /// Bit `i` set: column `i` of [`events_schema`] is in the batches (see
    /// [`EventBatchBuilder::with_columns`]).
    keep: u64,
    /// The schema of the batches: the events schema, or the projection `keep` names.
    schema: SchemaRef,
}

/// Every column of the events schema, as a [`EventBatchBuilder`] `keep` mask.
const ALL_COLUMNS: u64 = (1 << 33) - 1;

/// The positions in the events schema of the columns an [`EventBatchBuilder`] does not fill
/// when a projection leaves them out (the others are cheap and always filled).
mod at {
    pub const EVENT_ID: usize = 0;
    pub const GATEWAY: usize = 2;
    pub const FORMAT: usize = 3;
    pub const ORIGIN: usize = 4;
    pub const REQUEST_ID: usize = 5;
    pub const FORWARDED_FOR: usize = 7;
    pub const METHOD: usize = 11;
    pub const HOST: usize = 12;
    pub const QUERY_PRESENT: usize = 15;
    pub const BYTES_IN: usize = 17;
    pub const LATENCY_MS: usize = 19;
    pub const UPSTREAM_LATENCY_MS: usize = 20;
    pub const REFERER: usize = 22;
    pub const TLS_VERSION: usize = 23;
    pub const UPSTREAM: usize = 24;
    pub const ATTACK_DETECTORS: usize = 30;
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
        Self::sized(n, None)
    }

    /// Builders for `n` rows. Each string column gets room for as many bytes a row as it took
    /// in `prev`, the batch before (an eighth more), or else a guess: a batch like the last
    /// fills without growing (and copying) its buffers step by step.
    fn sized(n: usize, prev: Option<&Self>) -> Self {
        let s = |guess: usize, column: fn(&Self) -> &StringBuilder| {
            let bytes = match prev {
                Some(p) if p.len > 0 => {
                    let used = column(p).values_slice().len();
                    (used + used / 8).div_ceil(p.len) * n
                }
                _ => guess * n,
            };
            StringBuilder::with_capacity(n, bytes)
        };
        Self {
            event_id: s(32, |p| &p.event_id),
            timestamp: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00"),
            gateway: s(8, |p| &p.gateway),
            format: s(8, |p| &p.format),
            origin: s(48, |p| &p.origin),
            request_id: s(36, |p| &p.request_id),
            client_ip: s(15, |p| &p.client_ip),
            forwarded_for: ListBuilder::new(StringBuilder::new()),
            identity: s(12, |p| &p.identity),
            session: s(16, |p| &p.session),
            api_key_id: s(8, |p| &p.api_key_id),
            method: s(4, |p| &p.method),
            host: s(16, |p| &p.host),
            path: s(32, |p| &p.path),
            route: s(24, |p| &p.route),
            query_present: BooleanBuilder::with_capacity(n),
            status: UInt16Builder::with_capacity(n),
            bytes_in: UInt64Builder::with_capacity(n),
            bytes_out: UInt64Builder::with_capacity(n),
            latency_ms: Float64Builder::with_capacity(n),
            upstream_latency_ms: Float64Builder::with_capacity(n),
            user_agent: s(64, |p| &p.user_agent),
            referer: s(16, |p| &p.referer),
            tls_version: s(7, |p| &p.tls_version),
            upstream: s(16, |p| &p.upstream),
            enforced: s(4, |p| &p.enforced),
            tls_fingerprint: s(8, |p| &p.tls_fingerprint),
            http_fingerprint: s(8, |p| &p.http_fingerprint),
            device: s(8, |p| &p.device),
            attack_classes: ListBuilder::new(StringBuilder::new()),
            attack_detectors: ListBuilder::new(StringBuilder::new()),
            evidence: s(0, |p| &p.evidence),
            evidence_strong: BooleanBuilder::with_capacity(n),
            scratch: String::new(),
            len: 0,
            capacity: n,
            keep: ALL_COLUMNS,
            schema: events_schema(),
        }
    }

    /// A builder whose batches hold only `columns` (names of [`events_schema`]'s columns), in
    /// the schema's order: for a reader that needs no more, such as the scorer in
    /// `vigil replay`. The columns left out are not built at all (no event id, origin or
    /// detector list is written for them); the rest are exactly what [`with_capacity`]'s give.
    /// An unknown name is an error naming it.
    ///
    /// [`with_capacity`]: EventBatchBuilder::with_capacity
    pub fn with_columns(n: usize, columns: &[&str]) -> Result<Self, String> {
        let mut keep = 0u64;
        for name in columns {
            let i = SCHEMA
                .index_of(name)
                .map_err(|_| format!("`{name}` is not a column of the events table"))?;
            keep |= 1 << i;
        }
        let indices: Vec<usize> = (0..SCHEMA.fields().len())
            .filter(|i| keep & (1 << i) != 0)
            .collect();
        let schema = Arc::new(SCHEMA.project(&indices).map_err(|e| e.to_string())?);
        Ok(Self {
            keep,
            schema,
            ..Self::with_capacity(n)
        })
    }

    /// The schema of the batches this builder makes.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn keeps(&self, column: usize) -> bool {
        self.keep & (1 << column) != 0
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
        if self.keeps(at::EVENT_ID) {
            let id = hex32(origin.event_id(index));
            self.event_id
                .append_value(std::str::from_utf8(&id).unwrap_or_default());
        }
        self.timestamp.append_value(rec.timestamp_us);
        if self.keeps(at::GATEWAY) {
            self.gateway.append_value(origin.gateway);
        }
        if self.keeps(at::FORMAT) {
            self.format.append_value(origin.format);
        }
        if self.keeps(at::ORIGIN) {
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
        }
        if self.keeps(at::REQUEST_ID) {
            opt(&mut self.request_id, rec.request_id.as_deref());
        }

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
            _ if !self.keeps(at::FORWARDED_FOR) => {}
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
        if self.keeps(at::METHOD) {
            opt(&mut self.method, rec.method.as_deref());
        }
        if self.keeps(at::HOST) {
            opt(&mut self.host, rec.host.as_deref());
        }
        let query_present = self.keeps(at::QUERY_PRESENT);

        match rec.target.as_deref() {
            Some(target) => {
                let (path, query) = split_target(target);
                self.path.append_value(path);
                self.scratch.clear();
                write_route(path, max_route, &mut self.scratch);
                self.route.append_value(&self.scratch);
                if query_present {
                    let q = query.or(rec.query.as_deref());
                    self.query_present
                        .append_value(q.is_some_and(|q| !q.is_empty()));
                }
            }
            None => {
                self.path.append_null();
                self.route.append_null();
                if query_present {
                    self.query_present
                        .append_value(rec.query.as_deref().is_some_and(|q| !q.is_empty()));
                }
            }
        }
        self.status.append_value(rec.status);
        if self.keeps(at::BYTES_IN) {
            self.bytes_in.append_option(rec.bytes_in);
        }
        self.bytes_out.append_option(rec.bytes_out);
        if self.keeps(at::LATENCY_MS) {
            self.latency_ms.append_option(rec.latency_ms);
        }
        if self.keeps(at::UPSTREAM_LATENCY_MS) {
            self.upstream_latency_ms
                .append_option(rec.upstream_latency_ms);
        }
        opt(&mut self.user_agent, rec.user_agent.as_deref());
        if self.keeps(at::REFERER) {
            opt(&mut self.referer, rec.referer.as_deref());
        }
        match rec.tls_version.as_deref() {
            _ if !self.keeps(at::TLS_VERSION) => {}
            Some(v) => self.tls_version.append_value(tls_version(v)),
            None => self.tls_version.append_null(),
        }
        if self.keeps(at::UPSTREAM) {
            opt(&mut self.upstream, rec.upstream.as_deref());
        }
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
        let detectors = self.keeps(at::ATTACK_DETECTORS);
        if let Some(found) = &rec.found {
            // the enforcement point's strong evidence first, then what the record shows
            let mut classes: Vec<vigil_detect::AttackClass> = found.classes.clone();
            classes.extend(evidence.classes().filter(|c| !found.classes.contains(c)));
            for c in &classes {
                self.attack_classes.values().append_value(c.as_str());
            }
            self.attack_classes.append(true);
            if detectors {
                for m in evidence.matches() {
                    self.attack_detectors.values().append_value(m.detector);
                }
                self.attack_detectors.append(true);
            }
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
            if detectors {
                self.attack_detectors.append(true);
            }
            self.evidence.append_null();
            self.evidence_strong.append_value(false);
        } else {
            for c in evidence.classes() {
                self.attack_classes.values().append_value(c.as_str());
            }
            self.attack_classes.append(true);
            if detectors {
                for m in evidence.matches() {
                    self.attack_detectors.values().append_value(m.detector);
                }
                self.attack_detectors.append(true);
            }
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
        // Arrow's builders start again empty. Sized for as many rows as this batch had, and
        // as many bytes a row, they fill a batch like it without growing, and a trickle of
        // small batches does not each hold buffers for a full one. The rows are capped at
        // twice the capacity asked for: a batch is taken when a chunk of lines has taken it
        // past that capacity, so it often holds more, but one huge batch is no measure.
        let mut next = Self::sized(self.len.min(2 * self.capacity), Some(self));
        next.capacity = self.capacity;
        next.scratch = std::mem::take(&mut self.scratch);
        next.keep = self.keep;
        next.schema = self.schema.clone();
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
        let columns = if self.keep == ALL_COLUMNS {
            columns
        } else {
            // the columns left out were never appended to: empty, and dropped here
            let keep = self.keep;
            columns
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep & (1 << i) != 0)
                .map(|(_, c)| c)
                .collect()
        };
        let (schema, rows) = (self.schema.clone(), self.len);
        *self = next;
        // The builders and the schema are written together above; a mismatch is a bug here,
        // not bad input. (The row count is for a projection of no columns.)
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema, columns, &options)
            .expect("event builders match the schema")
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

    #[test]
    fn the_skippable_columns_are_where_the_schema_has_them() {
        assert_eq!(ALL_COLUMNS.count_ones() as usize, SCHEMA.fields().len());
        for (at, name) in [
            (at::EVENT_ID, col::EVENT_ID),
            (at::GATEWAY, col::GATEWAY),
            (at::FORMAT, col::FORMAT),
            (at::ORIGIN, col::ORIGIN),
            (at::REQUEST_ID, col::REQUEST_ID),
            (at::FORWARDED_FOR, col::FORWARDED_FOR),
            (at::METHOD, col::METHOD),
            (at::HOST, col::HOST),
            (at::QUERY_PRESENT, col::QUERY_PRESENT),
            (at::BYTES_IN, col::BYTES_IN),
            (at::LATENCY_MS, col::LATENCY_MS),
            (at::UPSTREAM_LATENCY_MS, col::UPSTREAM_LATENCY_MS),
            (at::REFERER, col::REFERER),
            (at::TLS_VERSION, col::TLS_VERSION),
            (at::UPSTREAM, col::UPSTREAM),
            (at::ATTACK_DETECTORS, col::ATTACK_DETECTORS),
        ] {
            assert_eq!(SCHEMA.field(at).name(), name);
        }
    }

    /// Simulated lines of every format the simulator writes (attacks among them), parsed
    /// into a full builder and into projected ones over several batches: each projection's
    /// batches are the full batches' columns it names, in the schema's order.
    #[test]
    fn a_projection_builds_the_same_columns_as_the_full_builder() {
        use crate::formats::{FormatName, FormatOptions};
        use crate::normalize::NormalizeConfig;
        use crate::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
        use crate::simulate::{SimConfig, SimFormat, Simulation, write_logs};

        let sim = Simulation::new(SimConfig {
            benign_users: 50,
            duration_secs: 600,
            ..Default::default()
        })
        .unwrap();
        let names: Vec<&str> = SCHEMA.fields().iter().map(|f| f.name().as_str()).collect();
        let projections: Vec<Vec<&str>> = vec![
            names.clone(),
            // what the scorer reads, and then every other column alone, and none
            vec![
                col::TIMESTAMP,
                col::STATUS,
                col::PATH,
                col::ROUTE,
                col::CLIENT_IP,
            ],
            names.iter().step_by(2).copied().collect(),
            names.iter().skip(1).step_by(2).copied().collect(),
            vec![],
        ];
        for format in FormatName::ALL {
            let Ok(sim_format) = format.as_str().parse::<SimFormat>() else {
                continue;
            };
            let mut data = Vec::new();
            write_logs(&sim, sim_format, Some(3_000), &mut data).unwrap();
            let parse = |builder: &mut EventBatchBuilder| {
                let mut parser = Parser::new(
                    "test",
                    format,
                    FormatOptions::default(),
                    Normalizer::new(NormalizeConfig::default()).unwrap(),
                    Arc::new(IngestStats::default()),
                )
                .unwrap();
                let mut splitter = LineSplitter::new(0, 1 << 20);
                let mut batches = Vec::new();
                let mut dead = Vec::new();
                for piece in data.chunks(64 << 10) {
                    let mut chunk = LineChunk::new("test".into(), 7);
                    splitter.push(piece, &mut chunk);
                    parser.parse_chunk(&chunk, builder, &mut dead);
                    if builder.len() >= 500 {
                        batches.push(builder.finish());
                    }
                }
                batches.push(builder.finish());
                batches
            };
            let full = parse(&mut EventBatchBuilder::with_capacity(500));
            assert!(full.iter().map(|b| b.num_rows()).sum::<usize>() > 2_000);
            for columns in &projections {
                let mut builder = EventBatchBuilder::with_columns(500, columns).unwrap();
                let schema = builder.schema();
                let projected = parse(&mut builder);
                assert_eq!(projected.len(), full.len());
                for (p, f) in projected.iter().zip(&full) {
                    assert_eq!(p.schema(), schema);
                    assert_eq!(p.num_rows(), f.num_rows());
                    assert_eq!(p.num_columns(), columns.len());
                    for field in schema.fields() {
                        assert_eq!(
                            p.column_by_name(field.name()).unwrap().to_data(),
                            f.column_by_name(field.name()).unwrap().to_data(),
                            "{format:?} {}",
                            field.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_projection_names_an_unknown_column() {
        let err = EventBatchBuilder::with_columns(8, &[col::PATH, "nope"])
            .err()
            .unwrap();
        assert!(err.contains("`nope`"), "{err}");
    }
}
