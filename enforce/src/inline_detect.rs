//! Inline blocking on request content (`[proxy.inline_detect]`): the request-content detectors
//! of `vigil-detect` run on the request itself, before it reaches the upstream, in addition to
//! the decision for its subjects.
//!
//! What is inspected: the method, the request target (path and query, decoded the way a
//! server decodes them), `User-Agent` and `Referer`. Bodies are not: the proxy streams them.
//! Only **strong** evidence in one of the configured classes counts; weak evidence (a private
//! address in a URL parameter, a backup-file extension) is left to scoring.
//!
//! Modes: `off` (the default) never calls the detectors, so the request path pays one branch;
//! `monitor` forwards and records what it would have blocked (access event `enforced =
//! monitor`, the trust header `x-vigil-action: monitor`, the counter); `block` answers 403
//! before the upstream (access event `enforced = block`, without a decision id).
//!
//! The detectors are compiled once per process, on the first build of a config that turns
//! inline detection on, and shared by every event loop and the forward-auth endpoint.

use crate::error::EnforceError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, REFERER, USER_AGENT};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use vigil_detect::{AttackClass, Detectors, Evidence, Strength};

/// What inline detection does with a request that carries strong evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InlineMode {
    /// The detectors are not run.
    #[default]
    Off,
    /// Forward the request; record that it would have been blocked.
    Monitor,
    /// Answer 403 without forwarding.
    Block,
}

impl InlineMode {
    /// The name used in config, metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            InlineMode::Off => "off",
            InlineMode::Monitor => "monitor",
            InlineMode::Block => "block",
        }
    }
}

/// The classes acted on when `classes` is not set: injection and exploit syntax, whose strong
/// detectors had full precision or close to it on the benign corpus (`detect/EVAL.md`).
/// Left out: `file_inclusion` (the one benign false positive, a search for `etc/passwd`, and
/// the lowest precision), `sensitive_file` (probes of files the upstream should answer 404
/// anyway), `scanner_ua` (a user agent is the client's to choose; it is a scoring signal) and
/// `protocol` (unknown methods and odd encodings that some clients really send).
pub const DEFAULT_CLASSES: [AttackClass; 7] = [
    AttackClass::Sqli,
    AttackClass::Xss,
    AttackClass::Traversal,
    AttackClass::Cmdi,
    AttackClass::Ssti,
    AttackClass::Ssrf,
    AttackClass::CveProbe,
];

/// A set of attack classes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(u16);

impl ClassSet {
    /// The empty set.
    pub const fn empty() -> ClassSet {
        ClassSet(0)
    }

    const fn bit(c: AttackClass) -> u16 {
        1 << c as u8
    }

    pub fn insert(&mut self, c: AttackClass) {
        self.0 |= Self::bit(c);
    }

