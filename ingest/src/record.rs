//! [`AccessRecord`]: what a format parser understood of one log line, borrowed from the line.
//!
//! Parsers fill what their format carries and leave the rest `None`; the
//! [`Normalizer`](crate::normalize::Normalizer) derives the event columns (route, API key id,
//! identity from a JWT, client IP through trusted proxies) from it. Strings are `Cow` so that an
//! unescaped JSON string or a text field is borrowed and only escaped strings are copied.

use std::borrow::Cow;

pub type Text<'a> = Option<Cow<'a, str>>;

/// Strong attack evidence an enforcement point found in parts of the request that the record
/// does not carry (the vigil proxy's inline detection sees the query and headers; its access
/// event keeps neither). Merged with what the normalizer's detectors find in the record.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundEvidence<'a> {
    pub classes: Vec<vigil_detect::AttackClass>,
    /// How the finder describes it: `sqli in query parameter `id` (sqli.libinjection)`.
    pub description: Cow<'a, str>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct AccessRecord<'a> {
    /// Request start (or log) time, UTC microseconds since the epoch.
    pub timestamp_us: i64,
    pub request_id: Text<'a>,
    /// The address of the peer that connected to the gateway (may carry `:port`).
    pub peer: Text<'a>,
    /// The `X-Forwarded-For` chain as logged (`a, b, c`).
    pub forwarded_for: Text<'a>,
    /// Identity the gateway authenticated (consumer, principal, `remote_user`, JWT `sub`).
    pub identity: Text<'a>,
    pub session: Text<'a>,
    /// The raw API key as logged; hashed by the normalizer and never stored.
    pub api_key: Text<'a>,
    /// An API key id already derived with the same salt (the enforcement point's own events
    /// carry it, never the key); used as is when `api_key` is absent.
    pub api_key_id: Text<'a>,
    /// An `Authorization` header value or bare token that may hold a JWT.
    pub jwt: Text<'a>,
    /// A `Cookie` header value (the session cookie is looked up in it).
    pub cookie: Text<'a>,
    pub method: Text<'a>,
    pub host: Text<'a>,
    /// Request target as logged: path, possibly with `?query`.
    pub target: Text<'a>,
    /// Query string logged separately from the path (without `?`), when the format does so.
    pub query: Text<'a>,
    pub protocol: Text<'a>,
    pub status: u16,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub latency_ms: Option<f64>,
    pub upstream_latency_ms: Option<f64>,
    pub user_agent: Text<'a>,
    pub referer: Text<'a>,
    pub tls_version: Text<'a>,
    pub upstream: Text<'a>,
    /// The action an enforcement point applied (`block`, `step_up`, ...), when the line comes
    /// from one (the proxy's own events); gateways leave it empty.
    pub enforced: Text<'a>,
    /// The client's TLS fingerprint (JA4, or JA3) as the gateway or a CDN logged it.
    pub tls_fingerprint: Text<'a>,
    /// The client's HTTP fingerprint (JA4H) as the enforcement point computed it.
    pub http_fingerprint: Text<'a>,
    /// Evidence found upstream of the log (see [`FoundEvidence`]).
    pub found: Option<FoundEvidence<'a>>,
}

/// `None` for the placeholders gateways write for "no value"; otherwise `s` without leading
/// and trailing whitespace.
#[inline]
pub fn present(s: &str) -> Option<&str> {
    let s = trim(s);
    match s.len() {
        0 => None,
        1..=4 if matches!(s, "-" | "null" | "nil" | "none") => None,
        _ => Some(s),
    }
}

/// `s.trim()`, without walking the string char by char when both end bytes are printable
/// ASCII (never whitespace): the usual case, for every field of every line.
#[inline]
pub fn trim(s: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x80);
    if printable(s.as_bytes().first()) && printable(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Like [`present`] for an owned-or-borrowed string.
pub fn present_cow(s: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match s {
        Cow::Borrowed(b) => present(b).map(Cow::Borrowed),
        Cow::Owned(o) => present(&o)
            .is_some()
            .then(|| Cow::Owned(o.trim().to_string())),
    }
}

/// At most 64 bytes of `s` (on a char boundary), for error messages that quote input.
pub fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl AccessRecord<'_> {
    /// A copy that owns all its strings.
    pub fn into_owned(self) -> AccessRecord<'static> {
        fn o(t: Text<'_>) -> Text<'static> {
            t.map(|c| Cow::Owned(c.into_owned()))
        }
        AccessRecord {
            timestamp_us: self.timestamp_us,
            request_id: o(self.request_id),
            peer: o(self.peer),
            forwarded_for: o(self.forwarded_for),
            identity: o(self.identity),
            session: o(self.session),
            api_key: o(self.api_key),
            api_key_id: o(self.api_key_id),
            jwt: o(self.jwt),
            cookie: o(self.cookie),
            method: o(self.method),
            host: o(self.host),
            target: o(self.target),
            query: o(self.query),
            protocol: o(self.protocol),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_ms: self.latency_ms,
            upstream_latency_ms: self.upstream_latency_ms,
            user_agent: o(self.user_agent),
            referer: o(self.referer),
            tls_version: o(self.tls_version),
            upstream: o(self.upstream),
            enforced: o(self.enforced),
            tls_fingerprint: o(self.tls_fingerprint),
            http_fingerprint: o(self.http_fingerprint),
            found: self.found.map(|f| FoundEvidence {
                classes: f.classes,
                description: Cow::Owned(f.description.into_owned()),
            }),
        }
    }
}
