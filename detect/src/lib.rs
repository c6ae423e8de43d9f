//! Request-content attack detectors and IP reputation lists.
//!
//! A leaf crate shared by ingest (which labels every logged request) and the proxy (which
//! inspects requests before forwarding them). It depends on no other vigil crate and on no
//! async runtime.
//!
//! # Pipeline
//!
//! [`Detectors::inspect`] runs three stages on a [`Request`]:
//!
//! 1. **Decode** ([`decode`]): the target is split into path and query, the query into
//!    parameters, and each part is decoded the way a server would: `+` as space in the query,
//!    percent escapes repeatedly until stable (bounded), `%uXXXX`, and overlong UTF-8 folded to
//!    the character it spells. Clean parts are borrowed, not copied. Evasion tricks seen on the
//!    way (overlong UTF-8, NUL bytes, malformed escapes) become `protocol` evidence.
//! 2. **Match**: each decoded part is matched against automata compiled once from the pattern
//!    lists, per part of the request (path, parameter, whole URI, user agent, referer): one
//!    Aho-Corasick automaton for the literals, and the regexes behind a literal gate. The gate
//!    is one more automaton, over literals that every match of a regex must contain (derived
//!    from the regex's syntax, see the `prefilter` module); a part runs only the regexes whose
//!    literals it contains, and a clean part usually none. The gate changes no result:
//!    [`Detectors::inspect_reference`] matches every list in full and is tested to agree on
//!    the evaluation corpus and on generated requests (`tests/differential.rs`). Parameter
//!    values, and the path for XSS, also go through libinjection (the pure-Rust
//!    `libinjectionrs` port) for SQL injection and XSS fingerprints; values containing SQL
//!    block comments are checked a second time with the comments removed
//!    (`UN/**/ION SEL/**/ECT`). The method, protocol version and URI length are checked
//!    directly.
//! 3. **Evidence** ([`Evidence`]): a bitset of [`AttackClass`]es plus the list of [`Match`]es,
//!    each with its detector id, [`Strength`] and [`Location`].
//!
//! Access logs repeat the same user agents, referers, paths and parameters on line after line.
//! Each part's inspection is a pure function of its raw bytes, so a small per-thread memo
//! (the `memo` module: bounded, exact byte comparison, clean outcomes only) remembers the
//! parts found clean, and stages 1 and 2 are skipped for them; a part with any finding is
//! inspected in full every time. [`Detectors::inspect_reference`] never uses the memo, so the
//! differential tests check the memo too.
//!
//! # Data files
//!
//! The pattern lists are plain text under `detect/patterns/` (format in the `patterns` module
//! docs: one `id targets strength kind pattern` entry per line), embedded with
//! `include_str!`, so changing a list is a reviewed diff and needs no code change. Each file
//! opens with where its entries came from; all were written for vigil from public advisories
//! and documentation of the attack techniques, none copied from a rule set.
//!
//! IP reputation lists (plain, FireHOL netset, CrowdSec decisions JSON) are parsed by
//! [`reputation`]; fetching and refreshing them is the engine's job.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
mod evidence;
mod memo;
mod patterns;
mod prefilter;
pub mod reputation;

pub use evidence::{AttackClass, Evidence, Location, Match, Strength};
pub use reputation::{ListFormat, ListHit, Reputation, ReputationList};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use decode::{DecodeFlags, RawParam};
use memo::Part;
use patterns::{PatternSet, Rule, Target};

/// What went wrong building detectors or parsing a list. Every variant is a configuration or
/// data problem on the operator's side; retrying with the same input fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A pattern list entry is malformed.
    #[error("{file}:{line}: {message}")]
    Pattern {
        /// The pattern file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The automata could not be built (a size limit was hit).
    #[error("compiling pattern automata: {0}")]
    Compile(String),
    /// A reputation list entry is malformed.
    #[error("reputation list {file}:{line}: {message}")]
    Reputation {
        /// The list's name (its file name when loaded from a file).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A reputation list file could not be read.
    #[error("reading reputation list {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One request as the gateway logged it (or as the proxy sees it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The request target: a path with an optional `?query`, still encoded.
    pub target: &'a str,
    /// The query, when the log records it apart from the target (without the `?`).
    pub query: Option<&'a str>,
    /// The protocol version (`HTTP/1.1`), if logged.
    pub protocol: Option<&'a str>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<&'a str>,
    /// The `Referer` header, if any.
    pub referer: Option<&'a str>,
}

/// Tunables of [`Detectors`].
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// A target (plus a separately logged query) longer than this is a `protocol` anomaly.
    /// Default 4096 bytes.
    pub max_uri_bytes: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            max_uri_bytes: 4096,
        }
    }
}

