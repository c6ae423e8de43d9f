//! vigil ingest: from gateway access logs to normalized events.
//!
//! The route of a log line through this crate:
//!
//! 1. a [`source`] (Kafka, HTTP push, a tailed file, stdin) reads raw lines and hands them on in
//!    bounded [`LineChunk`](source::LineChunk)s, each line with its stable position;
//! 2. a [`format`](formats) parses each line into an [`AccessRecord`](record::AccessRecord) that
//!    borrows from the line (no copy of the line's strings);
//! 3. the [`normalize::Normalizer`] turns the record into an event row — client IP through trusted
//!    proxies, identity/session from a logged JWT, API key hashed, route templated — appended
//!    straight into the Arrow builders of an [`event::EventBatchBuilder`];
//! 4. lines that do not parse become [`DeadLetter`](dead_letter::DeadLetter)s with their reason
//!    and position; nothing is dropped silently.
//!
//! Guarantees: no input panics (parsers are fuzzed and property-tested); every line is either an
//! event or a dead letter; event ids are derived from the line's source position, so replaying
//! the same input yields the same ids and duplicates can be dropped downstream.
#![forbid(unsafe_code)]

pub mod dead_letter;
pub mod error;
pub mod event;
pub mod formats;
pub mod json;
pub mod normalize;
pub mod pipeline;
pub mod record;
pub mod simulate;
pub mod source;
pub mod store;
pub mod time;

pub use error::{IngestError, ParseError, ParseErrorKind};
pub use event::{EventBatchBuilder, events_schema};
pub use record::AccessRecord;
