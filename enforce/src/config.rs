//! `[proxy]` in the config file: the enforcement point's settings, and [`ProxyConfig::build`],
//! which validates everything once (naming a bad key by its path, `proxy.jwt.algorithms[1]`)
//! and compiles it into [`ProxySettings`]. Nothing is validated at first use.
//!
//! Every field has a default (listed on the field); units are in the names.

use crate::error::EnforceError;
pub use crate::inline_detect::InlineMode;
use crate::inline_detect::{ClassSet, DEFAULT_CLASSES, InlineDetector};
use crate::subjects::Cidr;
use hyper::Uri;
use hyper::header::HeaderName;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use vigil_detect::AttackClass;

/// `[proxy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address the proxy listens on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// The upstream service, `http://host:port` or `https://host:port` (a path, if any, is
    /// ignored). Default `http://127.0.0.1:8081`.
    pub upstream: String,
    /// PEM CA certificates trusted for an `https` upstream, besides the public CAs. Default
    /// none.
    pub upstream_ca_path: Option<String>,
    /// CIDRs of proxies in front of this one; their `X-Forwarded-For` is believed (the client
    /// is the right-most entry that is not one of them), everyone else's is ignored. Must
    /// match `normalize.trusted_proxies` so both sides compute the same client IP. Default
    /// none.
    pub trusted_proxies: Vec<String>,
    /// A client must send a whole request head within this time. Default 10000.
    pub header_read_timeout_ms: u64,
    /// Connecting to the upstream. Default 2000.
    pub upstream_connect_timeout_ms: u64,
    /// From sending the request to the upstream's response head. Default 30000.
    pub upstream_response_timeout_ms: u64,
    /// Idle pooled upstream connections are closed after this. Default 90000.
    pub upstream_pool_idle_timeout_ms: u64,
    /// Idle pooled connections kept per upstream host. Default 256.
    pub upstream_pool_max_idle_per_host: usize,
    /// Largest request head (request line and headers), in bytes; larger gets 431. At least
    /// 8192 (hyper's smallest read buffer for HTTP/1). Default 16384.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431. Default 100.
    pub max_header_count: usize,
    /// Event loops serving the proxy: each is a thread with a single-threaded runtime, its
    /// own listening socket on `listen` (`SO_REUSEPORT`: the kernel spreads connections) and
    /// its own upstream connection pool, so a request never hops between threads (measured
    /// 1.6x the requests/s of one work-stealing runtime, see BENCHMARKS.md). 0: one per
    /// available core. Default 0.
    pub worker_threads: usize,
    /// Concurrent HTTP/2 streams per client connection. Default 256.
    pub http2_max_concurrent_streams: u32,
    /// On shutdown, how long readiness reports false while still serving, so load balancers
    /// stop sending new connections first. Default 0.
    pub shutdown_readiness_delay_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish before connections are
    /// cut. Default 15000.
    pub shutdown_drain_timeout_ms: u64,
    /// Header carrying the API key; empty disables API keys. Default `x-api-key`.
    pub api_key_header: String,
    /// Forward-auth only: the header in which the gateway passes the client's TLS fingerprint
    /// (JA4 or JA3, e.g. Envoy's `%TLS_JA4_FINGERPRINT%` or a CDN's header), the request's
    /// device subject. The gateway must set it, overwriting whatever the client sent. Empty
    /// (the default): forward-auth has no device subject.
    pub device_header: String,
    /// Secret prefix mixed into the API key hash; must equal `normalize.api_key_salt`.
    /// Default empty.
    pub api_key_salt: String,
    /// Cookie carrying the session id (used when the token has no `sid`). Default `session`.
    pub session_cookie: String,
    /// Take the user name of `Authorization: Basic` as the identity when no verified token
    /// names one, as NGINX logs it in `$remote_user`. The password is not checked: the name
    /// says whom a login attempt was for (credential stuffing shows up per account), not who
    /// the client is — and a client can name anyone, so a decision on such an identity can
    /// lock its owner out. Default false.
    pub basic_auth_identity: bool,
    /// Header of the request id sent upstream (kept from a trusted proxy, else generated).
    /// Default `x-request-id`.
    pub request_id_header: String,
    /// Requests per second for a `throttle` decision without its own `throttle_rps`.
    /// Default 5.0.
    pub throttle_default_rps: f64,
    /// How often expired decisions and idle throttle buckets are removed. Default 1000.
    pub sweep_interval_ms: u64,
    /// What to do with requests while the decision feed is stale (see `[proxy.feed]`):
    /// `keep_last_known` (apply the last decisions received), `fail_open` (forward every
    /// request), `fail_closed` (answer 503). Default `keep_last_known`.
    pub fail_policy: FailPolicy,
    /// Per-route fail policies, `[[proxy.fail_policy_routes]]` with `path_prefix` and
    /// `fail_policy`; the longest matching prefix wins over `fail_policy`. Default none.
    pub fail_policy_routes: Vec<FailPolicyRoute>,
    /// PEM certificate chain: with `tls_key_path`, the proxy listener speaks TLS (ALPN `h2`
    /// and `http/1.1`) instead of cleartext (the forward-auth and admin listeners stay
    /// cleartext). Default none.
    pub tls_cert_path: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_path`. Default none.
    pub tls_key_path: Option<String>,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`), kept off the proxied
    /// port so clients cannot read it and no upstream path is shadowed. Default none (no admin
    /// listener; `vigil run` serves the proxy's metrics on the engine's `/metrics`).
    pub admin_listen: Option<String>,
    /// `vigil proxy` only: Kafka topic the proxy's own access events are produced to, one
    /// JSON object per request in the generic `json` ingest format (key: the client IP), with
    /// the `[kafka]` client settings or else `proxy.feed.brokers`. An engine's Kafka source
    /// with `format = "json"` on this topic scores them. `vigil run` ingests its proxy's
    /// events in process and ignores this. Default none.
    pub events_topic: Option<String>,
    /// Client fingerprints in the access events: JA4H of every request head and, on a TLS
    /// listener, JA4 of each connection's ClientHello (peeked before the handshake, within
    /// `header_read_timeout_ms`). `false` computes neither (no peek, nothing hashed); JA4H is
    /// under the FoxIO License 1.1, see NOTICE. Default true.
    pub fingerprints: bool,
    pub feed: FeedConfig,
    pub inline_detect: InlineDetectConfig,
    pub jwt: JwtConfig,
    pub step_up: StepUpConfig,
    pub trust_headers: TrustHeadersConfig,
    pub authz: AuthzConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:8080".into(),
            upstream: "http://127.0.0.1:8081".into(),
            upstream_ca_path: None,
            trusted_proxies: Vec::new(),
            header_read_timeout_ms: 10_000,
            upstream_connect_timeout_ms: 2_000,
            upstream_response_timeout_ms: 30_000,
            upstream_pool_idle_timeout_ms: 90_000,
            upstream_pool_max_idle_per_host: 256,
            max_header_bytes: 16_384,
            max_header_count: 100,
            worker_threads: 0,
            http2_max_concurrent_streams: 256,
            shutdown_readiness_delay_ms: 0,
            shutdown_drain_timeout_ms: 15_000,
            api_key_header: "x-api-key".into(),
            device_header: String::new(),
            api_key_salt: String::new(),
            session_cookie: "session".into(),
            basic_auth_identity: false,
            request_id_header: "x-request-id".into(),
            throttle_default_rps: 5.0,
            sweep_interval_ms: 1_000,
            fail_policy: FailPolicy::KeepLastKnown,
            fail_policy_routes: Vec::new(),
            tls_cert_path: None,
            tls_key_path: None,
            admin_listen: None,
            events_topic: None,
            fingerprints: true,
            feed: FeedConfig::default(),
            inline_detect: InlineDetectConfig::default(),
            jwt: JwtConfig::default(),
            step_up: StepUpConfig::default(),
            trust_headers: TrustHeadersConfig::default(),
            authz: AuthzConfig::default(),
        }
    }
}

