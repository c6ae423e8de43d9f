//! From what a gateway logged to the event's subject columns: the client IP (through trusted
//! proxies), identity and session (configured fields, else a logged JWT's claims, else the
//! session cookie), the API key's id (a hash, never the key), and the route (ids templated away).

use crate::error::IngestError;
use crate::record::AccessRecord;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use vigil_detect::{Detectors, Evidence, Request as DetectRequest};

/// `[normalize]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// CIDRs of proxies in front of the gateway (load balancers, CDNs). When the logged peer is
    /// one of them, the client IP is the right-most `X-Forwarded-For` entry that is not.
    /// Default: none (the peer is the client; with no peer logged, the right-most entry).
    pub trusted_proxies: Vec<String>,
    /// Name of the cookie that carries the session id. Default `session`.
    pub session_cookie: String,
    /// Take `sub` (identity) and `sid`/`jti` (session) from a logged JWT when the gateway did
    /// not log them itself. The gateway verified the token; vigil only reads it. Default true.
    pub jwt_claims: bool,
    /// Secret prefix mixed into the API key hash, so ids cannot be matched against a list of
    /// leaked keys without it. The enforcement point must use the same value. Default empty.
    pub api_key_salt: String,
    /// Longest route kept, in bytes; longer routes are cut (bounds the route column's
    /// cardinality under path fuzzing). Default 256.
    pub max_route_bytes: usize,
    /// Inspect every request (decoded path and query, user agent, referer) for attack evidence
    /// (`vigil-detect`): the events' `attack_classes`, `attack_detectors` and `evidence`
    /// columns. Default true.
    pub detectors: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            session_cookie: "session".into(),
            jwt_claims: true,
            api_key_salt: String::new(),
            max_route_bytes: 256,
            detectors: true,
        }
    }
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: u128,
    prefix: u8,
    v4: bool,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let ip: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network"))?;
        let (addr, max, v4) = match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32, true),
            IpAddr::V6(v) => (u128::from(v), 128, false),
        };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has an invalid prefix length"))?
        };
        Ok(Cidr { addr, prefix, v4 })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (addr, bits) = match ip {
            IpAddr::V4(v) if self.v4 => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) if !self.v4 => (u128::from(v), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - u32::from(self.prefix);
        (addr >> shift) == (self.addr >> shift)
    }
}

