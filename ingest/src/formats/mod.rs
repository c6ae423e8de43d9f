//! Gateway log formats: one module each, all behind [`LogFormat`].
//!
//! A format turns one line into [`AccessRecord`]s (usually one; an OTLP export holds many). It
//! never panics and never drops a line silently: each record is `Ok`, or an `Err` that becomes
//! a dead letter. The JSON formats are tables of field paths over one shared walker
//! ([`json::JsonFormat`]), so adding a gateway is adding a table.

pub mod auto;
pub mod envoy;
pub mod json;
pub mod nginx;
pub mod otlp;
mod text;

use crate::error::{IngestError, ParseError};
use crate::record::AccessRecord;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use json::JsonMapping;

/// The callback a format hands each record (or each failure) to.
pub type Emit<'e, 'a> = dyn FnMut(Result<AccessRecord<'a>, ParseError>) + 'e;

pub trait LogFormat: Send + Sync {
    /// The `--format` name.
    fn name(&self) -> &'static str;

    /// Parses one line (without its newline), calling `emit` once per record it holds, or once
    /// with the error that made the line unreadable.
    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>);
}

/// The names accepted by `--format` and `format = "..."` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FormatName {
    /// NGINX `combined`, optionally followed by `"$http_x_forwarded_for"` and/or
    /// `$request_time $upstream_response_time`.
    Nginx,
    NginxJson,
    /// Envoy's default text format, and Istio's longer variant.
    Envoy,
    EnvoyJson,
    /// Kong's `http-log` / `file-log` JSON.
    Kong,
    AwsApigateway,
    TraefikJson,
    /// OpenTelemetry logs, OTLP/JSON encoding (one `ExportLogsServiceRequest` per line).
    Otlp,
    /// Any JSON object, with a configured field mapping.
    Json,
    /// Detects the format of each line.
    Auto,
}

impl FormatName {
    pub const ALL: [FormatName; 10] = [
        Self::Nginx,
        Self::NginxJson,
        Self::Envoy,
        Self::EnvoyJson,
        Self::Kong,
        Self::AwsApigateway,
        Self::TraefikJson,
        Self::Otlp,
        Self::Json,
        Self::Auto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::NginxJson => "nginx-json",
            Self::Envoy => "envoy",
            Self::EnvoyJson => "envoy-json",
            Self::Kong => "kong",
            Self::AwsApigateway => "aws-apigateway",
            Self::TraefikJson => "traefik-json",
            Self::Otlp => "otlp",
            Self::Json => "json",
            Self::Auto => "auto",
        }
    }

    /// Builds the parser. `opts.fields` adds candidate field paths in front of a JSON format's
    /// defaults (and is the whole mapping for `json`); text formats have no fields to map.
    pub fn build(self, opts: &FormatOptions) -> Result<Box<dyn LogFormat>, IngestError> {
        let has_fields = opts.fields != JsonMapping::default();
        Ok(match self {
            Self::Nginx | Self::Envoy if has_fields => {
                return Err(IngestError::config(
                    "fields",
                    format!(
                        "the `{}` text format has no fields to map; use a JSON format",
                        self.as_str()
                    ),
                ));
            }
            Self::Nginx => Box::new(nginx::Nginx),
            Self::Envoy => Box::new(envoy::Envoy),
            Self::Otlp => Box::new(otlp::Otlp::new(opts)?),
            Self::Auto => Box::new(auto::Auto::new(opts)?),
            json_format => Box::new(json::JsonFormat::new(json_format, &opts.fields)?),
        })
    }
}

impl fmt::Display for FormatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FormatName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown format `{s}`; expected one of {}", names.join(", "))
            })
    }
}

/// Per-source format options (`[sources.NAME.fields]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatOptions {
    /// Field paths for JSON formats, e.g. `identity = ["jwt.sub", "user"]`.
    pub fields: JsonMapping,
}

/// Runs `format` over one line and collects owned results (tests and tools; the pipeline
/// appends records straight into Arrow builders instead).
pub fn parse_collect<'a>(
    format: &dyn LogFormat,
    line: &'a str,
) -> Vec<Result<AccessRecord<'a>, ParseError>> {
    let mut out = Vec::new();
    format.parse(line, &mut |r| out.push(r));
    out
}