/// What the enforcement point does while its decision feed is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailPolicy {
    /// Keep applying the last decisions received.
    KeepLastKnown,
    /// Forward every request.
    FailOpen,
    /// Refuse every request (503).
    FailClosed,
}

impl FailPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailPolicy::KeepLastKnown => "keep_last_known",
            FailPolicy::FailOpen => "fail_open",
            FailPolicy::FailClosed => "fail_closed",
        }
    }
}

/// One `[[proxy.fail_policy_routes]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailPolicyRoute {
    /// Requests whose path starts with this (e.g. `/payments/`).
    pub path_prefix: String,
    pub fail_policy: FailPolicy,
}

/// `[proxy.inline_detect]`: block (or only record) requests whose own content carries strong
/// attack evidence, before the upstream and in addition to the decision for their subjects.
/// The proxy inspects the method, the path and query, `User-Agent` and `Referer` (not the
/// body); forward-auth inspects the original request it is asked about. See
/// [`crate::inline_detect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InlineDetectConfig {
    /// `off` (the detectors never run), `monitor` (forward, and record the request as
    /// `monitor` in its access event and the counter) or `block` (answer 403). Default `off`.
    pub mode: InlineMode,
    /// Attack classes acted on; only strong evidence counts. Any of `sqli`, `xss`,
    /// `traversal`, `file_inclusion`, `cmdi`, `ssti`, `ssrf`, `sensitive_file`, `scanner_ua`,
    /// `cve_probe` (or `cve`), `protocol`. Default `["sqli", "xss", "traversal", "cmdi",
    /// "ssti", "ssrf", "cve_probe"]` ([`crate::inline_detect::DEFAULT_CLASSES`]).
    pub classes: Vec<String>,
}

impl Default for InlineDetectConfig {
    fn default() -> Self {
        InlineDetectConfig {
            mode: InlineMode::Off,
            classes: DEFAULT_CLASSES
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
        }
    }
}

impl InlineDetectConfig {
    /// Validates the section (the classes are checked even when `off`, so a typo does not
    /// wait for the day it is turned on) and, unless `off`, compiles the detectors; errors
    /// name the key under `path`.
    pub fn build(&self, path: &str) -> Result<Option<InlineDetector>, EnforceError> {
        let mut classes = ClassSet::empty();
        for (i, name) in self.classes.iter().enumerate() {
            let class = AttackClass::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = AttackClass::ALL.iter().map(|c| c.as_str()).collect();
                EnforceError::config(
                    format!("{path}.classes[{i}]"),
                    format!(
                        "unknown attack class `{name}` (one of {})",
                        known.join(", ")
                    ),
                )
            })?;
            classes.insert(class);
        }
        match self.mode {
            InlineMode::Off => Ok(None),
            mode => InlineDetector::new(path, mode, classes).map(Some),
        }
    }
}

/// Where the decision feed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedType {
    /// The engine in the same process writes the decision table (`vigil run`); never stale.
    InProcess,
    /// The compacted topic `vigil.decisions`, read from the beginning.
    Kafka,
    /// The engine's server-sent-event stream (`GET /v1/decisions/stream`).
    Http,
}

