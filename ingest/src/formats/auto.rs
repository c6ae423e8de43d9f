//! `auto`: tells each line's format by its shape. JSON lines are told apart by keys only one
//! gateway writes; text lines by their first character (`[` is Envoy's start time).

use super::json::{JsonFormat, JsonMapping};
use super::{Emit, FormatName, FormatOptions, LogFormat};
use crate::error::{IngestError, ParseError, ParseErrorKind};
use crate::record::AccessRecord;
use memchr::memmem::Finder;

pub struct Auto {
    nginx_json: JsonFormat,
    envoy_json: JsonFormat,
    kong: JsonFormat,
    aws: JsonFormat,
    traefik: JsonFormat,
    generic: JsonFormat,
    probes: Vec<(Finder<'static>, FormatName)>,
}

impl Auto {
    pub fn new(opts: &FormatOptions) -> Result<Self, IngestError> {
        let f = |n| JsonFormat::new(n, &opts.fields);
        // Most specific keys first; a key here must be one the other gateways do not write.
        let probes = [
            ("\"resourceLogs\"", FormatName::Otlp),
            ("\"latencies\"", FormatName::Kong),
            ("\"started_at\"", FormatName::Kong),
            ("\"DownstreamStatus\"", FormatName::TraefikJson),
            ("\"RequestMethod\"", FormatName::TraefikJson),
            ("\"httpMethod\"", FormatName::AwsApigateway),
            ("\"requestTimeEpoch\"", FormatName::AwsApigateway),
            ("\"response_code\"", FormatName::EnvoyJson),
            ("\"upstream_host\"", FormatName::EnvoyJson),
            ("\"request_method\"", FormatName::NginxJson),
            ("\"time_iso8601\"", FormatName::NginxJson),
            ("\"remote_addr\"", FormatName::NginxJson),
        ]
        .into_iter()
        .map(|(k, f)| (Finder::new(k.as_bytes()).into_owned(), f))
        .collect();
        Ok(Self {
            nginx_json: f(FormatName::NginxJson)?,
            envoy_json: f(FormatName::EnvoyJson)?,
            kong: f(FormatName::Kong)?,
            aws: f(FormatName::AwsApigateway)?,
            traefik: f(FormatName::TraefikJson)?,
            generic: JsonFormat::new(
                FormatName::Json,
                &opts.fields.layered_over(&JsonMapping::default()),
            )?,
            probes,
        })
    }

    /// The format `line` is in, if it can be told.
    pub fn detect(&self, line: &str) -> Option<FormatName> {
        let t = line.trim_start();
        match t.as_bytes().first()? {
            b'{' => Some(
                self.probes
                    .iter()
                    .find(|(f, _)| f.find(t.as_bytes()).is_some())
                    .map_or(FormatName::Json, |(_, n)| *n),
            ),
            b'[' => Some(FormatName::Envoy),
            c if c.is_ascii_hexdigit() || *c == b':' => Some(FormatName::Nginx),
            _ => None,
        }
    }
}

/// A text line: Envoy when it starts with `[`, else NGINX.
pub(crate) fn parse_text_line(line: &str) -> Result<AccessRecord<'_>, ParseError> {
    if line.trim_start().starts_with('[') {
        super::envoy::parse_line(line.trim())
    } else {
        super::nginx::parse_line(line.trim())
    }
}

impl LogFormat for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn parse<'a>(&self, line: &'a str, emit: &mut Emit<'_, 'a>) {
        let json = |f: &JsonFormat| f.parse_line(line);
        match self.detect(line) {
            Some(FormatName::Otlp) => super::otlp::Otlp.parse(line, emit),
            Some(FormatName::Kong) => emit(json(&self.kong)),
            Some(FormatName::TraefikJson) => emit(json(&self.traefik)),
            Some(FormatName::AwsApigateway) => emit(json(&self.aws)),
            Some(FormatName::EnvoyJson) => emit(json(&self.envoy_json)),
            Some(FormatName::NginxJson) => emit(json(&self.nginx_json)),
            Some(FormatName::Json) => emit(json(&self.generic)),
            Some(FormatName::Envoy) => emit(super::envoy::parse_line(line)),
            Some(FormatName::Nginx) => emit(super::nginx::parse_line(line)),
            _ => emit(Err(ParseError::new(
                ParseErrorKind::UnrecognizedFormat,
                "the line is neither JSON nor an NGINX or Envoy text line",
            ))),
        }
    }
}
