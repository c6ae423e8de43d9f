//! IP reputation lists (`[[scoring.reputation]]`): an address on a list gets
//! `reputation_lists` (how many lists name it) among its features, the list's `weight` in its
//! trust score, and `reputation:<name>` among the reasons of its decisions. A list decides
//! nothing by itself unless it has an `action`: without one, the default `bad_reputation`
//! rule only monitors, and a rule written against `reputation_lists` may decide more.
//!
//! Lists come in the formats `vigil-detect` reads (plain one-per-line, FireHOL netset,
//! CrowdSec decisions JSON), from one of two places:
//!
//! - **`path`**: a file, re-read when it changes, checked at most every `refresh_secs` (a feed
//!   updater such as `update-ipsets` or `cscli decisions list -o json` writes it). A file that
//!   no longer parses keeps the list loaded before it.
//! - **`url`**: an `http` or `https` address that a [`Feed`] downloads when the engine starts
//!   and every `refresh_secs`, within `timeout_ms` and `max_bytes`. A body that arrives whole
//!   and parses replaces the list and is written to the list's cache file (a temporary file
//!   renamed over it, so the cache is always a whole list that parsed). Anything else — a
//!   connection error, a timeout, a non-2xx status, a body too large or that does not parse —
//!   keeps the last good list, is logged with the list's name and the reason, and is counted
//!   ([`FeedStatus`], and the `vigil_reputation_downloads_total` metric). At start the cache
//!   from an earlier run is loaded, so an engine that starts offline still has its lists.
//!   `headers` (an API key) go with each request to the list's own origin, never to another
//!   one it redirects to; `ca_file` adds a private CA to the public roots.
//!
//! The downloads run on the async runtime ([`Feed::run`]); the scorer takes each new list at
//! its next batch ([`Reputations::maybe_reload`]), without parsing anything itself.

use crate::ScoringError;
use crate::policy::ListSignal;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use vigil_detect::{ListFormat, Reputation, ReputationList};
use vigil_enforce::Action;

/// Default `refresh_secs` of a `path` list.
pub const FILE_REFRESH_SECS: u64 = 300;
/// Default `refresh_secs` of a `url` list.
pub const URL_REFRESH_SECS: u64 = 3600;
/// Default `timeout_ms` of a download (connecting, the headers and the whole body).
pub const DOWNLOAD_TIMEOUT_MS: u64 = 30_000;
/// Default `max_bytes` of a download body: 64 MiB.
pub const DOWNLOAD_MAX_BYTES: u64 = 64 << 20;
/// Default `ttl_secs` of the decisions a list with an `action` issues.
pub const ACTION_TTL_SECS: u64 = 3600;
/// After a failed download, the next attempt comes this soon (or at `refresh_secs`, if that is
/// sooner), so a feed that was down at start is not missing for a whole refresh interval.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);
/// Redirects a download follows before giving up.
const MAX_REDIRECTS: usize = 5;