/// `[proxy.feed]`: how decisions reach this enforcement point, and when they are stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// `in_process`, `kafka` or `http`. Default `in_process`.
    #[serde(rename = "type")]
    pub kind: FeedType,
    /// `kafka`: bootstrap servers `host:port[,host:port]`. Default: the `[kafka]` section's
    /// brokers (in `vigil run`); required for `vigil proxy` without one.
    pub brokers: Option<String>,
    /// `kafka`: the decisions topic. Default `vigil.decisions`.
    pub topic: String,
    /// `kafka`: extra librdkafka settings, e.g. `"security.protocol" = "ssl"`. Default none.
    pub options: std::collections::BTreeMap<String, String>,
    /// `http`: the engine's stream URL, `http://host:port/v1/decisions/stream`. Required for
    /// `http`.
    pub url: Option<String>,
    /// `http`: environment variable holding a bearer token for the engine's API (a `read`
    /// token), when the engine has `[api] tokens`. Default none.
    pub token_env: Option<String>,
    /// The feed is stale (and the fail policy applies) when nothing (record or heartbeat)
    /// arrived for this long, and until it is first warm. Default 30000.
    pub stale_after_ms: u64,
    /// `kafka`: how often the broker is asked for the topic's metadata (the heartbeat, and
    /// how new partitions are found). Default 5000.
    pub heartbeat_interval_ms: u64,
    /// Longest wait for the broker or the engine on one call or connection attempt.
    /// Default 5000.
    pub connect_timeout_ms: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            kind: FeedType::InProcess,
            brokers: None,
            topic: "vigil.decisions".into(),
            options: Default::default(),
            url: None,
            token_env: None,
            stale_after_ms: 30_000,
            heartbeat_interval_ms: 5_000,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Compiled `[proxy.feed]`.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedSource {
    InProcess,
    Kafka {
        /// Empty: take `[kafka]`'s brokers (the binary passes them).
        brokers: Option<String>,
        topic: String,
        options: Vec<(String, String)>,
    },
    Http {
        url: Uri,
        /// `Authorization: Bearer` value sent to the engine.
        token: Option<String>,
    },
}

/// Compiled `[proxy.feed]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSettings {
    pub source: FeedSource,
    pub stale_after: Duration,
    pub heartbeat_interval: Duration,
    pub connect_timeout: Duration,
}

impl FeedConfig {
    /// Validates and compiles `[proxy.feed]`; errors name the key under `path`.
    pub fn build(&self, path: &str) -> Result<FeedSettings, EnforceError> {
        let p = |k: &str| format!("{path}.{k}");
        let source = match self.kind {
            FeedType::InProcess => FeedSource::InProcess,
            FeedType::Kafka => {
                if let Some(b) = &self.brokers
                    && b.trim().is_empty()
                {
                    return Err(EnforceError::config(p("brokers"), "must not be empty"));
                }
                if self.topic.trim().is_empty() {
                    return Err(EnforceError::config(p("topic"), "must not be empty"));
                }
                FeedSource::Kafka {
                    brokers: self.brokers.as_ref().map(|b| b.trim().to_string()),
                    topic: self.topic.trim().to_string(),
                    options: self
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }
            }
            FeedType::Http => {
                let Some(u) = &self.url else {
                    return Err(EnforceError::config(
                        p("url"),
                        "required for `type = \"http\"`",
                    ));
                };
                let token = match &self.token_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        EnforceError::config(
                            p("token_env"),
                            format!("environment variable {var} is not set"),
                        )
                    })?),
                    None => None,
                };
                FeedSource::Http {
                    url: parse_http_uri(&p("url"), u)?,
                    token,
                }
            }
        };
        if self.kind != FeedType::Http && self.url.is_some() {
            return Err(EnforceError::config(p("url"), "only for `type = \"http\"`"));
        }
        if self.kind != FeedType::Http && self.token_env.is_some() {
            return Err(EnforceError::config(
                p("token_env"),
                "only for `type = \"http\"`",
            ));
        }
        if self.kind != FeedType::Kafka && self.brokers.is_some() {
            return Err(EnforceError::config(
                p("brokers"),
                "only for `type = \"kafka\"`",
            ));
        }
        Ok(FeedSettings {
            source,
            stale_after: positive_ms(&p("stale_after_ms"), self.stale_after_ms)?,
            heartbeat_interval: positive_ms(
                &p("heartbeat_interval_ms"),
                self.heartbeat_interval_ms,
            )?,
            connect_timeout: positive_ms(&p("connect_timeout_ms"), self.connect_timeout_ms)?,
        })
    }
}

/// `[proxy.jwt]`. JWT verification is on when any key source is set (`jwks_path`,
/// `jwks_url`, `keys`); then a token that does not verify is a 401. With no key source,
/// tokens are passed through untouched and give no identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys":[...]}`), re-read every `jwks_refresh_secs`. Default none.
    pub jwks_path: Option<String>,
    /// A JWKS URL (`https://` or `http://`), fetched at start (failure stops the start) and
    /// every `jwks_refresh_secs`, and early (at most every 10 s) when a token names an unknown
    /// `kid`. Default none.
    pub jwks_url: Option<String>,
    /// PEM CA certificates trusted for `jwks_url`, besides the public CAs. Default none.
    pub jwks_ca_path: Option<String>,
    /// Default 300.
    pub jwks_refresh_secs: u64,
    /// Keys given directly.
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted signature algorithms (`none` can never be accepted). Default `["RS256",
    /// "ES256"]`.
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: `iss` not checked. Default empty.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; empty: `aud` not checked. Default empty.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30.
    pub leeway_secs: u64,
    /// Cookie carrying the token when there is no `Authorization: Bearer`. Default none.
    pub cookie: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            jwks_path: None,
            jwks_url: None,
            jwks_ca_path: None,
            jwks_refresh_secs: 300,
            keys: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            issuer: Vec::new(),
            audience: Vec::new(),
            leeway_secs: 30,
            cookie: None,
        }
    }
}

