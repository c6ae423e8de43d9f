//! Shared checks of vigil's fuzz targets (`fuzz_targets/`). Each target is a few lines that
//! pick an entry point; the invariants it asserts live here, so every format is held to the
//! same ones.
//!
//! What a target asserts, beyond "does not panic":
//! - [`formats`]: every record a format accepts is sane (status at most 999, durations finite
//!   and not negative, no empty text, JSON text trimmed, a timestamp that round-trips through
//!   RFC 3339); parsing is deterministic; and the pipeline turns the same lines into exactly
//!   those events, column for column, plus one dead letter per rejected line.
//! - [`http`]: the forward-auth check classifies its caller by the headers present, believes
//!   client-address headers only from trusted peers, and answers with the subjects it
//!   extracted.
//! - [`jwt`]: enforce's verified claims and ingest's unverified reading of the same token
//!   agree.
#![forbid(unsafe_code)]

pub mod formats;
pub mod http;
pub mod jwt;