/// One `[[scoring.reputation]]` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationSource {
    /// Names the list in reasons (`reputation:<name>`), metrics and its cache file: letters,
    /// digits, `-`, `_` and `.`, unique among the lists.
    pub name: String,
    /// The list's file. Exactly one of `path` and `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Where to download the list (`http://` or `https://`). Exactly one of `path` and `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `plain` (default), `netset` (FireHOL) or `crowdsec` (decisions JSON).
    #[serde(default = "plain")]
    pub format: String,
    /// A `path` is checked for changes at most this often (default 300); a `url` is
    /// downloaded this often (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_secs: Option<u64>,
    /// How much a match raises the trust score, from 0 to 1, in the units of a rule's severity
    /// (low 0.3, medium 0.55, high 0.8, critical 0.95): a match multiplies the trust score's
    /// complement by `1 - weight`. Default 0: the list counts only through rules.
    #[serde(default)]
    pub weight: f64,
    /// What a match issues by itself: `monitor`, `step_up`, `throttle` or `block`. Unset (the
    /// default): nothing; the match is a feature and a reason only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// How long the decisions of `action` last. Default 3600; only with `action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// A download's time limit: connecting, the response and its whole body. Default 30000;
    /// only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The largest body a download accepts. Default 67108864 (64 MiB); only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Where a downloaded list is kept between runs. Default
    /// `<data_dir>/reputation/<name>.<txt|netset|json>`; only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_path: Option<PathBuf>,
    /// Request headers sent with each download, e.g. `{ "X-Api-Key" = "…" }` for a CrowdSec
    /// LAPI; not sent on a redirect to another origin. Only with `url`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// PEM file of the certificate authorities an `https` list's server may chain to, besides
    /// the public roots (a private CA). Only with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for ReputationSource {
    fn default() -> Self {
        Self {
            name: String::new(),
            path: None,
            url: None,
            format: plain(),
            refresh_secs: None,
            weight: 0.0,
            action: None,
            ttl_secs: None,
            timeout_ms: None,
            max_bytes: None,
            cache_path: None,
            headers: BTreeMap::new(),
            ca_file: None,
        }
    }
}

fn plain() -> String {
    "plain".into()
}

/// The file extension of a cached list in `format` (a config value; unknown ones get `txt`).
fn extension(format: &str) -> &'static str {
    match format {
        "netset" => "netset",
        "crowdsec" => "json",
        _ => "txt",
    }
}

/// Gives every `url` list without a `cache_path` the default one,
/// `<data_dir>/reputation/<name>.<ext>`. The engine calls it once the config is read; names
/// are checked later, when the lists load, before any file is written.
pub fn resolve_cache_paths(sources: &mut [ReputationSource], data_dir: &Path) {
    for s in sources {
        if s.url.is_some() && s.cache_path.is_none() {
            s.cache_path = Some(data_dir.join("reputation").join(format!(
                "{}.{}",
                s.name,
                extension(&s.format)
            )));
        }
    }
}

fn format_of(key: &str, f: &str) -> Result<ListFormat, ScoringError> {
    match f {
        "plain" => Ok(ListFormat::Plain),
        "netset" => Ok(ListFormat::FireholNetset),
        "crowdsec" => Ok(ListFormat::CrowdsecDecisions),
        other => Err(ScoringError::config(
            key,
            format!("`{other}` is not a list format (plain, netset, crowdsec)"),
        )),
    }
}