/// One key in `[[proxy.jwt.keys]]`: exactly one of `secret` (HMAC) and `pem_path` (a public
/// key: RSA, EC or Ed25519, by `algorithm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Matched against the token's `kid`; a key without one matches tokens without `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm this key verifies; must be in `algorithms`.
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem_path: Option<String>,
}

/// `[proxy.step_up]`: how a `step_up` decision asks for stronger authentication (RFC 9470).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepUpConfig {
    /// `acr_values` in the `WWW-Authenticate` challenge. Default `mfa`.
    pub acr_values: String,
    /// `max_age` in the challenge, in seconds. Default none.
    pub max_age_secs: Option<u64>,
    /// Browsers (`Accept: text/html` on GET/HEAD) are redirected here (302) instead of
    /// getting a 401. Default none (browsers get the 401 too).
    pub redirect_url: Option<String>,
    /// Query parameter of `redirect_url` carrying the original URL; empty: not added.
    /// Default `return_to`.
    pub return_to_param: String,
}

impl Default for StepUpConfig {
    fn default() -> Self {
        StepUpConfig {
            acr_values: "mfa".into(),
            max_age_secs: None,
            redirect_url: None,
            return_to_param: "return_to".into(),
        }
    }
}

/// `[proxy.trust_headers]`: headers telling the upstream (or, from forward-auth, the gateway)
/// what vigil concluded. An empty name turns one off. Copies sent by the client are removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustHeadersConfig {
    /// Score of the applied decision. Default `x-vigil-score`.
    pub score: String,
    /// The action applied. Default `x-vigil-action`.
    pub action: String,
    /// `kind:id` of the subject whose decision applied. Default `x-vigil-subject`.
    pub subject: String,
    /// Id of the applied decision. Default `x-vigil-decision-id`.
    pub decision_id: String,
    /// The verified identity (`sub`). Default `x-vigil-identity`.
    pub identity: String,
    /// The session. Default `x-vigil-session`.
    pub session: String,
    /// The API key's id. Default `x-vigil-api-key-id`.
    pub api_key_id: String,
    /// The client IP. Default `x-vigil-client-ip`.
    pub client_ip: String,
}

impl Default for TrustHeadersConfig {
    fn default() -> Self {
        TrustHeadersConfig {
            score: "x-vigil-score".into(),
            action: "x-vigil-action".into(),
            subject: "x-vigil-subject".into(),
            decision_id: "x-vigil-decision-id".into(),
            identity: "x-vigil-identity".into(),
            session: "x-vigil-session".into(),
            api_key_id: "x-vigil-api-key-id".into(),
            client_ip: "x-vigil-client-ip".into(),
        }
    }
}

/// `[proxy.authz]`: the forward-auth endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzConfig {
    /// Path prefix of the endpoint; Envoy's ext_authz appends the original path to it.
    /// Default `/v1/authz`.
    pub path_prefix: String,
    /// Address of the forward-auth listener (for gateways that ask instead of forwarding:
    /// Envoy ext_authz, NGINX `auth_request`, Traefik ForwardAuth, Kong). Default none (no
    /// forward-auth listener).
    pub listen: Option<String>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig {
            path_prefix: "/v1/authz".into(),
            listen: None,
        }
    }
}

/// Compiled trust header names (`None`: off).
#[derive(Debug, Clone)]
pub struct TrustHeaders {
    pub score: Option<HeaderName>,
    pub action: Option<HeaderName>,
    pub subject: Option<HeaderName>,
    pub decision_id: Option<HeaderName>,
    pub identity: Option<HeaderName>,
    pub session: Option<HeaderName>,
    pub api_key_id: Option<HeaderName>,
    pub client_ip: Option<HeaderName>,
}

impl TrustHeaders {
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.score,
            &self.action,
            &self.subject,
            &self.decision_id,
            &self.identity,
            &self.session,
            &self.api_key_id,
            &self.client_ip,
        ]
        .into_iter()
        .flatten()
    }
}

/// A JWT key, compiled (the PEM read, the algorithm parsed).
#[derive(Clone)]
pub struct JwtKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Compiled `[proxy.jwt]`.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub jwks_path: Option<std::path::PathBuf>,
    pub jwks_url: Option<Uri>,
    /// TLS for an `https` `jwks_url`.
    pub jwks_tls: Arc<rustls::ClientConfig>,
    pub jwks_refresh: Duration,
    pub keys: Vec<JwtKey>,
    pub algorithms: Vec<Algorithm>,
    pub issuer: Vec<String>,
    pub audience: Vec<String>,
    pub leeway_secs: u64,
    pub cookie: Option<String>,
}

/// Compiled `[proxy.step_up]`.
#[derive(Debug, Clone)]
pub struct StepUpSettings {
    pub acr_values: String,
    pub max_age_secs: Option<u64>,
    pub redirect_url: Option<String>,
    pub return_to_param: String,
}

