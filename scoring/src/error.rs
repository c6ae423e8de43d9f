//! The scoring crate's error type.

/// What went wrong in scoring; `Config` and `Rule` errors name what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// A configuration value is invalid; `key` is its path (`scoring.features.windows_secs`).
    #[error("invalid config at `{key}`: {message}")]
    Config { key: String, message: String },
    /// A rule does not compile; `rule` is its id, `message` the SQL parser's or planner's.
    #[error("rule `{rule}`: {message}")]
    Rule { rule: String, message: String },
    /// The rules file cannot be read or is not valid TOML.
    #[error("rules file {path}: {message}")]
    RulesFile { path: String, message: String },
    /// A reputation list's download failed (the last good list stays in use); `message` says
    /// why: connection, timeout, status, size, or the body not parsing. Safe to retry.
    #[error("reputation list `{list}`: download failed: {message}")]
    Feed { list: String, message: String },
    /// The events batch does not have the `events` schema (a bug upstream, not bad input).
    #[error("events batch: {0}")]
    Schema(String),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

impl ScoringError {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
