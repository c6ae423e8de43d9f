//! The crate's one error type. Every error says which side failed (the client, the upstream,
//! or this process) and whether repeating the request is safe; [`crate::response`] turns the
//! ones a client can see into `application/problem+json` responses.

use hyper::StatusCode;
use std::time::Duration;

/// Which party an error is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request (or the configuration a person wrote) was wrong.
    Client,
    /// The upstream service failed or was too slow.
    Upstream,
    /// This process failed.
    Internal,
}

/// Everything that can fail in `vigil-enforce`.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// A configuration value is invalid; `path` names the key (`proxy.jwt.algorithms[1]`).
    #[error("config `{path}`: {message}")]
    Config { path: String, message: String },
    /// A bearer token or token cookie was present but did not verify.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The request's HTTP/1 framing is ambiguous (both `Content-Length` and
    /// `Transfer-Encoding`, or more than one `Content-Length`).
    #[error("ambiguous request framing: {0}")]
    AmbiguousFraming(&'static str),
    /// Too many header fields, or too many header bytes.
    #[error("request header fields too large: {0}")]
    HeadersTooLarge(String),
    /// Any other malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No connection to the upstream could be made (the request was not sent).
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(String),
    /// The upstream did not answer within the response timeout.
    #[error("upstream did not respond within {0:?}")]
    UpstreamTimeout(Duration),
    /// The upstream connection failed after the request was (maybe) sent.
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// A decision record is invalid (non-finite score, expiry before issue, ...).
    #[error("invalid decision: {0}")]
    InvalidDecision(String),
    /// The JWKS could not be read or fetched.
    #[error("JWKS: {0}")]
    Jwks(String),
    /// The decision feed is stale and the route's fail policy is `fail_closed`.
    #[error("the decision feed is stale (fail_closed)")]
    FeedStale,
    /// The decision feed could not be set up (Kafka client, HTTP feed URL).
    #[error("decision feed: {0}")]
    Feed(String),
    /// Socket-level failure of this process (bind, accept).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl EnforceError {
    /// A config error at `path`.
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Self::Config { .. }
            | Self::InvalidToken(_)
            | Self::AmbiguousFraming(_)
            | Self::HeadersTooLarge(_)
            | Self::BadRequest(_)
            | Self::InvalidDecision(_) => Side::Client,
            Self::UpstreamConnect(_) | Self::UpstreamTimeout(_) | Self::Upstream(_) => {
                Side::Upstream
            }
            Self::FeedStale => Side::Internal,
            Self::Jwks(_) | Self::Feed(_) | Self::Io(_) => Side::Internal,
        }
    }

    /// Whether repeating the same request may succeed without changing it. A connect failure is
    /// safe to retry (nothing was sent); a timeout or a broken upstream connection is not (the
    /// upstream may have acted on the request).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::UpstreamConnect(_)
                | Self::Jwks(_)
                | Self::Feed(_)
                | Self::Io(_)
                | Self::FeedStale
        )
    }

    /// The HTTP status a client sees for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::AmbiguousFraming(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UpstreamConnect(_) | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::FeedStale => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config { .. }
            | Self::InvalidDecision(_)
            | Self::Jwks(_)
            | Self::Feed(_)
            | Self::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short, stable problem type slug (`urn:vigil:problem:<slug>`).
    pub fn problem_slug(&self) -> &'static str {
        match self {
            Self::InvalidToken(_) => "invalid-token",
            Self::AmbiguousFraming(_) => "ambiguous-framing",
            Self::HeadersTooLarge(_) => "headers-too-large",
            Self::BadRequest(_) => "bad-request",
            Self::UpstreamConnect(_) | Self::Upstream(_) => "bad-gateway",
            Self::UpstreamTimeout(_) => "gateway-timeout",
            Self::FeedStale => "decisions-unavailable",
            Self::Config { .. }
            | Self::InvalidDecision(_)
            | Self::Jwks(_)
            | Self::Feed(_)
            | Self::Io(_) => "internal",
        }
    }

    /// What a client is told: the full message for client errors, a generic one otherwise
    /// (internals go to the log, not to the client).
    pub fn public_detail(&self) -> String {
        match self.side() {
            Side::Client => self.to_string(),
            Side::Upstream => match self {
                Self::UpstreamTimeout(_) => "the upstream service did not respond in time".into(),
                _ => "the upstream service is unavailable".into(),
            },
            Side::Internal => match self {
                Self::FeedStale => {
                    "trust decisions are temporarily unavailable; retry later".into()
                }
                _ => "internal error".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_retries() {
        let e = EnforceError::UpstreamConnect("refused".into());
        assert_eq!(e.side(), Side::Upstream);
        assert!(e.retryable());
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let t = EnforceError::UpstreamTimeout(Duration::from_secs(1));
        assert!(!t.retryable());
        assert!(!t.public_detail().contains("1s"));
        let c = EnforceError::config("proxy.jwt.algorithms[1]", "unknown algorithm `none`");
        assert_eq!(c.side(), Side::Client);
        assert!(c.to_string().contains("proxy.jwt.algorithms[1]"));
        assert_eq!(
            EnforceError::InvalidToken("expired".into()).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