/// The validated, compiled `[proxy]` section.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    /// Scheme and authority of the upstream.
    pub upstream: Uri,
    /// TLS for an `https` upstream.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub trusted_proxies: Vec<Cidr>,
    pub header_read_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub upstream_pool_idle_timeout: Duration,
    pub upstream_pool_max_idle_per_host: usize,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub worker_threads: usize,
    pub http2_max_concurrent_streams: u32,
    pub shutdown_readiness_delay: Duration,
    pub shutdown_drain_timeout: Duration,
    pub api_key_header: Option<HeaderName>,
    /// See [`ProxyConfig::device_header`].
    pub device_header: Option<HeaderName>,
    pub api_key_salt: String,
    pub session_cookie: String,
    pub basic_auth_identity: bool,
    pub request_id_header: HeaderName,
    pub throttle_default_rps: f64,
    pub sweep_interval: Duration,
    pub fail_policy: FailPolicy,
    /// `(path_prefix, policy)`, longest prefix first.
    pub fail_policy_routes: Vec<(String, FailPolicy)>,
    /// The TLS server configuration (ALPN h2, http/1.1), when a certificate is configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub admin_listen: Option<SocketAddr>,
    /// Compute client fingerprints (JA4 on a TLS listener, JA4H per request).
    pub fingerprints: bool,
    /// `[proxy.inline_detect]`; `None` when its mode is `off` (the detectors never run).
    pub inline_detect: Option<InlineDetector>,
    pub feed: FeedSettings,
    /// `None`: JWT verification is off (no key source configured).
    pub jwt: Option<JwtSettings>,
    pub step_up: StepUpSettings,
    pub trust_headers: TrustHeaders,
    pub authz_path_prefix: String,
    /// Where the forward-auth endpoint listens, if anywhere.
    pub authz_listen: Option<SocketAddr>,
}

impl ProxySettings {
    /// The fail policy for a request path: the longest matching `fail_policy_routes` prefix,
    /// else `fail_policy`.
    pub fn fail_policy_for(&self, path: &str) -> FailPolicy {
        self.fail_policy_routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(self.fail_policy, |(_, p)| *p)
    }
}

fn header_name(path: &str, v: &str) -> Result<Option<HeaderName>, EnforceError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    HeaderName::from_str(v.trim())
        .map(Some)
        .map_err(|_| EnforceError::config(path, format!("`{v}` is not a valid header name")))
}

fn positive_ms(path: &str, v: u64) -> Result<Duration, EnforceError> {
    if v == 0 {
        return Err(EnforceError::config(path, "must be greater than 0"));
    }
    Ok(Duration::from_millis(v))
}

/// Reads an algorithm name; `none` (any case) is refused outright.
pub fn parse_algorithm(path: &str, s: &str) -> Result<Algorithm, EnforceError> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Err(EnforceError::config(
            path,
            "`none` is never accepted: unsigned tokens prove nothing",
        ));
    }
    Algorithm::from_str(s.trim()).map_err(|_| {
        EnforceError::config(
            path,
            format!(
                "unknown algorithm `{s}` (HS256..512, RS256..512, PS256..512, ES256, ES384, EdDSA)"
            ),
        )
    })
}