/// Reads an address as gateways log it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:443`, `::1`.
/// IPv4-mapped IPv6 addresses are read as IPv4.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = crate::record::trim(s);
    // IPv4, with or without a port, without trying IPv6 first (every IPv6 address has at least
    // two colons): the same answer as the general path below, for the common case.
    if !s.starts_with('[') {
        let b = s.as_bytes();
        let mut colons = b
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b':')
            .map(|(i, _)| i);
        match (colons.next(), colons.next()) {
            (None, _) => return ipv4(b).map(IpAddr::V4),
            (Some(at), None) => {
                s[at + 1..].parse::<u16>().ok()?;
                return ipv4(&b[..at]).map(IpAddr::V4);
            }
            _ => {}
        }
    }
    let ip = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = s.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse().ok()?
    };
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// `a.b.c.d` as `Ipv4Addr::from_str` reads it (four decimal numbers up to 255, of at most
/// three digits, without leading zeros, and nothing else), without its general parser.
fn ipv4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v = 0u32;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            if i - start == 3 || (i > start && b[start] == b'0') {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            i += 1;
        }
        if i == start {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// The id of an API key: lowercase hex of the first 16 bytes of SHA-256(salt ‖ key). The same
/// function is used by the enforcement point, so decisions on an id match the header it sees.
pub fn api_key_id_salted(salt: &str, raw: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(raw.trim().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// [`api_key_id_salted`] with the default (empty) salt.
pub fn api_key_id(raw: &str) -> String {
    api_key_id_salted("", raw)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwtClaims {
    pub sub: Option<String>,
    pub session: Option<String>,
}

/// Reads `sub` and `sid` (else `jti`) from a compact JWT's payload, with or without a `Bearer `
/// prefix. The signature is not checked: the gateway that logged the header verified it.
pub fn jwt_claims(token: &str) -> Option<JwtClaims> {
    let t = token.trim();
    let t = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => t[7..].trim_start(),
        _ => t,
    };
    let mut parts = t.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 8192 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        sub: Option<serde_json::Value>,
        sid: Option<serde_json::Value>,
        jti: Option<serde_json::Value>,
    }
    let c: Claims = serde_json::from_slice(&bytes).ok()?;
    let text = |v: Option<serde_json::Value>| match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(JwtClaims {
        sub: text(c.sub),
        session: text(c.sid).or_else(|| text(c.jti)),
    })
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name)
            .then(|| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

/// Whether a path segment is an object id rather than part of the route's shape: all digits;
/// a UUID (8-4-4-4-12 hex); 16+ hex digits (hashes, Mongo ids); anything with `@`; digits
/// with a short extension (`12345.json`); or 20+ bytes of mostly letters and digits mixed
/// (base64/base62 ids, ULIDs). One pass over the bytes (this runs for every segment of every
/// path); [`tests::is_id_segment_reference`] is the same rule written plainly.
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let (mut digits, mut alpha) = (0usize, 0usize);
    let (mut hex, mut hex_or_dash, mut at) = (true, true, false);
    let mut last_dot = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'f' | b'A'..=b'F' => alpha += 1,
            b'g'..=b'z' | b'G'..=b'Z' => {
                alpha += 1;
                (hex, hex_or_dash) = (false, false);
            }
            b'-' => hex = false,
            _ => {
                (hex, hex_or_dash) = (false, false);
                at |= c == b'@';
                if c == b'.' {
                    last_dot = Some(i);
                }
            }
        }
    }
    if digits == b.len() {
        return true;
    }
    let uuid = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') && hex_or_dash;
    if uuid || (b.len() >= 16 && hex) || at {
        return true;
    }
    if let Some(d) = last_dot
        && d > 0
        && b[..d].iter().all(u8::is_ascii_digit)
        && b.len() - d - 1 <= 5
    {
        return true;
    }
    b.len() >= 20 && digits >= 2 && alpha >= 2 && digits + alpha + 4 >= b.len()
}

/// Appends the device subject of a request to `out` from the client's fingerprints; false
/// (nothing written) when it has none. The device is the client *software*: the TLS
/// fingerprint (JA4 or JA3) as logged, and of a JA4H only the part that names the client's
/// header set (`JA4H_b`; its other parts vary per request or per user), joined by `_`:
/// `t13d1516h2_8daaf6152771_e5627efa2ab1_3c5f2c6b1ae9` with both, either part alone otherwise.
/// Fingerprints longer than 128 bytes are not fingerprints and are ignored.
pub fn write_device(tls: Option<&str>, http: Option<&str>, out: &mut String) -> bool {
    const MAX: usize = 128;
    let tls = tls.filter(|t| t.len() <= MAX);
    let headers = http
        .filter(|h| h.len() <= MAX)
        .and_then(|h| h.split('_').nth(1))
        .filter(|b| !b.is_empty());
    match (tls, headers) {
        (None, None) => return false,
        (Some(t), None) => out.push_str(t),
        (None, Some(b)) => {
            out.push_str("h_");
            out.push_str(b);
        }
        (Some(t), Some(b)) => {
            out.push_str(t);
            out.push('_');
            out.push_str(b);
        }
    }
    true
}

/// Appends the route of `path` (no query) to `out`: id-like segments become `{id}`, and the
/// result is cut at `max` bytes on a character boundary.
pub fn write_route(path: &str, max: usize, out: &mut String) {
    let start = out.len();
    let mut rest = path;
    loop {
        // Segments are short: a plain loop beats a `memchr` call.
        let (seg, next) = match rest.bytes().position(|c| c == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if is_id_segment(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
        match next {
            Some(n) if out.len() - start <= max => {
                out.push('/');
                rest = n;
            }
            _ => break,
        }
    }
    if out.len() - start > max {
        let mut cut = start + max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
}

/// Splits a logged request target into path and query (absolute-form targets lose their
/// scheme and authority).
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let t = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        memchr::memchr(b'/', rest.as_bytes()).map_or("/", |i| &rest[i..])
    } else {
        target
    };
    match memchr::memchr(b'?', t.as_bytes()) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    }
}