fn action_of(key: &str, a: &str) -> Result<Action, ScoringError> {
    match a {
        "monitor" => Ok(Action::Monitor),
        "step_up" => Ok(Action::StepUp),
        "throttle" => Ok(Action::Throttle),
        "block" => Ok(Action::Block),
        other => Err(ScoringError::config(
            key,
            format!("`{other}` is not a list action (monitor, step_up, throttle, block)"),
        )),
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// One configured list, loaded.
struct List {
    name: String,
    format: ListFormat,
    /// The `path` of a file list; `None` for a `url` list (its cache is the feed's).
    path: Option<PathBuf>,
    weight: f64,
    action: Option<Action>,
    ttl_secs: u64,
    mtime: Option<SystemTime>,
    feed: Option<Feed>,
    /// `None`: a `url` list not downloaded yet (or whose cache did not parse).
    loaded: Option<ReputationList>,
}

/// The configured lists, loaded, and the downloaders of the `url` ones.
pub struct Reputations {
    lists: Vec<List>,
    merged: Reputation,
    /// When the `path` lists were last checked, and how often they are.
    checked: Instant,
    every: Duration,
}

impl Reputations {
    /// Validates and loads every list: a `path` list's file must exist and parse; a `url`
    /// list starts from its cache file when there is one, and empty until its first download
    /// when there is none (or, with a warning, when it does not parse). Every error names its
    /// key.
    pub fn load(sources: &[ReputationSource]) -> Result<Self, ScoringError> {
        let mut lists: Vec<List> = Vec::with_capacity(sources.len());
        let mut every = Duration::MAX;
        for (i, s) in sources.iter().enumerate() {
            let key = format!("scoring.reputation[{i}]");
            let k = |field: &str| format!("{key}.{field}");
            check_name(&k("name"), &s.name)?;
            if lists.iter().any(|l| l.name == s.name) {
                return Err(ScoringError::config(
                    k("name"),
                    format!("`{}` names another list too", s.name),
                ));
            }
            let format = format_of(&k("format"), &s.format)?;
            if !(0.0..=1.0).contains(&s.weight) {
                return Err(ScoringError::config(
                    k("weight"),
                    format!("{} is not between 0 and 1", s.weight),
                ));
            }
            let action = s
                .action
                .as_deref()
                .map(|a| action_of(&k("action"), a))
                .transpose()?;
            if action.is_none() && s.ttl_secs.is_some() {
                return Err(ScoringError::config(
                    k("ttl_secs"),
                    "applies only to a list with an `action`",
                ));
            }
            let ttl_secs = s.ttl_secs.unwrap_or(ACTION_TTL_SECS);
            if ttl_secs == 0 {
                return Err(ScoringError::config(k("ttl_secs"), "must be at least 1"));
            }
            let list = match (&s.path, &s.url) {
                (Some(path), None) => {
                    for (field, set) in [
                        ("timeout_ms", s.timeout_ms.is_some()),
                        ("max_bytes", s.max_bytes.is_some()),
                        ("cache_path", s.cache_path.is_some()),
                        ("headers", !s.headers.is_empty()),
                        ("ca_file", s.ca_file.is_some()),
                    ] {
                        if set {
                            return Err(ScoringError::config(
                                k(field),
                                "applies only to a list with a `url`",
                            ));
                        }
                    }
                    every = every.min(Duration::from_secs(
                        s.refresh_secs.unwrap_or(FILE_REFRESH_SECS),
                    ));
                    List {
                        name: s.name.clone(),
                        format,
                        path: Some(path.clone()),
                        weight: s.weight,
                        action,
                        ttl_secs,
                        mtime: mtime(path),
                        feed: None,
                        loaded: Some(
                            read(&s.name, path, format)
                                .map_err(|m| ScoringError::config(k("path"), m))?,
                        ),
                    }
                }
                (None, Some(url)) => {
                    let feed = Feed::new(&key, s, url, format)?;
                    let loaded = feed.load_cache();
                    List {
                        name: s.name.clone(),
                        format,
                        path: None,
                        weight: s.weight,
                        action,
                        ttl_secs,
                        mtime: None,
                        feed: Some(feed),
                        loaded,
                    }
                }
                _ => {
                    return Err(ScoringError::config(
                        key,
                        "give exactly one of `path` and `url`",
                    ));
                }
            };
            lists.push(list);
        }
        Ok(Self {
            merged: merge(&lists),
            lists,
            checked: Instant::now(),
            every,
        })
    }

    /// Whether any list is configured.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The downloaders of the `url` lists, sharing their state with these lists: run them
    /// ([`Feed::run`]) and every list they download is taken at the next
    /// [`maybe_reload`](Self::maybe_reload).
    pub fn feeds(&self) -> Feeds {
        Feeds(self.lists.iter().filter_map(|l| l.feed.clone()).collect())
    }

    /// Takes the lists downloaded since the last call, and re-reads the `path` lists whose
    /// files changed if their refresh interval has passed; a file that no longer parses keeps
    /// its list as it was (and is logged). Cheap when nothing changed: an atomic load per
    /// `url` list.
    pub fn maybe_reload(&mut self) {
        let mut changed = false;
        for l in &mut self.lists {
            if let Some(new) = l.feed.as_ref().and_then(Feed::take_downloaded) {
                l.loaded = Some(new);
                changed = true;
            }
        }
        if self.every != Duration::MAX && self.checked.elapsed() >= self.every {
            self.checked = Instant::now();
            for l in &mut self.lists {
                let Some(path) = &l.path else { continue };
                let m = mtime(path);
                if m == l.mtime {
                    continue;
                }
                l.mtime = m;
                match read(&l.name, path, l.format) {
                    Ok(new) => {
                        l.loaded = Some(new);
                        changed = true;
                    }
                    Err(error) => {
                        tracing::warn!(list = %l.name, %error, "reputation list not reloaded; keeping the last good list")
                    }
                }
            }
        }
        if changed {
            self.merged = merge(&self.lists);
        }
    }

    /// The names of the lists that hold `ip` (a subject id), sorted, without repeats.
    pub fn lists_of(&self, ip: &str) -> Vec<&str> {
        self.matches(ip).into_iter().map(|m| m.name).collect()
    }

    /// The lists that hold `ip` (a subject id) with their weight and action, sorted by name,
    /// each once; empty when `ip` is not an address.
    pub fn matches(&self, ip: &str) -> Vec<ListSignal<'_>> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Vec::new();
        };
        let mut v: Vec<ListSignal<'_>> = Vec::new();
        for hit in self.merged.lookup(addr) {
            if v.iter().any(|m| m.name == hit.list) {
                continue;
            }
            if let Some(l) = self.lists.iter().find(|l| l.name == hit.list) {
                v.push(ListSignal {
                    name: &l.name,
                    weight: l.weight,
                    action: l.action,
                    ttl_secs: l.ttl_secs,
                });
            }
        }
        v.sort_unstable_by(|a, b| a.name.cmp(b.name));
        v
    }

    /// The `reputation_lists` feature of `ip`: how many lists hold it; `None` when no list is
    /// configured.
    pub fn feature(&self, ip: &str) -> Option<f64> {
        (!self.lists.is_empty()).then(|| self.matches(ip).len() as f64)
    }
}

