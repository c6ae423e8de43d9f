//! Zero-trust pillars: every feature, rule and decision reason belongs to one, so a security
//! team sees where its posture is weak (CISA's zero trust maturity model names identity,
//! devices, networks, applications and workloads, and data).
//!
//! - a rule's pillar is its `pillar` key, else its subject kind's ([`of_kind`]);
//! - a feature's follows from what it measures ([`of_feature`]);
//! - a decision reason's from its rule or feature; attack evidence is the application
//!   workload's. The `pillars` SQL view (see `catalogue_tables`) puts one row per decision
//!   and pillar.

use crate::rules::RuleSet;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_enforce::SubjectKind;

/// A zero-trust pillar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pillar {
    /// Who: accounts, sessions, API keys, logins and step-ups.
    Identity,
    /// With what: the client software and its fingerprints.
    Device,
    /// From where: addresses, their spread and reputation.
    Network,
    /// Against what: the API's routes, objects and request content.
    ApplicationWorkload,
    /// Taking what: volumes of data leaving.
    Data,
}

impl Pillar {
    pub const ALL: [Pillar; 5] = [
        Pillar::Identity,
        Pillar::Device,
        Pillar::Network,
        Pillar::ApplicationWorkload,
        Pillar::Data,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pillar::Identity => "identity",
            Pillar::Device => "device",
            Pillar::Network => "network",
            Pillar::ApplicationWorkload => "application_workload",
            Pillar::Data => "data",
        }
    }
}

/// The pillar of a rule on subjects of `kind` that does not name its own.
pub fn of_kind(kind: SubjectKind) -> Pillar {
    match kind {
        SubjectKind::Identity | SubjectKind::Session | SubjectKind::ApiKey => Pillar::Identity,
        SubjectKind::Ip => Pillar::Network,
        SubjectKind::Device => Pillar::Device,
    }
}

/// The pillar of a feature (a name of the catalogue, with its window suffix).
pub fn of_feature(name: &str) -> Pillar {
    const IDENTITY: &[&str] = &[
        "auth_failure",
        "unauthenticated_ratio",
        "distinct_identities",
        "new_ip",
        "new_user_agent",
        "new_device",
        "challenges",
        "stepped_up",
    ];
    const DEVICE: &[&str] = &[
        "ua_mismatch",
        "distinct_user_agents",
        "distinct_sessions",
        "interval_cv",
    ];
    const NETWORK: &[&str] = &["distinct_ips", "reputation"];
    const DATA: &[&str] = &["bytes_out"];
    let has = |list: &[&str]| list.iter().any(|p| name.starts_with(p));
    if has(IDENTITY) {
        Pillar::Identity
    } else if has(DEVICE) {
        Pillar::Device
    } else if has(NETWORK) {
        Pillar::Network
    } else if has(DATA) {
        Pillar::Data
    } else {
        // requests, rates, statuses, routes, paths, sensitive hits, enumeration, evidence
        Pillar::ApplicationWorkload
    }
}

fn batch(columns: Vec<(&str, Vec<String>)>) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|(_, v)| Arc::new(StringArray::from(v)) as ArrayRef)
        .collect();
    // the schema is built from the same columns just above
    RecordBatch::try_new(schema, arrays).expect("catalogue columns match their schema")
}

/// The `rules` table: `id`, `kind`, `pillar`, `action`, `severity`, `mode`, `when`,
/// `description` of each rule loaded.
pub fn rules_table(rules: &RuleSet) -> RecordBatch {
    let specs: Vec<_> = rules.rules.iter().map(|r| &r.spec).collect();
    let col = |f: &dyn Fn(&crate::rules::RuleSpec) -> String| specs.iter().map(|s| f(s)).collect();
    let lower = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    batch(vec![
        ("id", col(&|s| s.id.clone())),
        ("kind", col(&|s| s.kind.as_str().to_string())),
        ("pillar", col(&|s| s.pillar().as_str().to_string())),
        ("action", col(&|s| s.action.as_str().to_string())),
        ("severity", col(&|s| lower(&s.severity))),
        ("mode", col(&|s| lower(&s.mode))),
        ("when", col(&|s| s.when.clone())),
        ("description", col(&|s| s.description.clone())),
    ])
}

/// The `features` table: `name` and `pillar` of each feature column.
pub fn features_table(names: &[String]) -> RecordBatch {
    batch(vec![
        ("name", names.to_vec()),
        (
            "pillar",
            names
                .iter()
                .map(|n| of_feature(n).as_str().to_string())
                .collect(),
        ),
    ])
}

/// The `pillars` view: one row per issued decision and reason that names a pillar — `kind`,
/// `subject`, `action`, `issued_at`, `reason`, `pillar` — from the `decisions`, `rules` and
/// `features` tables. `SELECT pillar, count(DISTINCT kind || ':' || subject) FROM pillars
/// GROUP BY pillar` is where trust is lost, overall.
pub const PILLARS_VIEW: &str = "CREATE VIEW pillars AS \
    SELECT d.kind, d.subject, d.action, d.issued_at, d.reason, \
      CASE \
        WHEN d.reason LIKE 'rule:%' THEN r.pillar \
        WHEN d.reason LIKE 'feature:%' THEN f.pillar \
        WHEN d.reason LIKE 'evidence:%' THEN 'application_workload' \
        WHEN d.reason LIKE 'reputation:%' THEN 'network' \
      END AS pillar \
    FROM (SELECT kind, subject, action, issued_at, unnest(reasons) AS reason \
          FROM decisions WHERE change = 'issue') d \
    LEFT JOIN rules r ON d.reason = concat('rule:', r.id) \
    LEFT JOIN features f \
      ON split_part(split_part(d.reason, '=', 1), ':', 3) = f.name \
         AND d.reason LIKE 'feature:%' \
    WHERE d.reason LIKE 'rule:%' OR d.reason LIKE 'feature:%' OR d.reason LIKE 'evidence:%' \
       OR d.reason LIKE 'reputation:%'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_kinds_have_their_pillars() {
        assert_eq!(of_feature("auth_failures_1m"), Pillar::Identity);
        assert_eq!(of_feature("distinct_ips_10m"), Pillar::Network);
        assert_eq!(of_feature("ua_mismatch_10m"), Pillar::Device);
        assert_eq!(of_feature("bytes_out_1h"), Pillar::Data);
        assert_eq!(
            of_feature("strong_evidence_10m"),
            Pillar::ApplicationWorkload
        );
        assert_eq!(of_feature("id_enumeration"), Pillar::ApplicationWorkload);
        assert_eq!(of_kind(SubjectKind::Device), Pillar::Device);
        assert_eq!(of_kind(SubjectKind::Ip), Pillar::Network);
    }
}