/// `TLSv1.3` for any of `TLSv1.3`, `1.3`, `tlsv1.3`, `TLS 1.3`.
pub fn tls_version(v: &str) -> std::borrow::Cow<'_, str> {
    let t = crate::record::trim(v);
    if let Some(r) = t.strip_prefix("TLSv")
        && !r.is_empty()
        && r.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        // Already the canonical form (what most gateways log).
        return std::borrow::Cow::Borrowed(t);
    }
    let digits = t
        .trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == ' ')
        .trim();
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    // Bytes, not `t[..3]`: a multi-byte character there must not panic.
    let b = t.as_bytes();
    let tls_or_bare = b.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"tls"))
        || b.first().is_some_and(u8::is_ascii_digit);
    if numeric && tls_or_bare {
        if t.strip_prefix("TLSv") == Some(digits) {
            // Already the canonical form (what most gateways log): no copy.
            return std::borrow::Cow::Borrowed(t);
        }
        return std::borrow::Cow::Owned(format!("TLSv{digits}"));
    }
    std::borrow::Cow::Borrowed(t)
}

/// Bounded memo of per-token work (JWT decoding, key hashing): gateways log the same token on
/// every request of a session, so the work is done once per token, not once per line.
///
/// Keys are hashed with a per-process random seed and compared in full, so a crafted token
/// cannot collide with another's entry and borrow its identity.
#[derive(Debug)]
struct Memo<V> {
    map: HashMap<u64, (Box<str>, V), std::hash::BuildHasherDefault<Prehashed>>,
    seed: u64,
    max: usize,
}

/// The map's keys are already seeded XXH3 hashes: used as they are (SipHash over them again
/// would cost more than the rest of a hit).
#[derive(Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); fold anything else in anyway.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl<V> Memo<V> {
    fn new(max: usize) -> Self {
        let seed = std::collections::hash_map::RandomState::new();
        let seed = std::hash::BuildHasher::hash_one(&seed, 0x5eed_u64);
        Self {
            map: HashMap::default(),
            seed,
            max,
        }
    }

    fn get_or(&mut self, key: &str, f: impl FnOnce() -> V) -> &V {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.seed);
        let hit = self.map.get(&h).is_some_and(|(k, _)| &**k == key);
        if !hit {
            if self.map.len() >= self.max {
                self.map.clear();
            }
            // A different key with the same hash is replaced: correct, if slower.
            self.map.insert(h, (key.into(), f()));
        }
        &self.map[&h].1
    }
}

/// The subject columns of one record, computed by [`Normalizer::subjects`]; strings borrow
/// from the record or from the normalizer's memos.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Subjects<'a> {
    pub client_ip: Option<IpAddr>,
    pub identity: Option<&'a str>,
    pub session: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
}

/// The compiled [`NormalizeConfig`] plus its memos. One per parsing task.
#[derive(Debug)]
pub struct Normalizer {
    trusted: Vec<Cidr>,
    cfg: NormalizeConfig,
    jwt_memo: Memo<Option<JwtClaims>>,
    key_memo: Memo<String>,
    detectors: Option<Arc<Detectors>>,
    evidence: Evidence,
}

/// The built-in detectors, compiled once per process.
fn builtin_detectors() -> Result<Arc<Detectors>, IngestError> {
    Detectors::shared().map_err(|m| IngestError::config("normalize.detectors", m))
}

