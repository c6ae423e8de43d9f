//! Decisions: what scoring concluded about a subject, and what the enforcement point applies.
//!
//! # The decision record, schema version 1
//!
//! This is the JSON value of the `vigil.decisions` topic (key: the subject key `kind:id`, a
//! tombstone revokes), of the HTTP decision feed and of the manual-decision API. Other tools
//! read it, so it changes only by adding optional fields; readers ignore fields they do not
//! know. A breaking change would get a new version of this schema and a new topic.
//!
//! ```json
//! {"id":"0190f5e4-7c1a-7b3e-9c55-2b1f0d1e8a90",
//!  "subject":{"kind":"identity","id":"alice"},
//!  "action":"block","score":0.97,
//!  "reasons":["rule:credential_stuffing","model:abuse@3=0.93"],
//!  "origin":"rule",
//!  "issued_at":"2026-11-24T10:00:00Z","expires_at":"2026-11-24T10:15:00Z",
//!  "throttle_rps":2.5,"allow_list":false}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | string | UUID v7 (time-ordered) naming this decision; shown to denied clients |
//! | `subject.kind` | string | `identity`, `session`, `ip`, `api_key` or `device` |
//! | `subject.id` | string | the subject's id (`api_key`: the salted key hash, never the key) |
//! | `action` | string | `allow`, `monitor`, `step_up`, `throttle` or `block` |
//! | `score` | number | trust score in `[0, 1]` that led to the action (1 = most suspicious) |
//! | `reasons` | array of strings | why (`rule:<name>`, `model:<name>@<version>=<p>`, `manual:<who>`) |
//! | `origin` | string | what issued it: `rule`, `model`, `manual`, `policy` |
//! | `issued_at`, `expires_at` | RFC 3339 UTC | the decision applies in `[issued_at, expires_at)` |
//! | `throttle_rps` | number, optional | rate for `throttle`; absent: the proxy's default |
//! | `allow_list` | bool, optional | an allow-list entry: wins over every other decision |
//!
//! A newer decision (later `issued_at`) for the same subject replaces the older one.

use crate::error::EnforceError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What trust is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Identity,
    Session,
    Ip,
    ApiKey,
    Device,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 5] = [
        SubjectKind::Identity,
        SubjectKind::Session,
        SubjectKind::Ip,
        SubjectKind::ApiKey,
        SubjectKind::Device,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Identity => "identity",
            SubjectKind::Session => "session",
            SubjectKind::Ip => "ip",
            SubjectKind::ApiKey => "api_key",
            SubjectKind::Device => "device",
        }
    }
}

impl FromStr for SubjectKind {
    type Err = EnforceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| EnforceError::InvalidDecision(format!("unknown subject kind `{s}`")))
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subject: `(kind, id)`. Its key, `kind:id`, keys the decisions topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: String,
}

