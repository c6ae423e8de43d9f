//! vigil scoring: per-subject windowed features, rules and trust decisions.
//!
//! - [`features`]: subject state and the feature catalogue (event-time windows, bounded
//!   memory).
//! - [`rules`]: SQL rules over the features, compiled once with DataFusion, reloadable.
//! - [`policy`]: from fired rules to one decision (score, action, TTL, hysteresis, escalation,
//!   allow-list, monitor mode).
//! - [`scorer`]: events in, features, scores and decisions out.
//!
//! Decisions are `vigil_enforce::Decision`s: the enforcement point applies exactly what this
//! crate issues.
#![forbid(unsafe_code)]

mod error;
pub mod features;
pub mod policy;
pub mod rules;
pub mod scorer;
pub mod sketch;

pub use error::ScoringError;
pub use scorer::{Scorer, ScoringConfig, ScoringOutput};