impl ProxyConfig {
    /// Validates and compiles the section; errors name the key under `proxy.`.
    pub fn build(&self) -> Result<ProxySettings, EnforceError> {
        let p = |k: &str| format!("proxy.{k}");
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            EnforceError::config(p("listen"), format!("`{}` is not host:port", self.listen))
        })?;
        let upstream = parse_http_uri(&p("upstream"), &self.upstream)?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<Cidr>()
                    .map_err(|m| EnforceError::config(p(&format!("trusted_proxies[{i}]")), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_header_bytes < 8192 || self.max_header_bytes > 1 << 20 {
            return Err(EnforceError::config(
                p("max_header_bytes"),
                "must be between 8192 and 1048576",
            ));
        }
        if self.max_header_count == 0 || self.max_header_count > 1000 {
            return Err(EnforceError::config(
                p("max_header_count"),
                "must be between 1 and 1000",
            ));
        }
        if self.worker_threads > 1024 {
            return Err(EnforceError::config(
                p("worker_threads"),
                "must be at most 1024",
            ));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err(EnforceError::config(
                p("http2_max_concurrent_streams"),
                "must be greater than 0",
            ));
        }
        if self.upstream_pool_max_idle_per_host > 100_000 {
            return Err(EnforceError::config(
                p("upstream_pool_max_idle_per_host"),
                "must be at most 100000",
            ));
        }
        if !(self.throttle_default_rps.is_finite() && self.throttle_default_rps >= 0.001) {
            return Err(EnforceError::config(
                p("throttle_default_rps"),
                "must be a number of at least 0.001",
            ));
        }
        if self.session_cookie.trim().is_empty() {
            return Err(EnforceError::config(
                p("session_cookie"),
                "must not be empty",
            ));
        }
        let request_id_header = header_name(&p("request_id_header"), &self.request_id_header)?
            .ok_or_else(|| EnforceError::config(p("request_id_header"), "must not be empty"))?;
        let th = &self.trust_headers;
        let tp = |k: &str| p(&format!("trust_headers.{k}"));
        let trust_headers = TrustHeaders {
            score: header_name(&tp("score"), &th.score)?,
            action: header_name(&tp("action"), &th.action)?,
            subject: header_name(&tp("subject"), &th.subject)?,
            decision_id: header_name(&tp("decision_id"), &th.decision_id)?,
            identity: header_name(&tp("identity"), &th.identity)?,
            session: header_name(&tp("session"), &th.session)?,
            api_key_id: header_name(&tp("api_key_id"), &th.api_key_id)?,
            client_ip: header_name(&tp("client_ip"), &th.client_ip)?,
        };
        let su = &self.step_up;
        if su.acr_values.contains('"')
            || su.acr_values.contains('\\')
            || su.acr_values.trim().is_empty()
        {
            return Err(EnforceError::config(
                p("step_up.acr_values"),
                "must be non-empty, without quotes or backslashes",
            ));
        }
        if let Some(u) = &su.redirect_url {
            let uri = u
                .parse::<Uri>()
                .ok()
                .filter(|u| u.scheme().is_some() && u.authority().is_some());
            if uri.is_none() {
                return Err(EnforceError::config(
                    p("step_up.redirect_url"),
                    format!("`{u}` is not an absolute URL"),
                ));
            }
        }
        let mut fail_policy_routes = Vec::with_capacity(self.fail_policy_routes.len());
        for (i, r) in self.fail_policy_routes.iter().enumerate() {
            if !r.path_prefix.starts_with('/') {
                return Err(EnforceError::config(
                    p(&format!("fail_policy_routes[{i}].path_prefix")),
                    "must be an absolute path such as /payments/",
                ));
            }
            fail_policy_routes.push((r.path_prefix.clone(), r.fail_policy));
        }
        // longest prefix first: the first match is the most specific
        fail_policy_routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let tls = match (&self.tls_cert_path, &self.tls_key_path) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::tls::server_config(
                &p("tls_cert_path"),
                cert,
                &p("tls_key_path"),
                key,
            )?),
            (Some(_), None) => {
                return Err(EnforceError::config(
                    p("tls_key_path"),
                    "required with tls_cert_path",
                ));
            }
            (None, Some(_)) => {
                return Err(EnforceError::config(
                    p("tls_cert_path"),
                    "required with tls_key_path",
                ));
            }
        };
        let admin_listen = match &self.admin_listen {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                EnforceError::config(p("admin_listen"), format!("`{a}` is not host:port"))
            })?),
        };
        let authz_listen = match &self.authz.listen {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                EnforceError::config(p("authz.listen"), format!("`{a}` is not host:port"))
            })?),
        };
        let prefix = self.authz.path_prefix.trim_end_matches('/');
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(EnforceError::config(
                p("authz.path_prefix"),
                "must be an absolute path such as /v1/authz",
            ));
        }
        Ok(ProxySettings {
            listen,
            upstream,
            upstream_tls: crate::tls::client_config(
                &p("upstream_ca_path"),
                self.upstream_ca_path.as_deref(),
            )?,
            trusted_proxies,
            header_read_timeout: positive_ms(
                &p("header_read_timeout_ms"),
                self.header_read_timeout_ms,
            )?,
            upstream_connect_timeout: positive_ms(
                &p("upstream_connect_timeout_ms"),
                self.upstream_connect_timeout_ms,
            )?,
            upstream_response_timeout: positive_ms(
                &p("upstream_response_timeout_ms"),
                self.upstream_response_timeout_ms,
            )?,
            upstream_pool_idle_timeout: positive_ms(
                &p("upstream_pool_idle_timeout_ms"),
                self.upstream_pool_idle_timeout_ms,
            )?,
            upstream_pool_max_idle_per_host: self.upstream_pool_max_idle_per_host,
            max_header_bytes: self.max_header_bytes,
            max_header_count: self.max_header_count,
            worker_threads: self.worker_threads,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            shutdown_readiness_delay: Duration::from_millis(self.shutdown_readiness_delay_ms),
            shutdown_drain_timeout: Duration::from_millis(self.shutdown_drain_timeout_ms),
            api_key_header: header_name(&p("api_key_header"), &self.api_key_header)?,
            device_header: header_name(&p("device_header"), &self.device_header)?,
            api_key_salt: self.api_key_salt.clone(),
            session_cookie: self.session_cookie.trim().to_string(),
            basic_auth_identity: self.basic_auth_identity,
            request_id_header,
            throttle_default_rps: self.throttle_default_rps,
            sweep_interval: positive_ms(&p("sweep_interval_ms"), self.sweep_interval_ms)?,
            fail_policy: self.fail_policy,
            fail_policy_routes,
            tls,
            admin_listen,
            fingerprints: self.fingerprints,
            inline_detect: self.inline_detect.build("proxy.inline_detect")?,
            feed: self.feed.build("proxy.feed")?,
            jwt: self.jwt.build("proxy.jwt")?,
            step_up: StepUpSettings {
                acr_values: su.acr_values.trim().to_string(),
                max_age_secs: su.max_age_secs,
                redirect_url: su.redirect_url.clone(),
                return_to_param: su.return_to_param.trim().to_string(),
            },
            trust_headers,
            authz_path_prefix: prefix.to_string(),
            authz_listen,
        })
    }
}

fn parse_http_uri(path: &str, s: &str) -> Result<Uri, EnforceError> {
    let uri = s
        .parse::<Uri>()
        .map_err(|_| EnforceError::config(path, format!("`{s}` is not a URL")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(EnforceError::config(
                path,
                format!("`{s}` must start with http:// or https://"),
            ));
        }
    }
    if uri.authority().is_none() {
        return Err(EnforceError::config(path, format!("`{s}` has no host")));
    }
    Ok(uri)
}