    pub fn contains(self, c: AttackClass) -> bool {
        self.0 & Self::bit(c) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in [`AttackClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = AttackClass> {
        AttackClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<AttackClass> for ClassSet {
    fn from_iter<I: IntoIterator<Item = AttackClass>>(iter: I) -> Self {
        let mut s = ClassSet::empty();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

/// Comma-separated names: `sqli,xss`.
impl fmt::Display for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClassSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClassSet({self})")
    }
}

/// What the detectors found that inline detection acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The configured classes with strong evidence.
    pub classes: ClassSet,
    /// The strong matches in those classes, for the log:
    /// `sqli in query parameter `id` (sqli.libinjection)`.
    pub evidence: String,
}

/// The compiled `[proxy.inline_detect]` (only built when the mode is not `off`).
#[derive(Clone)]
pub struct InlineDetector {
    mode: InlineMode,
    classes: ClassSet,
    detectors: Arc<Detectors>,
}

impl fmt::Debug for InlineDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineDetector")
            .field("mode", &self.mode)
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

impl InlineDetector {
    /// Inline detection in `mode` (`monitor` or `block`) for `classes`, with the process's
    /// built-in detectors (compiled here on first use). `path` names the config section in
    /// errors.
    pub fn new(path: &str, mode: InlineMode, classes: ClassSet) -> Result<Self, EnforceError> {
        if mode == InlineMode::Off {
            return Err(EnforceError::config(
                format!("{path}.mode"),
                "an inline detector needs `monitor` or `block`",
            ));
        }
        if classes.is_empty() {
            return Err(EnforceError::config(
                format!("{path}.classes"),
                "must name at least one attack class",
            ));
        }
        let detectors = Detectors::shared()
            .map_err(|m| EnforceError::config(path, format!("compiling the detectors: {m}")))?;
        Ok(InlineDetector {
            mode,
            classes,
            detectors,
        })
    }

    pub fn mode(&self) -> InlineMode {
        self.mode
    }

    pub fn classes(&self) -> ClassSet {
        self.classes
    }

    /// Inspects one request; `Some` when it carries strong evidence in a configured class.
    /// Never fails: anything undecodable is itself evidence (`protocol`) or ignored.
    pub fn inspect(&self, req: &vigil_detect::Request<'_>) -> Option<Detection> {
        let mut evidence = Evidence::new();
        self.detectors.inspect(req, &mut evidence);
        let found: ClassSet = self
            .classes
            .iter()
            .filter(|c| evidence.strength(*c) == Some(Strength::Strong))
            .collect();
        if found.is_empty() {
            return None;
        }
        let mut text = String::new();
        for m in evidence.matches() {
            if m.strength != Strength::Strong || !found.contains(m.class) {
                continue;
            }
            if !text.is_empty() {
                text.push_str("; ");
            }
            let _ = write!(text, "{} in {} ({})", m.class, m.location, m.detector);
        }
        Some(Detection {
            classes: found,
            evidence: text,
        })
    }

    /// Inspects a request given as its method, target (path and query, as sent), protocol
    /// version and headers (`User-Agent`, `Referer`; values that are not UTF-8 are read
    /// lossily rather than skipped, so a stray byte does not hide a header from the
    /// detectors).
    pub fn inspect_parts(
        &self,
        method: &str,
        target: &str,
        protocol: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Detection> {
        let text = |n| {
            headers
                .get(n)
                .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()))
        };
        let ua: Option<Cow<'_, str>> = text(USER_AGENT);
        let referer: Option<Cow<'_, str>> = text(REFERER);
        self.inspect(&vigil_detect::Request {
            method,
            target,
            query: None,
            protocol,
            user_agent: ua.as_deref(),
            referer: referer.as_deref(),
        })
    }
}

/// The 403 for a request blocked on its content: the proxy's block shape
/// (`urn:vigil:problem:blocked`), without a decision id (no decision was involved). The detail
/// names the attack classes only: detector ids and locations stay in the log, so the answer
/// does not teach a client which spelling gets through.
pub fn block_response(found: &Detection, request_id: &str) -> Response<Full<Bytes>> {
    crate::response::problem(
        StatusCode::FORBIDDEN,
        "blocked",
        &format!(
            "request blocked: its content matched attack patterns ({})",
            found.classes
        ),
        None,
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(mode: InlineMode, classes: &[AttackClass]) -> InlineDetector {
        InlineDetector::new(
            "proxy.inline_detect",
            mode,
            classes.iter().copied().collect(),
        )
        .unwrap()
    }

    fn inspect(d: &InlineDetector, target: &str) -> Option<Detection> {
        d.inspect_parts("GET", target, Some("HTTP/1.1"), &HeaderMap::new())
    }

    #[test]
    fn strong_evidence_in_a_configured_class_only() {
        let d = detector(InlineMode::Block, &DEFAULT_CLASSES);
        let found = inspect(
            &d,
            "/products?id=1%20UNION%20SELECT%20password%20FROM%20users--",
        )
        .expect("SQL injection found");
        assert!(found.classes.contains(AttackClass::Sqli), "{found:?}");
        assert!(found.evidence.contains("query parameter `id`"), "{found:?}");
        for benign in [
            "/search?q=select+a+plan",
            "/users?name=O%27Brien",
            "/orders?filter=%7B%22status%22%3A%22open%22%2C%22tags%22%3A%5B%22a%22%2C%22b%22%5D%7D",
            "/",
        ] {
            assert_eq!(inspect(&d, benign), None, "{benign}");
        }
        // the same payload with only xss configured is not acted on
        let xss_only = detector(InlineMode::Block, &[AttackClass::Xss]);
        assert_eq!(
            inspect(
                &xss_only,
                "/products?id=1%20UNION%20SELECT%20password%20FROM%20users--"
            ),
            None
        );
        let found = inspect(&xss_only, "/p?q=%3Cscript%3Ealert(1)%3C/script%3E").unwrap();
        assert_eq!(found.classes.to_string(), "xss");
    }

    #[test]
    fn headers_are_inspected_even_when_not_utf8() {
        let d = detector(InlineMode::Monitor, &[AttackClass::Sqli]);
        let mut h = HeaderMap::new();
        h.insert(
            USER_AGENT,
            HeaderValue::from_bytes(b"x\xff' OR 1=1 -- ").unwrap(),
        );
        let found = d.inspect_parts("GET", "/", None, &h);
        assert!(found.is_some_and(|f| f.evidence.contains("user-agent")));
    }

    #[test]
    fn construction_needs_a_mode_and_classes() {
        let e = InlineDetector::new("proxy.inline_detect", InlineMode::Off, ClassSet(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.inline_detect.mode"), "{e}");
        let e = InlineDetector::new("proxy.inline_detect", InlineMode::Block, ClassSet::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.inline_detect.classes"), "{e}");
    }

    #[tokio::test]
    async fn block_response_names_classes_not_detectors() {
        use http_body_util::BodyExt as _;
        let found = Detection {
            classes: [AttackClass::Sqli, AttackClass::Xss].into_iter().collect(),
            evidence: "sqli in query parameter `id` (sqli.libinjection)".into(),
        };
        let r = block_response(&found, "r1");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()["content-type"], crate::response::PROBLEM_JSON);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["type"], "urn:vigil:problem:blocked");
        assert_eq!(j["request_id"], "r1");
        assert!(j.get("decision_id").is_none(), "{j}");
        let detail = j["detail"].as_str().unwrap();
        assert!(detail.contains("(sqli,xss)"), "{detail}");
        assert!(!detail.contains("libinjection"), "{detail}");
    }
}
