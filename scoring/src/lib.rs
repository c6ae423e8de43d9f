//! vigil scoring: per-subject windowed features, rules, models and trust decisions.
//!
//! - [`features`]: subject state and the feature catalogue (event-time windows, bounded
//!   memory).
//! - [`rules`]: SQL rules over the features, compiled once with DataFusion, reloadable.
//! - [`model`]: ONNX models (manifest, tract, batched inference, explanations), built-in and
//!   from directories.
//! - [`policy`]: from fired rules and model scores to one decision (trust score, action, TTL,
//!   hysteresis, escalation, allow-list, monitor mode, reasons).
//! - [`scorer`]: events in, features, scores and decisions out.
//! - [`tables`]: the `decisions` table's schema and rows.
//! - [`backtest`]: which subjects a rule would have hit over past events.
//! - [`reputation`]: IP reputation lists (files, or URLs downloaded on a schedule) as a feature
//!   (`reputation_lists`), a reason, a weight in the trust score and, when configured, a
//!   decision of their own.
//! - [`pillar`]: the zero-trust pillar of each feature, rule and reason; the `rules`,
//!   `features` tables and the `pillars` view.
//!
//! Decisions are `vigil_enforce::Decision`s: the enforcement point applies exactly what this
//! crate issues.
// One measured exception: `model::clear_upper_vector_state` (a `vzeroupper` after tract's
// AVX-512 kernels made the scoring thread's SSE code 14x slower).
#![deny(unsafe_code)]

pub mod backtest;
mod error;
pub mod features;
pub mod model;
pub mod pillar;
pub mod policy;
pub mod reputation;
pub mod rules;
pub mod scorer;
pub mod sketch;
pub mod tables;

/// The Parquet implementation DataFusion uses (same Arrow version as the feature batches), for
/// writing feature rows to files.
pub use datafusion::parquet;
pub use error::ScoringError;
pub use scorer::{Assessment, Scorer, ScoringConfig, ScoringOutput};
