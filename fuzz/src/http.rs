//! Forward-auth and subject-extraction invariants.
//!
//! An input is a check request written as text, so corpus files read like what a gateway
//! sends:
//!
//! ```text
//! GET /v1/authz/api/items?id=1 10.1.2.3
//! x-original-uri: /api/items?id=1
//! authorization: Bearer eyJ...
//! ```
//!
//! The first line is `METHOD PATH-AND-QUERY PEER` (missing parts take defaults); each further
//! line is a header, `name: value`. Bytes that cannot be a header name are skipped; header
//! values keep any bytes HTTP allows, so non-ASCII values reach the code that rejects them.

use crate::jwt::{SECRET, sign};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vigil_enforce::authz::{CallerStyle, check, original_request};
use vigil_enforce::config::{JwtConfig, JwtKeyConfig, ProxyConfig, StepUpConfig};
use vigil_enforce::subjects::{api_key_id_salted, canonical_ip, cookie_value, joined, parse_ip};
use vigil_enforce::{
    Action, Decision, DecisionTable, Enforcement, Subject, SubjectKind, TableEnforcer,
};

/// The peers' and headers' trusted proxies.
const TRUSTED: [&str; 3] = ["10.0.0.0/8", "127.0.0.1", "::1"];
const SALT: &str = "fuzz-salt";

/// One check request.
pub struct CheckRequest {
    pub method: Method,
    pub path_and_query: String,
    pub peer: IpAddr,
    pub headers: HeaderMap,
}

impl CheckRequest {
    pub fn parse(data: &[u8]) -> CheckRequest {
        let mut lines = data.split(|b| *b == b'\n');
        let first = lines.next().unwrap_or_default();
        let mut parts = first.split(|b| *b == b' ').filter(|p| !p.is_empty());
        let method = parts
            .next()
            .and_then(|m| Method::from_bytes(m).ok())
            .unwrap_or(Method::GET);
        let path_and_query = parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| "/v1/authz".into());
        let peer = parts
            .next()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.trim().parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::from([10, 0, 0, 1]));
        let mut headers = HeaderMap::new();
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                headers.append(n, v);
            }
        }
        CheckRequest {
            method,
            path_and_query,
            peer,
            headers,
        }
    }
}

