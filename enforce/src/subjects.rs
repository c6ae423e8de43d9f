//! The subjects of a request: client IP, identity and session (from a verified JWT or the
//! session cookie) and API key id.
//!
//! The client IP and the API key id are computed exactly as `vigil-ingest`'s normalizer
//! computes them from gateway logs (`ingest/src/normalize.rs`), so a decision made on events
//! matches the request the proxy sees. The functions are duplicated rather than shared because
//! `enforce` depends on no other vigil crate; the tests pin the same cases.

use crate::config::ProxySettings;
use crate::decision::{Subject, SubjectKind};
use crate::error::EnforceError;
use crate::jwt::JwtVerifier;
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderName};
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

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

/// Reads an address as gateways write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:443`, `::1`.
/// IPv4-mapped IPv6 addresses are read as IPv4.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
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
    Some(canonical_ip(ip))
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4, as ingest stores it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The id of an API key: lowercase hex of the first 16 bytes of SHA-256(salt ‖ key.trim()).
/// Identical to ingest's `api_key_id_salted`.
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

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name)
            .then(|| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

/// All values of a header joined as one list (`sep` between lines). HTTP/2 clients send one
/// `cookie` field per cookie; proxies may send `X-Forwarded-For` on several lines.
pub fn joined(headers: &HeaderMap, name: &HeaderName, sep: &str) -> Option<String> {
    let mut it = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = it.next()?;
    let mut s = first.to_string();
    for v in it {
        s.push_str(sep);
        s.push_str(v);
    }
    Some(s)
}

/// The user name of `Authorization: Basic` (RFC 7617), when it is well-formed and not empty.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, creds) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, _) = text.split_once(':')?;
    (!user.is_empty() && user.len() <= 256).then(|| user.to_string())
}

/// The subjects found in one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestSubjects {
    pub client_ip: Option<IpAddr>,
    /// The verified token's `sub`.
    pub identity: Option<String>,
    /// The verified token's `sid` (else `jti`, as ingest reads it), else the session cookie.
    pub session: Option<String>,
    pub api_key_id: Option<String>,
    /// The verified token's `acr`, if any.
    pub acr: Option<String>,
    /// The client's device ([`crate::fingerprint::device_id`]): from the proxy's own
    /// fingerprints, or for forward-auth from the header the gateway sets.
    pub device: Option<String>,
}

impl RequestSubjects {
    /// As [`Subject`]s, for the decision table.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut v = Vec::with_capacity(4);
        if let Some(id) = &self.identity {
            v.push(Subject::new(SubjectKind::Identity, id.clone()));
        }
        if let Some(s) = &self.session {
            v.push(Subject::new(SubjectKind::Session, s.clone()));
        }
        if let Some(ip) = self.client_ip {
            v.push(Subject::new(SubjectKind::Ip, ip.to_string()));
        }
        if let Some(k) = &self.api_key_id {
            v.push(Subject::new(SubjectKind::ApiKey, k.clone()));
        }
        if let Some(d) = &self.device {
            v.push(Subject::new(SubjectKind::Device, d.clone()));
        }
        v
    }
}

/// Finds the subjects of requests; built once from [`ProxySettings`].
#[derive(Debug, Clone)]
pub struct SubjectExtractor {
    trusted: Arc<[Cidr]>,
    jwt: Option<Arc<JwtVerifier>>,
    api_key_header: Option<HeaderName>,
    api_key_salt: String,
    session_cookie: String,
    basic_auth_identity: bool,
}

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

impl SubjectExtractor {
    pub fn new(settings: &ProxySettings, jwt: Option<Arc<JwtVerifier>>) -> Self {
        SubjectExtractor {
            trusted: settings.trusted_proxies.clone().into(),
            jwt,
            api_key_header: settings.api_key_header.clone(),
            api_key_salt: settings.api_key_salt.clone(),
            session_cookie: settings.session_cookie.clone(),
            basic_auth_identity: settings.basic_auth_identity,
        }
    }

