//! vigil scoring: per-subject windowed features, rules, models and trust decisions.
//!
//! Not built yet: this crate is the home of the scoring issue (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