fn merge(lists: &[List]) -> Reputation {
    Reputation::new(lists.iter().filter_map(|l| l.loaded.clone()))
}

fn check_name(key: &str, name: &str) -> Result<(), ScoringError> {
    let fine = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(ScoringError::config(
            key,
            format!(
                "`{name}` is not a list name (letters, digits, `-`, `_` and `.`, not starting with `.`)"
            ),
        ))
    }
}

fn read(name: &str, path: &Path, format: ListFormat) -> Result<ReputationList, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    ReputationList::parse(format, name, &text).map_err(|e| e.to_string())
}

type HttpClient = Client<vigil_enforce::tls::HttpsConnector, Empty<Bytes>>;

/// The counters of one `url` list's downloads ([`Feed::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FeedStatus {
    /// Downloads that replaced the list.
    pub downloads_ok: u64,
    /// Downloads that failed (the last good list stayed).
    pub downloads_failed: u64,
    /// Entries of the last list downloaded (or read from the cache at start).
    pub entries: u64,
    /// When the last download succeeded (seconds since the epoch); 0 if none has.
    pub last_success_unix_secs: u64,
    /// Why the last failed download failed, until one succeeds.
    pub last_error: Option<String>,
}

struct FeedInner {
    name: String,
    url: hyper::Uri,
    format: ListFormat,
    cache: PathBuf,
    every: Duration,
    timeout: Duration,
    max_bytes: usize,
    /// Sent with each request to the list's own origin.
    headers: hyper::HeaderMap,
    client: HttpClient,
    downloads_ok: AtomicU64,
    downloads_failed: AtomicU64,
    entries: AtomicU64,
    last_success_unix_secs: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// A list downloaded and not yet taken by the scorer; `fresh` says whether there is one
    /// without taking the lock.
    downloaded: Mutex<Option<ReputationList>>,
    fresh: AtomicBool,
}

