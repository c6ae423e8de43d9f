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
//! - [`events`]: the proxy's own access events, for ingest.
//! - [`config`], [`error`], [`response`]: `[proxy]` settings, the crate's error type, and every
//!   response vigil writes itself (problem+json).
//!
//! This crate depends on no other vigil crate and on none of the analytics or ML libraries.
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod decision;
pub mod enforcement;
pub mod error;
pub mod events;
pub mod framing;
pub mod jwt;
pub mod proxy;
pub mod response;
pub mod server;
pub mod subjects;
pub mod table;
pub mod throttle;

pub use authz::AuthzServer;
pub use config::{ProxyConfig, ProxySettings};
pub use decision::{Action, Decision, Subject, SubjectKind, UnixMicros};
pub use enforcement::{Enforcement, Enforcer, RequestView, TableEnforcer};
pub use error::{EnforceError, Side};
pub use events::{AccessEvent, EventSink, event_channel};
pub use proxy::Proxy;
pub use server::Readiness;
pub use table::{DecisionTable, Upsert, Verdict};