/// Methods that are not anomalies: RFC 9110 and RFC 5789, plus WebDAV's.
const KNOWN_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
];

/// Protocol versions that are not anomalies.
const KNOWN_PROTOCOLS: &[&str] = &[
    "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0",
];

/// The compiled detectors: built once, shared by every thread (`Send + Sync`).
#[derive(Debug)]
pub struct Detectors {
    patterns: PatternSet,
    config: DetectConfig,
    /// This instance's id in the per-thread memo of clean parts (see the `memo` module), so
    /// that no instance trusts what another found clean. Never 0, never reused.
    memo_owner: u64,
}

impl Detectors {
    /// The built-in pattern lists with the default configuration.
    pub fn builtin() -> Result<Detectors, DetectError> {
        Detectors::with_config(DetectConfig::default())
    }

    /// The built-in detectors, compiled on first use and shared by the whole process (ingest's
    /// normalizer on every parsing thread, the proxy's inline check). The error is the
    /// compile error's text, the same on every call.
    pub fn shared() -> Result<Arc<Detectors>, String> {
        static BUILTIN: OnceLock<Result<Arc<Detectors>, String>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Detectors::builtin()
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// The built-in pattern lists with `config`.
    pub fn with_config(config: DetectConfig) -> Result<Detectors, DetectError> {
        static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
        Ok(Detectors {
            patterns: PatternSet::compile(patterns::BUILTIN)?,
            config,
            memo_owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// How many pattern-list entries are compiled in.
    pub fn rule_count(&self) -> usize {
        self.patterns.rules.len()
    }

    /// Clears `out` and fills it with everything found in `req`. Parts this thread has already
    /// seen clean (the same user agent, referer, path, parameter or target) are skipped, which
    /// changes no finding (see the module docs); a clean request whose parts need no decoding
    /// allocates nothing beyond what libinjection does internally and a copy of each part the
    /// memo has not seen.
    pub fn inspect(&self, req: &Request<'_>, out: &mut Evidence) {
        self.inspect_with(req, out, Matching::Gated);
    }

    /// [`Detectors::inspect`] with every pattern list matched in full, without the literal
    /// gate that skips the regexes a part cannot match. Slow (the whole-list `RegexSet`s are
    /// built on first use); it exists so that tests can check that the gated path finds exactly
    /// the same evidence. Not part of the API.
    #[doc(hidden)]
    pub fn inspect_reference(&self, req: &Request<'_>, out: &mut Evidence) {
        self.inspect_with(req, out, Matching::Reference);
    }

    /// [`Detectors::inspect`] without the per-thread memo of clean parts: every part is
    /// inspected in full, through the literal gate. For benchmarks and tests that measure or
    /// check the memo. Not part of the API.
    #[doc(hidden)]
    pub fn inspect_unmemoized(&self, req: &Request<'_>, out: &mut Evidence) {
        self.inspect_with(req, out, Matching::Unmemoized);
    }

    fn inspect_with(&self, req: &Request<'_>, out: &mut Evidence, how: Matching) {
        out.clear();
        self.check_protocol(req, out);

        let (raw_path, target_query) = decode::split_target(req.target);
        self.unit(how, Part::Path, raw_path.as_bytes(), out, |out| {
            self.inspect_path(how, raw_path.as_bytes(), out)
        });

        let queries = [target_query, req.query.filter(|q| Some(*q) != target_query)];
        for query in queries.into_iter().flatten() {
            for pair in decode::query_pairs(query) {
                self.unit(how, Part::Param, pair.as_bytes(), out, |out| {
                    self.inspect_param(how, decode::split_param(pair), out)
                });
            }
        }

        // The whole target, decoded as one string: patterns spanning path and query, and
        // parameter names (Spring4Shell's `class.module.classLoader`).
        let uri_parts = [
            Some(req.target),
            req.query.filter(|q| Some(*q) != target_query),
        ];
        for raw in uri_parts.into_iter().flatten() {
            self.unit(how, Part::Uri, raw.as_bytes(), out, |out| {
                self.inspect_uri(how, raw.as_bytes(), out)
            });
        }

        if let Some(ua) = req.user_agent {
            self.unit(how, Part::UserAgent, ua.as_bytes(), out, |out| {
                self.inspect_header(how, Target::UserAgent, "user-agent", ua.as_bytes(), out)
            });
        }
        if let Some(referer) = req.referer {
            self.unit(how, Part::Referer, referer.as_bytes(), out, |out| {
                let referer = decode::decode_path(referer.as_bytes(), &mut DecodeFlags::empty());
                self.inspect_header(how, Target::Referer, "referer", &referer, out)
            });
        }
    }

    /// Runs `inspect`, the inspection of one part of a request (a pure function of `part` and
    /// `key`, its raw bytes), unless this thread remembers that part as clean; remembers it
    /// when it is. The reference path never uses the memo, so the differential tests compare
    /// memoized inspections against full ones.
    fn unit(
        &self,
        how: Matching,
        part: Part,
        key: &[u8],
        out: &mut Evidence,
        inspect: impl FnOnce(&mut Evidence),
    ) {
        if !matches!(how, Matching::Gated) {
            return inspect(out);
        }
        let owner = self.memo_owner;
        let lookup = memo::with(|m| {
            let probe = m.probe(owner, part, key)?;
            Some((probe, m.is_clean(probe, owner, part, key)))
        });
        match lookup {
            Some((_, true)) => {}
            Some((probe, false)) => {
                let before = out.pushes();
                inspect(out);
                if out.pushes() == before {
                    memo::with(|m| m.remember_clean(probe, owner, part, key));
                }
            }
            // Too long to remember.
            None => inspect(out),
        }
    }

    /// The path: decoded, matched, checked for XSS, and its decoding anomalies reported.
    fn inspect_path(&self, how: Matching, raw_path: &[u8], out: &mut Evidence) {
        let mut flags = DecodeFlags::empty();
        let path = decode::decode_path(raw_path, &mut flags);
        self.scan(how, Target::Path, &path, out, || Location::Path);
        if might_be_xss(&path) && libinjectionrs::detect_xss(&path).is_injection() {
            push_builtin(out, AttackClass::Xss, "xss.libinjection", || Location::Path);
        }
        report_flags(flags, out, || Location::Path);
    }

    /// The target (or a separately logged query) decoded as one string and matched as a URI.
    /// Its decoding anomalies were already reported for the path and parameters.
    fn inspect_uri(&self, how: Matching, raw: &[u8], out: &mut Evidence) {
        let uri = decode::decode_path(raw, &mut DecodeFlags::empty());
        self.scan(how, Target::Uri, &uri, out, || Location::Uri);
    }

    fn check_protocol(&self, req: &Request<'_>, out: &mut Evidence) {
        if !KNOWN_METHODS.contains(&req.method) {
            push_builtin(
                out,
                AttackClass::Protocol,
                "protocol.unknown_method",
                || Location::Method,
            );
        }
        if let Some(p) = req.protocol
            && !KNOWN_PROTOCOLS.contains(&p)
        {
            push_builtin(out, AttackClass::Protocol, "protocol.bad_version", || {
                Location::Protocol
            });
        }
        let len = req.target.len() + req.query.map_or(0, |q| q.len() + 1);
        if len > self.config.max_uri_bytes {
            push_builtin(out, AttackClass::Protocol, "protocol.uri_too_long", || {
                Location::Uri
            });
        }
    }

    fn inspect_param(&self, how: Matching, param: RawParam<'_>, out: &mut Evidence) {
        let mut flags = DecodeFlags::empty();
        let name = decode::decode_query(param.name.as_bytes(), &mut flags);
        let value = decode::decode_query(param.value.as_bytes(), &mut flags);
        let location = || Location::Query(String::from_utf8_lossy(&name).into_owned());

        self.inspect_value(how, &value, out, location);
        // Names are almost always identifiers; anything else is scanned like a value (a
        // payload sent as `?<script>…` has no `=` and lands here).
        if !is_identifier(&name) {
            self.inspect_value(how, &name, out, location);
        }
        report_flags(flags, out, location);
    }

    fn inspect_value(
        &self,
        how: Matching,
        value: &[u8],
        out: &mut Evidence,
        location: impl Fn() -> Location,
    ) {
        if value.is_empty() {
            return;
        }
        self.scan(how, Target::Param, value, out, &location);
        if might_be_sqli(value) && libinjectionrs::detect_sqli(value).is_injection() {
            push_builtin(out, AttackClass::Sqli, "sqli.libinjection", &location);
        }
        if might_be_xss(value) && libinjectionrs::detect_xss(value).is_injection() {
            push_builtin(out, AttackClass::Xss, "xss.libinjection", &location);
        }
        if let Some(stripped) = decode::strip_sql_comments(value) {
            self.scan(how, Target::Param, &stripped, out, &location);
            if might_be_sqli(&stripped) && libinjectionrs::detect_sqli(&stripped).is_injection() {
                push_builtin(out, AttackClass::Sqli, "sqli.libinjection", &location);
            }
        }
    }

    fn inspect_header(
        &self,
        how: Matching,
        target: Target,
        name: &'static str,
        value: &[u8],
        out: &mut Evidence,
    ) {
        let location = || Location::Header(name);
        self.scan(how, target, value, out, location);
        // Injection through headers is real, but ordinary user agents are full of
        // parentheses and semicolons; only quoted or tag-bearing values go to libinjection.
        if value.iter().any(|b| matches!(b, b'\'' | b'"'))
            && libinjectionrs::detect_sqli(value).is_injection()
        {
            push_builtin(out, AttackClass::Sqli, "sqli.libinjection", location);
        }
        if value.contains(&b'<') && libinjectionrs::detect_xss(value).is_injection() {
            push_builtin(out, AttackClass::Xss, "xss.libinjection", location);
        }
    }

    fn scan(
        &self,
        how: Matching,
        target: Target,
        haystack: &[u8],
        out: &mut Evidence,
        location: impl Fn() -> Location,
    ) {
        let hit = |rule: &Rule| out.push(rule.class, rule.strength, rule.id, &location);
        match how {
            Matching::Gated | Matching::Unmemoized => self.patterns.scan(target, haystack, hit),
            Matching::Reference => self.patterns.scan_reference(target, haystack, hit),
        }
    }
}

/// How a request is inspected: through the memo of clean parts and the literal gate
/// (production), through the gate alone, or with every list matched in full (the oracle behind
/// [`Detectors::inspect_reference`]).
#[derive(Debug, Clone, Copy)]
enum Matching {
    Gated,
    Unmemoized,
    Reference,
}

fn push_builtin(
    out: &mut Evidence,
    class: AttackClass,
    id: &'static str,
    location: impl FnOnce() -> Location,
) {
    let strength = match id {
        "protocol.unknown_method"
        | "protocol.bad_version"
        | "protocol.uri_too_long"
        | "protocol.bad_escape" => Strength::Weak,
        _ => Strength::Strong,
    };
    out.push(class, strength, id, location);
}

fn report_flags(flags: DecodeFlags, out: &mut Evidence, location: impl Fn() -> Location) {
    if flags.is_empty() {
        return;
    }
    let checks = [
        (DecodeFlags::OVERLONG_UTF8, "protocol.overlong_utf8"),
        (DecodeFlags::NULL_BYTE, "protocol.null_byte"),
        (DecodeFlags::BAD_ESCAPE, "protocol.bad_escape"),
    ];
    for (flag, id) in checks {
        if flags.contains(flag) {
            push_builtin(out, AttackClass::Protocol, id, &location);
        }
    }
}

/// Whether a parameter name is a plain identifier (`page`, `filter[status]`, `utm_source`).
fn is_identifier(name: &[u8]) -> bool {
    name.iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
}

/// libinjection reads keyword-dense prose ("download or insert true", "iphone drop vs C#") as
/// SQL. Real injections need SQL punctuation to break out of or extend a query: a quote, a
/// parenthesis, a comparison, a statement separator, a comment, a variable or a pipe. Values
/// without any of it are left to the pattern lists, which keeps benign searches clean and the
/// common `page=2`, `lang=en` parameters cheap.
fn might_be_sqli(value: &[u8]) -> bool {
    value.iter().any(|b| {
        matches!(
            b,
            b'\'' | b'"' | b'(' | b')' | b'=' | b';' | b'`' | b'@' | b'|'
        )
    }) || value.windows(2).any(|w| w == b"--" || w == b"/*")
}

/// XSS needs markup, a quote to break out of an attribute, or a `javascript:`-style scheme.
fn might_be_xss(value: &[u8]) -> bool {
    value
        .iter()
        .any(|b| matches!(b, b'<' | b'>' | b'"' | b'\'' | b'`' | b':' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detectors() -> &'static Detectors {
        static D: OnceLock<Detectors> = OnceLock::new();
        D.get_or_init(|| Detectors::builtin().expect("builtin detectors compile"))
    }

    /// Inspects `req` with the memo and in full; they must agree. Returns the evidence.
    #[track_caller]
    fn same_as_reference(req: &Request<'_>) -> Evidence {
        let (mut memoized, mut reference) = (Evidence::new(), Evidence::new());
        detectors().inspect(req, &mut memoized);
        detectors().inspect_reference(req, &mut reference);
        assert_eq!(memoized.matches(), reference.matches(), "{req:?}");
        memoized
    }

    fn get<'a>(target: &'a str, ua: &'a str, referer: Option<&'a str>) -> Request<'a> {
        Request {
            method: "GET",
            target,
            protocol: Some("HTTP/1.1"),
            user_agent: Some(ua),
            referer,
            ..Request::default()
        }
    }

    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

    #[test]
    fn a_repeated_attack_is_found_every_time() {
        let req = get(
            "/item?id=1%27%20OR%20%271%27%3D%271",
            "sqlmap/1.8#stable",
            None,
        );
        for _ in 0..3 {
            let e = same_as_reference(&req);
            assert!(e.has(AttackClass::Sqli) && e.has(AttackClass::ScannerUa));
        }
        // the same attack behind a user agent and a path already remembered clean
        let clean = get("/item", BROWSER, Some("https://shop.example/"));
        assert!(same_as_reference(&clean).is_empty());
        let e = same_as_reference(&get("/item?id=1%27%20OR%20%271%27%3D%271", BROWSER, None));
        assert!(e.has(AttackClass::Sqli));
    }

    /// With one slot every part collides with every other: what one part left in the memo
    /// must never answer for another.
    #[test]
    fn colliding_parts_never_answer_for_each_other() {
        let saved = memo::replace(memo::CleanMemo::new(1));
        let requests = [
            // clean as a referer, an attack as a path
            get("/", BROWSER, Some("/.git/config")),
            get("/.git/config", BROWSER, None),
            // clean user agent, attack user agent, clean again
            get("/", BROWSER, None),
            get("/", "Mozilla/5.0 (compatible; Nmap Scripting Engine)", None),
            get("/", BROWSER, None),
            // a parameter whose finding duplicates another's is still not clean
            get(
                "/v?q=%3Cscript%3Ealert(1)%3C/script%3E&q=%3Cscript%3Ealert(1)%3C/script%3E",
                BROWSER,
                None,
            ),
            get("/v?q=%3Cscript%3Ealert(1)%3C/script%3E", BROWSER, None),
            // the same query logged apart from the path
            Request {
                query: Some("q=%3Cscript%3Ealert(1)%3C/script%3E"),
                ..get("/v", BROWSER, None)
            },
        ];
        let found: Vec<bool> = requests
            .iter()
            .chain(requests.iter().rev())
            .map(|r| !same_as_reference(r).is_empty())
            .collect();
        memo::replace(saved);
        assert_eq!(
            found[..requests.len()],
            [false, true, false, true, false, true, true, true]
        );
    }

    #[test]
    fn instances_do_not_share_the_memo() {
        let other = Detectors::builtin().expect("builtin detectors compile");
        assert_ne!(other.memo_owner, detectors().memo_owner);
        assert_ne!(other.memo_owner, 0);
    }
}