impl Normalizer {
    /// Validates the config; a bad CIDR is named by its key path.
    pub fn new(cfg: NormalizeConfig) -> Result<Self, IngestError> {
        let trusted = cfg
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<Cidr>()
                    .map_err(|m| IngestError::config(format!("normalize.trusted_proxies[{i}]"), m))
            })
            .collect::<Result<_, _>>()?;
        if cfg.session_cookie.trim().is_empty() {
            return Err(IngestError::config(
                "normalize.session_cookie",
                "must not be empty",
            ));
        }
        if cfg.max_route_bytes < 16 {
            return Err(IngestError::config(
                "normalize.max_route_bytes",
                "must be at least 16",
            ));
        }
        let detectors = if cfg.detectors {
            Some(builtin_detectors()?)
        } else {
            None
        };
        Ok(Self {
            trusted,
            cfg,
            jwt_memo: Memo::new(65_536),
            key_memo: Memo::new(65_536),
            detectors,
            evidence: Evidence::new(),
        })
    }

    pub fn config(&self) -> &NormalizeConfig {
        &self.cfg
    }

    /// The attack evidence in `rec`'s request (empty when detectors are off).
    pub fn inspect(&mut self, rec: &AccessRecord<'_>) -> &Evidence {
        self.evidence.clear();
        if let Some(d) = &self.detectors {
            let req = DetectRequest {
                method: rec.method.as_deref().unwrap_or("GET"),
                target: rec.target.as_deref().unwrap_or(""),
                query: rec.query.as_deref(),
                protocol: rec.protocol.as_deref(),
                user_agent: rec.user_agent.as_deref(),
                referer: rec.referer.as_deref(),
            };
            d.inspect(&req, &mut self.evidence);
        }
        &self.evidence
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client IP: the peer unless it is a trusted proxy; then (or with no peer logged) the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy. Entries to the left of
    /// that one were written by the client and are not believed.
    pub fn client_ip(&self, peer: Option<&str>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer.and_then(parse_ip);
        if let Some(p) = peer
            && !self.trusted(p)
        {
            return Some(p);
        }
        if let Some(xff) = forwarded_for {
            for entry in xff.rsplit(',') {
                if let Some(ip) = parse_ip(entry)
                    && !self.trusted(ip)
                {
                    return Some(ip);
                }
            }
        }
        peer
    }

    pub fn subjects<'a>(&'a mut self, rec: &'a AccessRecord<'_>) -> Subjects<'a> {
        let client_ip = self.client_ip(rec.peer.as_deref(), rec.forwarded_for.as_deref());
        let want_claims = self.cfg.jwt_claims && (rec.identity.is_none() || rec.session.is_none());
        let claims: Option<&JwtClaims> = match &rec.jwt {
            Some(tok) if want_claims => self.jwt_memo.get_or(tok, || jwt_claims(tok)).as_ref(),
            _ => None,
        };
        let identity = rec
            .identity
            .as_deref()
            .or_else(|| claims.and_then(|c| c.sub.as_deref()));
        let cookie_name = &self.cfg.session_cookie;
        let session = rec
            .session
            .as_deref()
            .or_else(|| claims.and_then(|c| c.session.as_deref()))
            .or_else(|| cookie_value(rec.cookie.as_deref()?, cookie_name));
        let salt = &self.cfg.api_key_salt;
        let api_key_id = match rec.api_key.as_deref() {
            Some(k) => Some(
                self.key_memo
                    .get_or(k, || api_key_id_salted(salt, k))
                    .as_str(),
            ),
            None => rec.api_key_id.as_deref(),
        };
        Subjects {
            client_ip,
            identity,
            session,
            api_key_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(trusted: &[&str]) -> Normalizer {
        Normalizer::new(NormalizeConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn client_ip_through_trusted_proxies() {
        let n = norm(&["10.0.0.0/8", "2001:db8::/32"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // untrusted peer: the header is ignored (it could be forged)
        assert_eq!(
            n.client_ip(Some("198.51.100.9:443"), Some("1.1.1.1")),
            ip("198.51.100.9")
        );
        // trusted peer: right-most untrusted entry
        assert_eq!(
            n.client_ip(Some("10.1.2.3"), Some("6.6.6.6, 203.0.113.7, 10.9.9.9")),
            ip("203.0.113.7")
        );
        // no peer logged (Envoy's default format): right-most untrusted
        assert_eq!(
            n.client_ip(None, Some("6.6.6.6, 203.0.113.7")),
            ip("203.0.113.7")
        );
        assert_eq!(
            n.client_ip(Some("[2001:db8::1]:80"), Some("garbage, 7.7.7.7")),
            ip("7.7.7.7")
        );
        assert_eq!(n.client_ip(Some("::ffff:1.2.3.4"), None), ip("1.2.3.4"));
        assert_eq!(n.client_ip(Some("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(n.client_ip(Some("not-an-ip"), None), None);
        assert!(
            Normalizer::new(NormalizeConfig {
                trusted_proxies: vec!["10.0.0.0/33".into()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
            .contains("normalize.trusted_proxies[0]")
        );
    }

    /// `is_id_segment` as it was first written, one rule at a time: the oracle for the
    /// single-pass version.
    pub(super) fn is_id_segment_reference(seg: &str) -> bool {
        let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        let b = seg.as_bytes();
        if b.is_empty() {
            return false;
        }
        if b.iter().all(u8::is_ascii_digit) {
            return true;
        }
        if b.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && is_hex(&seg.replace('-', ""))
        {
            return true;
        }
        if b.len() >= 16 && is_hex(seg) {
            return true;
        }
        if seg.contains('@') {
            return true;
        }
        if let Some((stem, ext)) = seg.rsplit_once('.')
            && !stem.is_empty()
            && stem.bytes().all(|c| c.is_ascii_digit())
            && ext.len() <= 5
        {
            return true;
        }
        if b.len() >= 20 {
            let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
            let alpha = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
            if digits >= 2 && alpha >= 2 && digits + alpha + 4 >= b.len() {
                return true;
            }
        }
        false
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn id_segments_match_the_reference(
            seg in proptest::prop_oneof![
                "[0-9a-fA-F.@-]{0,40}",
                "[0-9a-zA-Z._~-]{0,40}",
                "[0-9]{1,10}\\.[a-z]{0,7}",
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-fg]{4}-[0-9a-f-]{12}",
                "\\PC{0,30}",
            ]
        ) {
            proptest::prop_assert_eq!(is_id_segment(&seg), is_id_segment_reference(&seg), "{:?}", seg);
        }

        #[test]
        fn routes_and_targets_match_the_reference(
            path in "(/([0-9a-zA-Z._@-]{0,24}|\\PC{0,6})){0,12}(\\?[a-z=&]{0,8})?",
            max in 16usize..64,
        ) {
            // the route as first written: `split('/')` and the reference segment rule
            let mut want = String::new();
            for (i, seg) in path.split('/').enumerate() {
                if i > 0 {
                    want.push('/');
                }
                want.push_str(if is_id_segment_reference(seg) { "{id}" } else { seg });
                if want.len() > max {
                    break;
                }
            }
            if want.len() > max {
                let mut cut = max;
                while !want.is_char_boundary(cut) {
                    cut -= 1;
                }
                want.truncate(cut);
            }
            let mut got = String::from("prefix");
            write_route(&path, max, &mut got);
            proptest::prop_assert_eq!(&got["prefix".len()..], want.as_str());
            let t = format!("https://h.example{path}");
            let split = |t: &str| -> (String, Option<String>) {
                let t = t.strip_prefix("https://").map_or(t, |r| r.find('/').map_or("/", |i| &r[i..]));
                match t.split_once('?') {
                    Some((p, q)) => (p.into(), Some(q.into())),
                    None => (t.into(), None),
                }
            };
            let (p, q) = split_target(&t);
            proptest::prop_assert_eq!((p.to_string(), q.map(String::from)), split(&t));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn ips_match_the_reference(
            s in proptest::prop_oneof![
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,4}(:[0-9]{0,6})?",
                "\\[?[0-9a-f:.]{0,20}\\]?(:[0-9]{1,5})?",
                " ?[0-9a-f:.\\[\\] x-]{0,24} ?",
            ]
        ) {
            // the original: brackets, then any address, then address:port
            let reference = |s: &str| -> Option<IpAddr> {
                let s = s.trim();
                let ip = if let Some(rest) = s.strip_prefix('[') {
                    rest.split_once(']')?.0.parse().ok()?
                } else if let Ok(ip) = s.parse::<IpAddr>() {
                    ip
                } else {
                    let (host, port) = s.rsplit_once(':')?;
                    port.parse::<u16>().ok()?;
                    host.parse().ok()?
                };
                Some(match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                })
            };
            proptest::prop_assert_eq!(parse_ip(&s), reference(&s), "{:?}", s);
        }

        #[test]
        fn ipv4_matches_std(s in "[0-9.]{0,18}|(0|1|25|255|256|00|01|099|1000)(\\.(0|1|25|255|256|00|01|099|1000)){0,4}") {
            proptest::prop_assert_eq!(ipv4(s.as_bytes()), s.parse::<std::net::Ipv4Addr>().ok(), "{:?}", s);
        }

        #[test]
        fn tls_versions_match_the_reference(
            s in "[ a-zA-Z0-9.]{1,12}| ?(TLSv|TLS|tlsv|TLS |SSLv)?[0-9.]{0,4}[a-z ]?"
        ) {
            let reference = |v: &str| -> String {
                let t = v.trim();
                let digits = t
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == ' ')
                    .trim();
                let numeric =
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                let tls_or_bare = (t.len() >= 3 && t[..3].eq_ignore_ascii_case("tls"))
                    || t.as_bytes().first().is_some_and(u8::is_ascii_digit);
                if numeric && tls_or_bare {
                    return format!("TLSv{digits}");
                }
                t.to_string()
            };
            proptest::prop_assert_eq!(tls_version(&s).into_owned(), reference(&s));
        }
    }

    #[test]
    fn tls_version_does_not_panic_on_odd_input() {
        assert_eq!(tls_version(""), "");
        assert_eq!(tls_version("éé"), "éé");
        assert_eq!(tls_version("TLSv1.3"), "TLSv1.3");
        assert!(matches!(
            tls_version("TLSv1.3"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn routes_template_ids() {
        let r = |p: &str| {
            let mut s = String::new();
            write_route(p, 256, &mut s);
            s
        };
        assert_eq!(
            r("/users/123/orders/9f8e7d6c-1234-4abc-9def-001122334455"),
            "/users/{id}/orders/{id}"
        );
        assert_eq!(r("/files/5f1d7c2a9b3e4d0012ab34cd"), "/files/{id}");
        assert_eq!(r("/api/v1/products/42.json"), "/api/v1/products/{id}");
        assert_eq!(r("/users/alice@example.com"), "/users/{id}");
        assert_eq!(r("/api/v1/search"), "/api/v1/search");
        assert_eq!(r("/t/01HF3Z6Q7X9ABCDEF0123456"), "/t/{id}");
        assert_eq!(r("/"), "/");
        let long = format!("/{}", "a/".repeat(400));
        assert!(r(&long).len() <= 256);
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
        assert_eq!(split_target("http://h.example/a?"), ("/a", Some("")));
    }

    #[test]
    fn jwt_cookie_and_key() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let tok = format!(
            "Bearer {}.{}.sig",
            B64.encode(br#"{"alg":"RS256"}"#),
            B64.encode(br#"{"sub":"alice","sid":"s-1","exp":1}"#)
        );
        let c = jwt_claims(&tok).unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.session.as_deref(), Some("s-1"));
        assert_eq!(jwt_claims("Bearer nope"), None);
        assert_eq!(jwt_claims("a.!!!.c"), None);
        assert_eq!(
            cookie_value("a=1; session=xyz; b=2", "session"),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", "session"), None);
        let id = api_key_id("vk_live_abc");
        assert_eq!(id.len(), 32);
        assert_ne!(id, api_key_id_salted("pepper", "vk_live_abc"));
        assert_eq!(tls_version("1.3"), "TLSv1.3");
        assert_eq!(tls_version("TLSv1.2"), "TLSv1.2");
        assert_eq!(tls_version("tlsv1.3"), "TLSv1.3");
    }
}