impl JwtConfig {
    /// Compiles `[proxy.jwt]` (reading PEM files); `None` when no key source is configured.
    pub fn build(&self, path: &str) -> Result<Option<JwtSettings>, EnforceError> {
        let p = |k: &str| format!("{path}.{k}");
        if self.algorithms.is_empty() {
            return Err(EnforceError::config(
                p("algorithms"),
                "must name at least one algorithm",
            ));
        }
        let algorithms = self
            .algorithms
            .iter()
            .enumerate()
            .map(|(i, a)| parse_algorithm(&p(&format!("algorithms[{i}]")), a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            let kp = |f: &str| p(&format!("keys[{i}].{f}"));
            let alg = parse_algorithm(&kp("algorithm"), &k.algorithm)?;
            if !algorithms.contains(&alg) {
                return Err(EnforceError::config(
                    kp("algorithm"),
                    format!("`{}` is not in {}", k.algorithm, p("algorithms")),
                ));
            }
            use jsonwebtoken::AlgorithmFamily as F;
            use jsonwebtoken::DecodingKey;
            let key = match (&k.secret, &k.pem_path) {
                (Some(secret), None) => {
                    if alg.family() != F::Hmac {
                        return Err(EnforceError::config(
                            kp("secret"),
                            format!("a secret verifies HS* only, not {alg:?}; use pem_path"),
                        ));
                    }
                    if secret.len() < 32 {
                        return Err(EnforceError::config(
                            kp("secret"),
                            "must be at least 32 bytes",
                        ));
                    }
                    DecodingKey::from_secret(secret.as_bytes())
                }
                (None, Some(pem_path)) => {
                    let pem = std::fs::read(pem_path).map_err(|e| {
                        EnforceError::config(
                            kp("pem_path"),
                            format!("cannot read `{pem_path}`: {e}"),
                        )
                    })?;
                    let r = match alg.family() {
                        F::Rsa => DecodingKey::from_rsa_pem(&pem),
                        F::Ec => DecodingKey::from_ec_pem(&pem),
                        F::Ed => DecodingKey::from_ed_pem(&pem),
                        F::Hmac => {
                            return Err(EnforceError::config(
                                kp("pem_path"),
                                "HS* algorithms take a secret, not a PEM",
                            ));
                        }
                    };
                    r.map_err(|e| {
                        EnforceError::config(
                            kp("pem_path"),
                            format!("not a {alg:?} public key: {e}"),
                        )
                    })?
                }
                _ => {
                    return Err(EnforceError::config(
                        p(&format!("keys[{i}]")),
                        "set exactly one of `secret` and `pem_path`",
                    ));
                }
            };
            keys.push(JwtKey {
                kid: k.kid.clone(),
                algorithm: alg,
                key,
            });
        }
        let jwks_url = match &self.jwks_url {
            Some(u) => Some(parse_http_uri(&p("jwks_url"), u)?),
            None => None,
        };
        if let Some(path_s) = &self.jwks_path
            && path_s.trim().is_empty()
        {
            return Err(EnforceError::config(p("jwks_path"), "must not be empty"));
        }
        if self.jwks_refresh_secs == 0 {
            return Err(EnforceError::config(
                p("jwks_refresh_secs"),
                "must be greater than 0",
            ));
        }
        if self.leeway_secs > 600 {
            return Err(EnforceError::config(
                p("leeway_secs"),
                "must be at most 600",
            ));
        }
        if let Some(c) = &self.cookie
            && c.trim().is_empty()
        {
            return Err(EnforceError::config(
                p("cookie"),
                "must not be empty when set",
            ));
        }
        if self.jwks_path.is_none() && jwks_url.is_none() && keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(JwtSettings {
            jwks_path: self.jwks_path.as_ref().map(std::path::PathBuf::from),
            jwks_url,
            jwks_tls: crate::tls::client_config(&p("jwks_ca_path"), self.jwks_ca_path.as_deref())?,
            jwks_refresh: Duration::from_secs(self.jwks_refresh_secs),
            keys,
            algorithms,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway_secs: self.leeway_secs,
            cookie: self.cookie.as_ref().map(|c| c.trim().to_string()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(cfg: ProxyConfig) -> String {
        cfg.build().unwrap_err().to_string()
    }

    #[test]
    fn defaults_build() {
        let s = ProxyConfig::default().build().unwrap();
        assert!(s.jwt.is_none());
        assert_eq!(s.max_header_count, 100);
        assert_eq!(s.authz_path_prefix, "/v1/authz");
        assert_eq!(s.trust_headers.all().count(), 8);
    }

    #[test]
    fn bad_keys_are_named_by_path() {
        let mut c = ProxyConfig::default();
        c.jwt.algorithms = vec!["RS256".into(), "none".into()];
        c.jwt.keys = vec![JwtKeyConfig {
            kid: None,
            algorithm: "HS256".into(),
            secret: Some("x".repeat(40)),
            pem_path: None,
        }];
        assert!(err(c.clone()).contains("proxy.jwt.algorithms[1]"));
        c.jwt.algorithms = vec!["RS256".into()];
        assert!(err(c.clone()).contains("proxy.jwt.keys[0].algorithm"));
        c.jwt.algorithms.push("HS256".into());
        c.jwt.keys[0].secret = Some("short".into());
        assert!(err(c.clone()).contains("proxy.jwt.keys[0].secret"));
        c.jwt.keys[0].secret = Some("x".repeat(40));
        assert!(c.build().unwrap().jwt.is_some());

        let c = ProxyConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.0/40".into()],
            ..Default::default()
        };
        assert!(err(c).contains("proxy.trusted_proxies[1]"));
        let c = ProxyConfig {
            upstream: "ftp://x".into(),
            ..Default::default()
        };
        assert!(err(c).contains("proxy.upstream"));
        let c = ProxyConfig {
            upstream: "https://api.internal:8443".into(),
            upstream_ca_path: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(err(c).contains("proxy.upstream_ca_path"));
        let c = ProxyConfig {
            header_read_timeout_ms: 0,
            ..Default::default()
        };
        assert!(err(c).contains("proxy.header_read_timeout_ms"));
        let mut c = ProxyConfig::default();
        c.trust_headers.score = "bad header".into();
        assert!(err(c).contains("proxy.trust_headers.score"));
        let mut c = ProxyConfig::default();
        c.step_up.redirect_url = Some("/relative".into());
        assert!(err(c).contains("proxy.step_up.redirect_url"));
    }

    #[test]
    fn feed_tls_and_fail_policy_routes() {
        let c: ProxyConfig = serde_json::from_str(
            r#"{"fail_policy":"fail_open","fail_policy_routes":[
                {"path_prefix":"/pay","fail_policy":"fail_closed"},
                {"path_prefix":"/pay/public","fail_policy":"keep_last_known"}],
              "feed":{"type":"kafka","brokers":"127.0.0.1:9092"}}"#,
        )
        .unwrap();
        let s = c.build().unwrap();
        assert_eq!(s.fail_policy_for("/pay/x"), FailPolicy::FailClosed);
        assert_eq!(
            s.fail_policy_for("/pay/public/x"),
            FailPolicy::KeepLastKnown
        );
        assert_eq!(s.fail_policy_for("/other"), FailPolicy::FailOpen);
        assert!(
            matches!(s.feed.source, FeedSource::Kafka { ref topic, .. } if topic == "vigil.decisions")
        );
        assert_eq!(s.feed.stale_after, Duration::from_secs(30));

        let mut c = ProxyConfig::default();
        c.feed.kind = FeedType::Http;
        assert!(err(c.clone()).contains("proxy.feed.url"));
        c.feed.url = Some("http://127.0.0.1:7070/v1/decisions/stream".into());
        assert!(c.build().is_ok());
        c.feed.brokers = Some("x:1".into());
        assert!(err(c).contains("proxy.feed.brokers"));
        let c = ProxyConfig {
            tls_cert_path: Some("/nonexistent.pem".into()),
            ..Default::default()
        };
        assert!(err(c).contains("proxy.tls_key_path"));
        let c = ProxyConfig {
            tls_cert_path: Some("/nonexistent.pem".into()),
            tls_key_path: Some("/nonexistent.key".into()),
            ..Default::default()
        };
        assert!(err(c).contains("proxy.tls_cert_path"));
        let c = ProxyConfig {
            fail_policy_routes: vec![FailPolicyRoute {
                path_prefix: "pay".into(),
                fail_policy: FailPolicy::FailOpen,
            }],
            ..Default::default()
        };
        assert!(err(c).contains("proxy.fail_policy_routes[0].path_prefix"));
        let c = ProxyConfig {
            admin_listen: Some("nope".into()),
            ..Default::default()
        };
        assert!(err(c).contains("proxy.admin_listen"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<ProxyConfig>(r#"{"jwt":{"algoritms":["RS256"]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("algoritms"), "{e}");
        let c: ProxyConfig =
            serde_json::from_str(r#"{"fail_policy":"fail_closed","jwt":{"leeway_secs":5}}"#)
                .unwrap();
        assert_eq!(c.fail_policy, FailPolicy::FailClosed);
        assert_eq!(c.jwt.leeway_secs, 5);
        assert_eq!(c.jwt.jwks_refresh_secs, 300);
    }

    #[test]
    fn inline_detect_defaults_off_with_the_injection_classes() {
        assert!(
            ProxyConfig::default()
                .build()
                .unwrap()
                .inline_detect
                .is_none()
        );
        let c: ProxyConfig = serde_json::from_str(r#"{"inline_detect":{"mode":"block"}}"#).unwrap();
        let d = c.build().unwrap().inline_detect.expect("on");
        assert_eq!(d.mode(), InlineMode::Block);
        assert_eq!(
            d.classes().to_string(),
            "sqli,xss,traversal,cmdi,ssti,ssrf,cve_probe"
        );
        let c: ProxyConfig = serde_json::from_str(
            r#"{"inline_detect":{"mode":"monitor","classes":["scanner_ua"," cve ","scanner_ua"]}}"#,
        )
        .unwrap();
        let d = c.build().unwrap().inline_detect.expect("on");
        assert_eq!(d.mode(), InlineMode::Monitor);
        assert_eq!(d.classes().to_string(), "scanner_ua,cve_probe");
        // off needs no classes
        let c: ProxyConfig =
            serde_json::from_str(r#"{"inline_detect":{"mode":"off","classes":[]}}"#).unwrap();
        assert!(c.build().unwrap().inline_detect.is_none());
    }

    #[test]
    fn inline_detect_errors_name_the_key_and_value() {
        // an unknown class is an error even while off
        let c: ProxyConfig =
            serde_json::from_str(r#"{"inline_detect":{"classes":["sqli","sqlx"]}}"#).unwrap();
        let e = err(c);
        assert!(e.contains("proxy.inline_detect.classes[1]"), "{e}");
        assert!(e.contains("`sqlx`"), "{e}");
        assert!(e.contains("cve_probe"), "the known classes are listed: {e}");
        let c: ProxyConfig =
            serde_json::from_str(r#"{"inline_detect":{"mode":"block","classes":[]}}"#).unwrap();
        assert!(err(c).contains("proxy.inline_detect.classes"));
        let e = serde_json::from_str::<ProxyConfig>(r#"{"inline_detect":{"mode":"blok"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blok") && e.contains("monitor"), "{e}");
        let e = serde_json::from_str::<ProxyConfig>(r#"{"inline_detect":{"clases":["sqli"]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("clases"), "{e}");
    }

    #[test]
    fn fingerprints_default_on_and_take_only_a_bool() {
        assert!(ProxyConfig::default().build().unwrap().fingerprints);
        let c: ProxyConfig = serde_json::from_str(r#"{"fingerprints":false}"#).unwrap();
        assert!(!c.build().unwrap().fingerprints);
        for bad in [r#"{"fingerprints":"no"}"#, r#"{"fingerprints":0}"#] {
            let e = serde_json::from_str::<ProxyConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("boolean"), "{bad}: {e}");
        }
        let e = serde_json::from_str::<ProxyConfig>(r#"{"fingerprint":false}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fingerprint"), "{e}");
    }
}
