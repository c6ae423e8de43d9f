//! vigil enforce: the inline proxy, subject extraction, the decision table and forward-auth.
//!
//! - [`decision`]: the decision record (schema version 1) that scoring produces.
//! - [`table`]: the lock-free table of current decisions and the verdict for a request.
//! - [`subjects`], [`jwt`]: the subjects of a request (client IP through trusted proxies,
//!   verified JWT, session cookie, API key id), computed as ingest computes them.
//! - [`enforcement`]: the decision seam ([`Enforcer`]), the phase order, and what the proxy and
//!   forward-auth share.
//! - [`proxy`], [`authz`], [`server`]: the reverse proxy, the forward-auth endpoint, and how
//!   both serve connections and shut down.
//! - [`inline_detect`]: inline blocking on strong request-content evidence
//!   (`[proxy.inline_detect]`, off by default), with the `vigil-detect` detectors.
//! - [`events`]: the proxy's own access events, for ingest.
//! - [`feed`]: the decision feed (Kafka topic, the engine's server-sent-event stream), its
//!   staleness and the fail policy.
//! - [`metrics`], [`admin`]: Prometheus text for the proxy, and the admin listener serving it.
//! - [`tls`]: TLS with ALPN on the proxy listener.
//! - [`service`]: one enforcement point assembled (the proxy's event loops, forward-auth, the
//!   feed, the admin listener, upkeep), as `vigil run` and `vigil proxy` start it.
//! - [`config`], [`error`], [`response`]: `[proxy]` settings, the crate's error type, and every
//!   response vigil writes itself (problem+json).
//!
//! This crate depends on no other vigil crate but the leaf `vigil-detect`, and on none of the
//! analytics or ML libraries.
#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod config;
pub mod decision;
pub mod enforcement;
pub mod error;
pub mod events;
pub mod feed;
pub mod fingerprint;
pub mod framing;
pub mod inline_detect;
pub mod jwt;
pub mod metrics;
pub mod proxy;
pub mod response;
pub mod server;
pub mod service;
pub mod subjects;
pub mod table;
pub mod throttle;
pub mod tls;

pub use authz::AuthzServer;
pub use config::{ProxyConfig, ProxySettings};
pub use decision::{Action, Decision, Subject, SubjectKind, UnixMicros};
pub use enforcement::{EnforcePoint, Enforcement, Enforcer, RequestView, TableEnforcer};
pub use error::{EnforceError, Side};
pub use events::{AccessEvent, EventSink, event_channel};
pub use feed::kafka::KafkaFeed;
pub use feed::sse::{DecisionBroadcast, HttpFeed};
pub use feed::{FeedChange, FeedStatus};
pub use inline_detect::{InlineDetector, InlineMode};
pub use metrics::{ProxyMetrics, RenderMetrics};
pub use proxy::Proxy;
pub use server::Readiness;
pub use service::RunningPoint;
pub use table::{DecisionTable, Upsert, Verdict};