impl Subject {
    pub fn new(kind: SubjectKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// `kind:id`, e.g. `identity:alice`, `ip:203.0.113.7`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Reads a `kind:id` key (the id may itself contain `:`, as IPv6 addresses do).
    pub fn from_key(key: &str) -> Result<Self, EnforceError> {
        let (kind, id) = key
            .split_once(':')
            .ok_or_else(|| EnforceError::InvalidDecision(format!("`{key}` is not `kind:id`")))?;
        if id.is_empty() {
            return Err(EnforceError::InvalidDecision(format!(
                "`{key}` has an empty id"
            )));
        }
        Ok(Subject::new(kind.parse()?, id))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// What the enforcement point does. Ordered by strictness: `Allow < Monitor < StepUp <
/// Throttle < Block`; the strictest applicable decision wins, except that an allow-list entry
/// ([`Decision::allow_list`]) wins over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Monitor,
    StepUp,
    Throttle,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Monitor => "monitor",
            Action::StepUp => "step_up",
            Action::Throttle => "throttle",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time as microseconds since the Unix epoch (UTC); RFC 3339 text in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixMicros(pub i64);

impl UnixMicros {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        UnixMicros(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 in UTC (`2026-11-24T10:00:00Z`; fractional seconds only when non-zero).
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_microsecond(self.0) {
            Ok(t) => t.to_string(),
            Err(_) if self.0 < 0 => jiff::Timestamp::MIN.to_string(),
            Err(_) => jiff::Timestamp::MAX.to_string(),
        }
    }

    /// Reads RFC 3339 with any UTC offset (`Z`, `+02:00`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, EnforceError> {
        let t: jiff::Timestamp = s
            .parse()
            .map_err(|e| EnforceError::InvalidDecision(format!("`{s}` is not RFC 3339: {e}")))?;
        Ok(UnixMicros(t.as_microsecond()))
    }
}

impl From<SystemTime> for UnixMicros {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => UnixMicros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => UnixMicros(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }
}

impl Serialize for UnixMicros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for UnixMicros {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UnixMicros::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One decision; see the module docs for the JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub id: String,
    pub subject: Subject,
    pub action: Action,
    pub score: f64,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub origin: String,
    pub issued_at: UnixMicros,
    pub expires_at: UnixMicros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_list: bool,
}

impl Decision {
    /// A decision issued now with a fresh UUID v7 id, applying for `ttl`.
    pub fn new(
        subject: Subject,
        action: Action,
        score: f64,
        origin: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        let now = UnixMicros::now();
        Decision {
            id: uuid::Uuid::now_v7().to_string(),
            subject,
            action,
            score,
            reasons: Vec::new(),
            origin: origin.into(),
            issued_at: now,
            expires_at: now.plus(ttl),
            throttle_rps: None,
            allow_list: false,
        }
    }

    /// An allow-list entry for `subject` (action `allow`, score 0), for `ttl`.
    pub fn allow_list(subject: Subject, origin: impl Into<String>, ttl: Duration) -> Self {
        let mut d = Decision::new(subject, Action::Allow, 0.0, origin, ttl);
        d.allow_list = true;
        d
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }

    pub fn with_throttle_rps(mut self, rps: f64) -> Self {
        self.throttle_rps = Some(rps);
        self
    }

    /// Whether the decision applies at `now`.
    pub fn is_live(&self, now: UnixMicros) -> bool {
        self.issued_at <= now && now < self.expires_at
    }

    /// Checks what serde cannot: a non-empty id and subject id, a finite score, a positive
    /// throttle rate, an expiry after the issue time.
    pub fn validate(&self) -> Result<(), EnforceError> {
        let bad = |m: String| Err(EnforceError::InvalidDecision(m));
        if self.id.is_empty() || self.id.len() > 128 {
            return bad("id must be 1 to 128 bytes".into());
        }
        if self.subject.id.is_empty() {
            return bad("subject.id must not be empty".into());
        }
        if !self.score.is_finite() {
            return bad(format!("score {} is not finite", self.score));
        }
        if let Some(r) = self.throttle_rps
            && !(r.is_finite() && r > 0.0)
        {
            return bad(format!("throttle_rps {r} must be a positive number"));
        }
        if self.expires_at <= self.issued_at {
            return bad("expires_at must be after issued_at".into());
        }
        Ok(())
    }

    /// Reads and validates one record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnforceError> {
        let d: Decision = serde_json::from_slice(bytes)
            .map_err(|e| EnforceError::InvalidDecision(e.to_string()))?;
        d.validate()?;
        Ok(d)
    }

    pub fn to_json(&self) -> String {
        // A Decision holds only strings, numbers and bools: serializing cannot fail, but
        // non-finite scores would be written as `null`, which `validate` rejects on read.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"id":"0190f5e4-7c1a-7b3e-9c55-2b1f0d1e8a90","subject":{"kind":"identity","id":"alice"},"action":"block","score":0.97,"reasons":["rule:credential_stuffing","model:abuse@3=0.93"],"origin":"rule","issued_at":"2026-11-24T10:00:00Z","expires_at":"2026-11-24T10:15:00Z"}"#;

    #[test]
    fn design_record_round_trips_exactly() {
        let d = Decision::from_json(RECORD.as_bytes()).unwrap();
        assert_eq!(d.subject, Subject::new(SubjectKind::Identity, "alice"));
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.expires_at.0 - d.issued_at.0, 15 * 60 * 1_000_000);
        assert!(!d.allow_list);
        assert_eq!(d.to_json(), RECORD);
    }

    #[test]
    fn optional_fields_offsets_and_unknown_fields() {
        let j = r#"{"id":"x","subject":{"kind":"api_key","id":"ab12"},"action":"throttle","score":0.5,"origin":"manual","issued_at":"2026-11-24T11:00:00+01:00","expires_at":"2026-11-24T10:00:00.5Z","throttle_rps":2.5,"allow_list":true,"future_field":1}"#;
        let d = Decision::from_json(j.as_bytes()).unwrap();
        assert_eq!(d.throttle_rps, Some(2.5));
        assert!(d.allow_list);
        assert!(d.reasons.is_empty());
        assert_eq!(d.issued_at.to_rfc3339(), "2026-11-24T10:00:00Z");
        assert_eq!(d.expires_at.to_rfc3339(), "2026-11-24T10:00:00.5Z");
        let back = d.to_json();
        assert!(
            back.contains(r#""throttle_rps":2.5,"allow_list":true"#),
            "{back}"
        );
    }

    #[test]
    fn invalid_records_are_errors() {
        for bad in [
            RECORD.replace("0.97", "1e999"),
            RECORD.replace("10:15:00Z", "09:00:00Z"),
            RECORD.replace(r#""kind":"identity""#, r#""kind":"planet""#),
            RECORD.replace(r#""action":"block""#, r#""action":"nuke""#),
            RECORD.replace("2026-11-24T10:00:00Z", "yesterday"),
            "not json".to_string(),
        ] {
            assert!(Decision::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_order() {
        let s = Subject::from_key("ip:2001:db8::1").unwrap();
        assert_eq!(s.kind, SubjectKind::Ip);
        assert_eq!(s.id, "2001:db8::1");
        assert_eq!(s.key(), "ip:2001:db8::1");
        assert!(Subject::from_key("nokind").is_err());
        assert!(Subject::from_key("identity:").is_err());
        assert!(Action::Block > Action::Throttle);
        assert!(Action::Throttle > Action::StepUp);
        assert!(Action::StepUp > Action::Monitor);
        assert!(Action::Monitor > Action::Allow);
        let d = Decision::new(
            Subject::new(SubjectKind::Session, "s"),
            Action::Monitor,
            0.4,
            "rule",
            Duration::from_secs(60),
        );
        assert!(d.is_live(UnixMicros::now()));
        assert!(!d.is_live(d.expires_at));
        assert_eq!(uuid::Uuid::parse_str(&d.id).unwrap().get_version_num(), 7);
    }
}