/// Downloads one `url` list. Clones share the client, the counters and the list handed to
/// the scorer.
#[derive(Clone)]
pub struct Feed(Arc<FeedInner>);

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("name", &self.0.name)
            .field("cache", &self.0.cache)
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// Checks the `url` keys of list `key` and builds its client.
    fn new(
        key: &str,
        s: &ReputationSource,
        url: &str,
        format: ListFormat,
    ) -> Result<Self, ScoringError> {
        let k = |field: &str| format!("{key}.{field}");
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| ScoringError::config(k("url"), format!("`{url}`: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ScoringError::config(
                k("url"),
                format!("`{url}` is not an http:// or https:// address"),
            ));
        }
        let Some(cache) = s.cache_path.clone() else {
            return Err(ScoringError::config(
                k("cache_path"),
                "a `url` list needs a cache file (vigil sets <data_dir>/reputation/<name>.<ext>)",
            ));
        };
        let refresh_secs = s.refresh_secs.unwrap_or(URL_REFRESH_SECS);
        let timeout_ms = s.timeout_ms.unwrap_or(DOWNLOAD_TIMEOUT_MS);
        let max_bytes = s.max_bytes.unwrap_or(DOWNLOAD_MAX_BYTES);
        for (field, v) in [
            ("refresh_secs", refresh_secs),
            ("timeout_ms", timeout_ms),
            ("max_bytes", max_bytes),
        ] {
            if v == 0 {
                return Err(ScoringError::config(k(field), "must be at least 1"));
            }
        }
        let mut headers = hyper::HeaderMap::new();
        for (name, value) in &s.headers {
            let bad = |why: String| ScoringError::config(k(&format!("headers.{name}")), why);
            let n = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad(format!("not a header name: {e}")))?;
            let mut v = hyper::header::HeaderValue::from_str(value)
                .map_err(|e| bad(format!("not a header value: {e}")))?;
            // kept out of debug output, as an API key should be
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let tls = vigil_enforce::tls::client_config(&k("ca_file"), s.ca_file.as_deref())
            .map_err(|e| ScoringError::config(k("ca_file"), e.to_string()))?;
        let timeout = Duration::from_millis(timeout_ms);
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .build(vigil_enforce::tls::https_connector(http, &tls));
        Ok(Self(Arc::new(FeedInner {
            name: s.name.clone(),
            url: uri,
            format,
            cache,
            every: Duration::from_secs(refresh_secs),
            timeout,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            headers,
            client,
            downloads_ok: AtomicU64::new(0),
            downloads_failed: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            last_success_unix_secs: AtomicU64::new(0),
            last_error: Mutex::new(None),
            downloaded: Mutex::new(None),
            fresh: AtomicBool::new(false),
        })))
    }

    /// The list's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The cache file the downloads are written to.
    pub fn cache_path(&self) -> &Path {
        &self.0.cache
    }

    /// How often the list is downloaded.
    pub fn refresh_interval(&self) -> Duration {
        self.0.every
    }

    /// The counters of the downloads so far.
    pub fn status(&self) -> FeedStatus {
        let i = &self.0;
        FeedStatus {
            downloads_ok: i.downloads_ok.load(Ordering::Relaxed),
            downloads_failed: i.downloads_failed.load(Ordering::Relaxed),
            entries: i.entries.load(Ordering::Relaxed),
            last_success_unix_secs: i.last_success_unix_secs.load(Ordering::Relaxed),
            last_error: i
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The list as the last run left it in the cache; `None` (with a log line) when there is
    /// no cache yet or it does not parse, so the engine starts either way.
    fn load_cache(&self) -> Option<ReputationList> {
        let i = &self.0;
        if !i.cache.exists() {
            tracing::debug!(list = %i.name, cache = %i.cache.display(), "reputation list not downloaded yet; empty until its first download");
            return None;
        }
        match read(&i.name, &i.cache, i.format) {
            Ok(l) => {
                i.entries.store(l.len() as u64, Ordering::Relaxed);
                tracing::debug!(list = %i.name, entries = l.len(), "reputation list loaded from its cache");
                Some(l)
            }
            Err(error) => {
                tracing::warn!(list = %i.name, %error, "reputation list cache unusable; empty until its next download");
                None
            }
        }
    }

    /// The list downloaded since the last call, if any.
    fn take_downloaded(&self) -> Option<ReputationList> {
        if !self.0.fresh.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.0
            .downloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Downloads the list once. On success the list is written to the cache file and handed
    /// to the scorer, and its number of entries returned. On failure nothing changes but the
    /// counters: the error says why (connection, timeout, status, size, or the first line
    /// that does not parse).
    pub async fn refresh(&self) -> Result<usize, ScoringError> {
        let i = &self.0;
        let outcome = match tokio::time::timeout(i.timeout, self.download()).await {
            Ok(Ok(body)) => self.store(body).await,
            Ok(Err(message)) => Err(message),
            Err(_) => Err(format!("timed out after {} ms", i.timeout.as_millis())),
        };
        match outcome {
            Ok(n) => {
                i.downloads_ok.fetch_add(1, Ordering::Relaxed);
                i.entries.store(n as u64, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                i.last_success_unix_secs.store(now, Ordering::Relaxed);
                *i.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(n)
            }
            Err(message) => {
                i.downloads_failed.fetch_add(1, Ordering::Relaxed);
                *i.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
                Err(ScoringError::Feed {
                    list: i.name.clone(),
                    message,
                })
            }
        }
    }

    /// GETs the list, following a few redirects; the body whole, or why not.
    async fn download(&self) -> Result<Bytes, String> {
        let i = &self.0;
        let mut url = i.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = hyper::Request::get(url.clone())
                .header(
                    hyper::header::USER_AGENT,
                    concat!("vigil/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            // credentials go to the configured origin only, not wherever it redirects
            if same_origin(&url, &i.url) {
                req.headers_mut()
                    .extend(i.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
            }
            let resp = i.client.request(req).await.map_err(|e| {
                // hyper-util's message alone ("client error (Connect)") hides the cause
                let mut m = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let _ = write!(m, ": {s}");
                    source = s.source();
                }
                m
            })?;
            let status = resp.status();
            if status.is_redirection() {
                url = redirect_target(&url, resp.headers())
                    .ok_or_else(|| format!("status {status} without a usable Location"))?;
                continue;
            }
            if !status.is_success() {
                return Err(format!("status {status}"));
            }
            let body = Limited::new(resp.into_body(), i.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!("body larger than max_bytes ({})", i.max_bytes)
                    } else {
                        format!("reading the body: {e}")
                    }
                })?;
            return Ok(body.to_bytes());
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    /// Parses `body`, writes it to the cache (a temporary file renamed over the old one) and
    /// hands the list to the scorer. Off the async threads: a list can be megabytes.
    async fn store(&self, body: Bytes) -> Result<usize, String> {
        let feed = self.clone();
        tokio::task::spawn_blocking(move || {
            let i = &feed.0;
            let text = std::str::from_utf8(&body).map_err(|e| format!("body is not UTF-8: {e}"))?;
            let list = ReputationList::parse(i.format, &i.name, text)
                .map_err(|e| format!("body does not parse: {e}"))?;
            write_atomically(&i.cache, &body)
                .map_err(|e| format!("cannot write the cache {}: {e}", i.cache.display()))?;
            let n = list.len();
            *i.downloaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(list);
            i.fresh.store(true, Ordering::Release);
            Ok(n)
        })
        .await
        .map_err(|e| format!("storing the list: {e}"))?
    }

    /// Downloads the list now, then every `refresh_secs` (sooner after a failure, see
    /// [`RETRY_AFTER_FAILURE`]), until `shutdown` completes. Failures are logged and counted;
    /// the last good list stays.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                r = self.refresh() => r,
            };
            let wait = match outcome {
                Ok(entries) => {
                    tracing::info!(list = %self.0.name, entries, "reputation list downloaded");
                    self.0.every
                }
                Err(error) => {
                    tracing::warn!(list = %self.0.name, %error, "reputation list download failed; keeping the last good list");
                    self.0.every.min(RETRY_AFTER_FAILURE)
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Where a redirect from `from` points: an absolute URL or an absolute path on the same host.
/// Same scheme, host and port.
fn same_origin(a: &hyper::Uri, b: &hyper::Uri) -> bool {
    let port = |u: &hyper::Uri| {
        u.port_u16().or_else(|| match u.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })
    };
    a.scheme() == b.scheme()
        && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
        && port(a) == port(b)
}

fn redirect_target(from: &hyper::Uri, headers: &hyper::HeaderMap) -> Option<hyper::Uri> {
    let location = headers.get(hyper::header::LOCATION)?.to_str().ok()?;
    let to: hyper::Uri = location.parse().ok()?;
    if to.scheme().is_some() {
        return matches!(to.scheme_str(), Some("http" | "https")).then_some(to);
    }
    if !location.starts_with('/') || location.starts_with("//") {
        return None;
    }
    let mut parts = from.clone().into_parts();
    parts.path_and_query = to.into_parts().path_and_query;
    hyper::Uri::from_parts(parts).ok()
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, and renames it over
/// `path`: a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The downloaders of every `url` list ([`Reputations::feeds`]).
#[derive(Debug, Clone, Default)]
pub struct Feeds(Vec<Feed>);

impl Feeds {
    pub fn iter(&self) -> impl Iterator<Item = &Feed> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The feed of list `name`.
    pub fn get(&self, name: &str) -> Option<&Feed> {
        self.0.iter().find(|f| f.name() == name)
    }

    /// Appends the downloads' Prometheus families: `vigil_reputation_downloads_total` (by
    /// list and outcome), `vigil_reputation_entries` and
    /// `vigil_reputation_last_success_timestamp_seconds` (by list). The `list` label is a
    /// configured name, so the label set is bounded by the config. Nothing without feeds.
    pub fn render_metrics(&self, out: &mut String) {
        if self.0.is_empty() {
            return;
        }
        let status: Vec<(&str, FeedStatus)> =
            self.0.iter().map(|f| (f.name(), f.status())).collect();
        let _ = writeln!(
            out,
            "# HELP vigil_reputation_downloads_total Downloads of reputation lists, by outcome (error: the last good list stayed).\n# TYPE vigil_reputation_downloads_total counter"
        );
        for (name, s) in &status {
            let _ = writeln!(
                out,
                "vigil_reputation_downloads_total{{list=\"{name}\",outcome=\"ok\"}} {}\nvigil_reputation_downloads_total{{list=\"{name}\",outcome=\"error\"}} {}",
                s.downloads_ok, s.downloads_failed
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigil_reputation_entries Entries of the downloaded reputation list in use.\n# TYPE vigil_reputation_entries gauge"
        );
        for (name, s) in &status {
            let _ = writeln!(
                out,
                "vigil_reputation_entries{{list=\"{name}\"}} {}",
                s.entries
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigil_reputation_last_success_timestamp_seconds When the reputation list was last downloaded (0: never).\n# TYPE vigil_reputation_last_success_timestamp_seconds gauge"
        );
        for (name, s) in &status {
            let _ = writeln!(
                out,
                "vigil_reputation_last_success_timestamp_seconds{{list=\"{name}\"}} {}",
                s.last_success_unix_secs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load_answer_and_reload_when_their_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, "# test\n203.0.113.0/24\n").unwrap();
        let src = ReputationSource {
            name: "bad".into(),
            path: Some(path.clone()),
            refresh_secs: Some(0),
            ..Default::default()
        };
        let mut r = Reputations::load(std::slice::from_ref(&src)).unwrap();
        assert_eq!(r.lists_of("203.0.113.9"), ["bad"]);
        assert_eq!(r.feature("203.0.113.9"), Some(1.0));
        assert!(r.lists_of("198.51.100.1").is_empty());
        assert!(r.lists_of("not-an-ip").is_empty());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "198.51.100.1\n").unwrap();
        // a coarse file clock: make the change visible
        let later = SystemTime::now() + Duration::from_secs(2);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(later).unwrap();
        r.maybe_reload();
        assert_eq!(r.lists_of("198.51.100.1"), ["bad"]);
        assert!(r.lists_of("203.0.113.9").is_empty());
        // a broken file keeps the list as it was
        std::fs::write(&path, "not an address\n").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(later + Duration::from_secs(2)).unwrap();
        r.maybe_reload();
        assert_eq!(r.lists_of("198.51.100.1"), ["bad"]);

        let bad_format = ReputationSource {
            format: "csv".into(),
            ..src.clone()
        };
        let e = Reputations::load(&[bad_format]).err().unwrap().to_string();
        assert!(e.contains("scoring.reputation[0].format"), "{e}");
        let missing = ReputationSource {
            path: Some(dir.path().join("none.txt")),
            ..src
        };
        let e = Reputations::load(&[missing]).err().unwrap().to_string();
        assert!(e.contains("scoring.reputation[0].path"), "{e}");
        assert_eq!(Reputations::load(&[]).unwrap().feature("203.0.113.9"), None);
    }

    #[test]
    fn cache_paths_default_under_the_data_dir() {
        let mut s = [
            ReputationSource {
                name: "firehol_level1".into(),
                url: Some("https://example.org/firehol_level1.netset".into()),
                format: "netset".into(),
                ..Default::default()
            },
            ReputationSource {
                name: "cs".into(),
                url: Some("https://example.org/d.json".into()),
                format: "crowdsec".into(),
                ..Default::default()
            },
            ReputationSource {
                name: "mine".into(),
                url: Some("https://example.org/mine".into()),
                cache_path: Some("/elsewhere/mine.txt".into()),
                ..Default::default()
            },
            ReputationSource {
                name: "local".into(),
                path: Some("/lists/local.txt".into()),
                ..Default::default()
            },
        ];
        resolve_cache_paths(&mut s, Path::new("/var/lib/vigil"));
        let got: Vec<Option<&Path>> = s.iter().map(|s| s.cache_path.as_deref()).collect();
        assert_eq!(
            got,
            [
                Some(Path::new("/var/lib/vigil/reputation/firehol_level1.netset")),
                Some(Path::new("/var/lib/vigil/reputation/cs.json")),
                Some(Path::new("/elsewhere/mine.txt")),
                None,
            ]
        );
    }

    #[test]
    fn redirects_resolve_against_the_old_address() {
        let from: hyper::Uri = "https://lists.example/a/b?x=1".parse().unwrap();
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::LOCATION, "/c/d.txt".parse().unwrap());
        assert_eq!(
            redirect_target(&from, &h).unwrap().to_string(),
            "https://lists.example/c/d.txt"
        );
        h.insert(
            hyper::header::LOCATION,
            "http://mirror.example/e".parse().unwrap(),
        );
        assert_eq!(
            redirect_target(&from, &h).unwrap().to_string(),
            "http://mirror.example/e"
        );
        for odd in ["ftp://mirror.example/e", "relative/path", "//host/path"] {
            h.insert(hyper::header::LOCATION, odd.parse().unwrap());
            assert!(redirect_target(&from, &h).is_none(), "{odd}");
        }
    }

    #[test]
    fn cache_writes_replace_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("l.txt");
        write_atomically(&path, b"192.0.2.1\n").unwrap();
        write_atomically(&path, b"192.0.2.2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "192.0.2.2\n");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["l.txt"], "no temporary file is left behind");
    }
}
