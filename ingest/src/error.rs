//! The ingest crate's errors: [`ParseError`] for one bad line (data, never fatal) and
//! [`IngestError`] for a source or sink that cannot work (config, I/O, broker).

use std::fmt;

/// Why a line could not be turned into an event. The kind is a small closed set, so it can be a
/// metric label and a key of the `dead_letter_reasons` summary; the detail is for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParseErrorKind {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is longer than the configured maximum.
    LineTooLong,
    /// The line is empty or only whitespace.
    Empty,
    /// The line is not JSON, or not the JSON shape the format expects.
    InvalidJson,
    /// The text line does not have the format's shape (missing quote, bracket or field).
    Malformed,
    /// A required field (timestamp, status) is absent.
    MissingField,
    /// The timestamp could not be read.
    BadTimestamp,
    /// The status code is not a number in 100..=999.
    BadStatus,
    /// A numeric field (bytes, latency) is not a number.
    BadNumber,
    /// `auto` could not tell which gateway format the line is in.
    UnrecognizedFormat,
}

impl ParseErrorKind {
    pub const ALL: [ParseErrorKind; 10] = [
        Self::NotUtf8,
        Self::LineTooLong,
        Self::Empty,
        Self::InvalidJson,
        Self::Malformed,
        Self::MissingField,
        Self::BadTimestamp,
        Self::BadStatus,
        Self::BadNumber,
        Self::UnrecognizedFormat,
    ];

    /// The stable, snake_case name used in dead letters, summaries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::LineTooLong => "line_too_long",
            Self::Empty => "empty",
            Self::InvalidJson => "invalid_json",
            Self::Malformed => "malformed",
            Self::MissingField => "missing_field",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadStatus => "bad_status",
            Self::BadNumber => "bad_number",
            Self::UnrecognizedFormat => "unrecognized_format",
        }
    }
}

impl ParseError {
    pub fn new(kind: ParseErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::new(ParseErrorKind::MissingField, format!("no `{field}` field"))
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ParseErrorKind::Malformed, detail)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for ParseError {}

/// A failure of a source, a sink or a configuration: unlike [`ParseError`] these stop the
/// component that hit them. `retryable` says whether trying again may succeed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A configuration value is invalid; `key` is its path, e.g. `sources.edge.format`.
    #[error("invalid config at `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("I/O error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kafka error ({what}): {source}")]
    Kafka {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The downstream receiver has gone away (the pipeline is shutting down).
    #[error("pipeline closed")]
    Closed,
}

impl IngestError {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub fn kafka(what: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Self::Kafka {
            what: what.into(),
            source,
        }
    }

    /// Whether the operation may succeed if tried again (transient I/O or broker trouble).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Kafka { .. })
    }
}