    pub fn jwt(&self) -> Option<&Arc<JwtVerifier>> {
        self.jwt.as_ref()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client IP: the peer unless it is a trusted proxy; then the right-most
    /// `X-Forwarded-For` entry that is not a trusted proxy (entries left of it were written by
    /// the client and are not believed); the peer if every entry is trusted.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer.map(canonical_ip);
        if let Some(p) = peer
            && !self.is_trusted(p)
        {
            return Some(p);
        }
        if let Some(xff) = forwarded_for {
            for entry in xff.rsplit(',') {
                if let Some(ip) = parse_ip(entry)
                    && !self.is_trusted(ip)
                {
                    return Some(ip);
                }
            }
        }
        peer
    }

    /// The subjects of a request from `peer` with `headers`. A token that is present but does
    /// not verify is an error (401), never an anonymous request.
    pub fn extract(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<RequestSubjects, EnforceError> {
        let xff = joined(headers, &XFF, ", ");
        let client_ip = self.client_ip(Some(peer), xff.as_deref());
        self.extract_with_ip(client_ip, headers)
    }

    /// [`extract`](Self::extract) with the client IP already known (forward-auth).
    pub fn extract_with_ip(
        &self,
        client_ip: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Result<RequestSubjects, EnforceError> {
        let cookies = joined(headers, &COOKIE, "; ");
        let mut out = RequestSubjects {
            client_ip,
            ..Default::default()
        };
        if let Some(jwt) = &self.jwt
            && let Some(token) = self.token(jwt, headers, cookies.as_deref())?
        {
            let claims = jwt.verify(token.trim())?;
            out.identity = claims.sub;
            out.session = claims.session;
            out.acr = claims.acr;
        }
        if out.identity.is_none() && self.basic_auth_identity {
            out.identity = basic_user(headers);
        }
        if out.session.is_none() {
            out.session = cookies
                .as_deref()
                .and_then(|c| cookie_value(c, &self.session_cookie))
                .map(str::to_owned);
        }
        if let Some(h) = &self.api_key_header
            && let Some(v) = headers.get(h)
        {
            let raw = v
                .to_str()
                .map_err(|_| EnforceError::BadRequest(format!("`{h}` is not visible ASCII")))?;
            if !raw.trim().is_empty() {
                out.api_key_id = Some(api_key_id_salted(&self.api_key_salt, raw));
            }
        }
        Ok(out)
    }

    /// The token: `Authorization: Bearer <t>`, else the token cookie. Another authorization
    /// scheme (Basic, ...) is not ours to judge and yields no token.
    fn token<'h>(
        &self,
        jwt: &JwtVerifier,
        headers: &'h HeaderMap,
        cookies: Option<&'h str>,
    ) -> Result<Option<std::borrow::Cow<'h, str>>, EnforceError> {
        let mut auths = headers.get_all(AUTHORIZATION).iter();
        if let Some(v) = auths.next() {
            if auths.next().is_some() {
                return Err(EnforceError::InvalidToken(
                    "more than one Authorization header".into(),
                ));
            }
            let v = v
                .to_str()
                .map_err(|_| EnforceError::InvalidToken("Authorization is not ASCII".into()))?;
            match v.get(..7) {
                Some(p) if p.eq_ignore_ascii_case("bearer ") => {
                    return Ok(Some(std::borrow::Cow::Borrowed(&v[7..])));
                }
                _ => {}
            }
        }
        if let (Some(name), Some(c)) = (jwt.cookie(), cookies)
            && let Some(t) = cookie_value(c, name)
        {
            return Ok(Some(std::borrow::Cow::Owned(t.to_string())));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyConfig;
    use hyper::header::HeaderValue;

    fn ex(trusted: &[&str]) -> SubjectExtractor {
        let cfg = ProxyConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            api_key_salt: "pepper".into(),
            ..Default::default()
        };
        SubjectExtractor::new(&cfg.build().unwrap(), None)
    }

    /// The same cases as ingest's `client_ip_through_trusted_proxies`.
    #[test]
    fn client_ip_matches_ingest() {
        let n = ex(&["10.0.0.0/8", "2001:db8::/32"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let peer = |s: &str| parse_ip(s);
        // untrusted peer: the header is ignored (it could be forged)
        assert_eq!(
            n.client_ip(peer("198.51.100.9:443"), Some("1.1.1.1")),
            ip("198.51.100.9")
        );
        // trusted peer: right-most untrusted entry
        assert_eq!(
            n.client_ip(peer("10.1.2.3"), Some("6.6.6.6, 203.0.113.7, 10.9.9.9")),
            ip("203.0.113.7")
        );
        assert_eq!(
            n.client_ip(None, Some("6.6.6.6, 203.0.113.7")),
            ip("203.0.113.7")
        );
        assert_eq!(
            n.client_ip(peer("[2001:db8::1]:80"), Some("garbage, 7.7.7.7")),
            ip("7.7.7.7")
        );
        assert_eq!(n.client_ip(peer("::ffff:1.2.3.4"), None), ip("1.2.3.4"));
        assert_eq!(n.client_ip(peer("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(
            n.client_ip(peer("10.0.0.1"), Some("10.0.0.2")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn headers_to_subjects() {
        let n = ex(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("cookie", HeaderValue::from_static("session=s-42"));
        h.insert("x-api-key", HeaderValue::from_static("  vk_live_abc "));
        // without JWT settings, a bearer token is passed through and gives no identity
        h.insert("authorization", HeaderValue::from_static("Bearer a.b.c"));
        let s = n.extract("10.1.1.1".parse().unwrap(), &h).unwrap();
        assert_eq!(s.client_ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(s.session.as_deref(), Some("s-42"));
        assert_eq!(s.identity, None);
        // the salted hash ingest computes for the same key and salt
        assert_eq!(
            s.api_key_id.as_deref(),
            Some(api_key_id_salted("pepper", "vk_live_abc").as_str())
        );
        assert_eq!(api_key_id_salted("", "vk_live_abc").len(), 32);
        assert_ne!(api_key_id_salted("", "k"), api_key_id_salted("pepper", "k"));
        let keys: Vec<String> = s.subjects().iter().map(Subject::key).collect();
        assert_eq!(keys[0], "session:s-42");
        assert_eq!(keys[1], "ip:203.0.113.7");
        assert!(keys[2].starts_with("api_key:"));
        // forged XFF from an untrusted peer is ignored
        let s = n.extract("198.51.100.1".parse().unwrap(), &h).unwrap();
        assert_eq!(s.client_ip, Some("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn basic_auth_user_is_the_identity_only_when_asked() {
        let mut h = HeaderMap::new();
        // "alice:wrong-password"
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic YWxpY2U6d3JvbmctcGFzc3dvcmQ="),
        );
        let off = ex(&[]);
        assert_eq!(
            off.extract("1.2.3.4".parse().unwrap(), &h)
                .unwrap()
                .identity,
            None
        );
        let cfg = ProxyConfig {
            basic_auth_identity: true,
            ..Default::default()
        };
        let on = SubjectExtractor::new(&cfg.build().unwrap(), None);
        let s = on.extract("1.2.3.4".parse().unwrap(), &h).unwrap();
        assert_eq!(s.identity.as_deref(), Some("alice"));
        for bad in [
            "Basic !!!",
            "Basic OnBhc3N3b3Jk",
            "Basic bm9jb2xvbg==",
            "Bearer x",
        ] {
            h.insert("authorization", HeaderValue::from_static(bad));
            assert_eq!(
                on.extract("1.2.3.4".parse().unwrap(), &h).unwrap().identity,
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn api_key_id_is_ingests() {
        // sha256("vk_live_abc"), first 16 bytes: computed independently with coreutils
        // `printf vk_live_abc | sha256sum`.
        assert_eq!(
            api_key_id_salted("", "vk_live_abc"),
            API_KEY_ID_OF_VK_LIVE_ABC
        );
    }

    const API_KEY_ID_OF_VK_LIVE_ABC: &str = "cb3d2968ced718b79c7c3e3017179cac";
}