/// The enforcement point under test: forward-auth with every option that reads a header on,
/// JWT verification with one HMAC key, and a decision table with a decision per action that
/// leaves a request's fate to its subjects alone (a throttle would depend on earlier inputs).
pub fn enforcement() -> &'static Arc<Enforcement<TableEnforcer>> {
    static ENF: OnceLock<Arc<Enforcement<TableEnforcer>>> = OnceLock::new();
    ENF.get_or_init(|| {
        let cfg = ProxyConfig {
            trusted_proxies: TRUSTED.iter().map(|s| s.to_string()).collect(),
            api_key_salt: SALT.into(),
            basic_auth_identity: true,
            device_header: "x-client-ja4".into(),
            jwt: JwtConfig {
                keys: vec![JwtKeyConfig {
                    kid: None,
                    algorithm: "HS256".into(),
                    secret: Some(SECRET.into()),
                    pem_path: None,
                }],
                algorithms: vec!["HS256".into()],
                cookie: Some("vigil_token".into()),
                ..Default::default()
            },
            step_up: StepUpConfig {
                redirect_url: Some("https://idp.example/step-up".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let settings = cfg.build().expect("the fuzz proxy config is valid");
        let table = Arc::new(DecisionTable::new());
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        for (kind, id, action) in [
            (SubjectKind::Ip, "203.0.113.66", Action::Block),
            (SubjectKind::Identity, "mallory", Action::Block),
            (SubjectKind::Identity, "eve", Action::StepUp),
            (SubjectKind::Session, "s-stolen", Action::StepUp),
            (SubjectKind::Ip, "198.51.100.9", Action::Monitor),
        ] {
            table
                .insert(Decision::new(
                    Subject::new(kind, id),
                    action,
                    0.9,
                    "fuzz",
                    ten_years,
                ))
                .expect("a fuzz decision is valid");
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(Enforcement::new(settings, TableEnforcer::new(table), None))
            .expect("the fuzz enforcement point builds")
    })
}

/// A signed token for the corpus and for tests: `claims` under the fuzz key.
pub fn token(claims: &serde_json::Value) -> String {
    sign(
        br#"{"alg":"HS256","typ":"JWT"}"#,
        claims.to_string().as_bytes(),
    )
}

fn header_str<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
    h.get(n)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Runs one check request through `original_request`, subject extraction and `check`.
pub fn check_request(data: &[u8]) {
    let req = CheckRequest::parse(data);
    let enf = enforcement();
    let ex = enf.extractor();
    let h = &req.headers;
    let peer = canonical_ip(req.peer);
    let trusted = ex.is_trusted(peer);

    let orig = original_request(enf, &req.method, &req.path_and_query, h, req.peer);
    let nginx = h.contains_key("x-original-uri") || h.contains_key("x-original-method");
    let traefik = h.contains_key("x-forwarded-uri") || h.contains_key("x-forwarded-method");
    let style = if nginx {
        CallerStyle::Nginx
    } else if traefik {
        CallerStyle::Traefik
    } else {
        CallerStyle::Envoy
    };
    assert_eq!(orig.style, style, "caller style");
    if !trusted {
        // nothing a client-controlled header says moves the client away from the peer
        assert_eq!(orig.client_ip, Some(peer), "untrusted peer {peer}");
    } else if let Some(ip) = orig.client_ip {
        // a trusted peer's client is the peer, X-Real-IP (NGINX) or an X-Forwarded-For entry
        let xff = joined(h, &HeaderName::from_static("x-forwarded-for"), ",");
        let from_xff = xff
            .as_deref()
            .is_some_and(|x| x.split(',').any(|e| parse_ip(e) == Some(ip)));
        let from_real_ip = nginx && header_str(h, "x-real-ip").and_then(parse_ip) == Some(ip);
        assert!(
            ip == peer || from_xff || from_real_ip,
            "client {ip} from nowhere"
        );
    }
    match style {
        CallerStyle::Nginx => {
            if let Some(u) = header_str(h, "x-original-uri") {
                assert_eq!(orig.uri, u, "NGINX original URI");
            }
        }
        CallerStyle::Traefik => {
            if let Some(u) = header_str(h, "x-forwarded-uri") {
                assert_eq!(orig.uri, u, "Traefik original URI");
            }
        }
        CallerStyle::Envoy => assert_eq!(orig.method, req.method, "Envoy original method"),
    }

    let subjects = ex.extract_with_ip(orig.client_ip, h);
    if let Ok(s) = &subjects {
        check_subjects(h, s);
    }
    // the same request from the peer directly: the same client as the Envoy/Traefik reading
    let direct = ex.extract(req.peer, h);
    if style != CallerStyle::Nginx
        && let (Ok(a), Ok(b)) = (&subjects, &direct)
    {
        assert_eq!(a, b, "extract and extract_with_ip agree");
    }

    let resp = check(enf, &req.method, &req.path_and_query, h, req.peer);
    let status = resp.status();
    let path = req.path_and_query.split('?').next().unwrap_or_default();
    let ours = path == "/v1/authz" || path.starts_with("/v1/authz/");
    if !ours {
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} is not the endpoint");
        return;
    }
    if style == CallerStyle::Envoy {
        assert!(
            orig.uri.starts_with('/'),
            "Envoy original URI {:?}",
            orig.uri
        );
    }
    assert!(
        matches!(
            status,
            StatusCode::OK
                | StatusCode::FOUND
                | StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
        ),
        "status {status}"
    );
    if style == CallerStyle::Nginx {
        // NGINX's auth_request passes only 401 and 403 through
        assert_ne!(status, StatusCode::FOUND, "a redirect to NGINX");
    }
    match subjects {
        Err(_) => assert!(
            status.is_client_error(),
            "a request whose subjects cannot be read passes: {status}"
        ),
        Ok(s) => {
            let blocked = s.identity.as_deref() == Some("mallory")
                || s.client_ip == Some(IpAddr::from([203, 0, 113, 66]));
            if blocked {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "a blocked subject got {status}"
                );
            }
            if status == StatusCode::OK {
                let ip = s.client_ip.map(|ip| ip.to_string());
                for (name, want) in [
                    ("x-vigil-identity", s.identity.as_deref()),
                    ("x-vigil-session", s.session.as_deref()),
                    ("x-vigil-api-key-id", s.api_key_id.as_deref()),
                    ("x-vigil-client-ip", ip.as_deref()),
                ] {
                    trust_header_agrees(resp.headers(), name, want);
                }
            }
        }
    }
}

/// A trust header says what was extracted, or is left out because the value cannot be a
/// header value (a token's `sub` may hold control characters).
fn trust_header_agrees(h: &HeaderMap, name: &str, want: Option<&str>) {
    match (h.get(name), want) {
        (Some(got), Some(w)) => assert_eq!(got.as_bytes(), w.as_bytes(), "{name}"),
        (Some(got), None) => panic!("{name} {got:?} for nothing extracted"),
        (None, Some(w)) => assert!(
            HeaderValue::from_bytes(w.as_bytes()).is_err(),
            "{name} {w:?} left out"
        ),
        (None, None) => {}
    }
}

/// What [`SubjectExtractor::extract_with_ip`](vigil_enforce::subjects::SubjectExtractor)
/// found agrees with the headers it read.
fn check_subjects(h: &HeaderMap, s: &vigil_enforce::subjects::RequestSubjects) {
    if let Some(k) = &s.api_key_id {
        assert!(
            k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit()),
            "api key id {k:?}"
        );
        let raw = header_str(h, "x-api-key").expect("a key id comes from the key header");
        assert_eq!(*k, api_key_id_salted(SALT, raw), "api key id");
    }
    if s.identity.is_none() {
        assert_eq!(s.acr, None, "acr without a token");
    }
    let cookies = joined(h, &HeaderName::from_static("cookie"), "; ");
    if let (Some(session), Some(c)) = (&s.session, &cookies)
        && cookie_value(c, "session") == Some(session)
    {
        return;
    }
    if let Some(session) = &s.session {
        // not the cookie: then a verified token's sid/jti
        assert!(!session.is_empty(), "empty session");
    }
}
