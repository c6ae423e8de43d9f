//! Rules: SQL expressions over the feature columns, compiled once with DataFusion and evaluated
//! vectorized on each batch of feature rows.
//!
//! A rules file (TOML) holds `[[rule]]` tables:
//!
//! ```toml
//! [[rule]]
//! id = "credential_stuffing"
//! kind = "ip"                      # identity | session | ip | api_key
//! when = "auth_failures_1m >= 8 AND distinct_identities_1m >= 5"
//! action = "block"                 # monitor | step_up | throttle | block
//! ttl_secs = 900
//! severity = "high"                # low | medium | high | critical
//! description = "many usernames tried from one address"
//! mode = "enforce"                 # or "monitor": record what would happen, enforce nothing
//! throttle_rps = 1.0               # for action = "throttle" (optional)
//! ```
//!
//! A rule that does not parse, names an unknown feature, or is not a boolean is rejected at
//! load with its id and DataFusion's message. [`ReloadableRules`] re-reads the file when it
//! changes and keeps the old rules when the new file is invalid.

use crate::ScoringError;
use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use vigil_enforce::{Action, SubjectKind};

/// The rules vigil ships with (`scoring/rules/default.toml`).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The rule's contribution to the trust score (1 = certainly hostile).
    pub fn score(self) -> f64 {
        match self {
            Self::Low => 0.3,
            Self::Medium => 0.55,
            Self::High => 0.8,
            Self::Critical => 0.95,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    #[default]
    Enforce,
    /// Shadow mode: the decision is recorded as `monitor`, with what it would have been.
    Monitor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub kind: SubjectKind,
    pub when: String,
    pub action: Action,
    pub ttl_secs: u64,
    pub severity: Severity,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub mode: RuleMode,
    #[serde(default)]
    pub throttle_rps: Option<f64>,
    /// The zero-trust pillar the rule guards; default: its subject kind's
    /// ([`crate::pillar::of_kind`]).
    #[serde(default)]
    pub pillar: Option<crate::pillar::Pillar>,
}

impl RuleSpec {
    /// The rule's pillar: its own, else its subject kind's.
    pub fn pillar(&self) -> crate::pillar::Pillar {
        self.pillar
            .unwrap_or_else(|| crate::pillar::of_kind(self.kind))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

pub struct CompiledRule {
    pub spec: RuleSpec,
    expr: Arc<dyn PhysicalExpr>,
}

impl std::fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRule")
            .field("id", &self.spec.id)
            .finish()
    }
}

/// A compiled set of rules for one feature schema.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
}

impl RuleSet {
    /// Parses a rules file's text (`origin` names it in errors) and compiles every rule.
    pub fn from_toml(text: &str, origin: &str, schema: &SchemaRef) -> Result<Self, ScoringError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| ScoringError::RulesFile {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        Self::compile(file.rules, schema)
    }

    pub fn compile(specs: Vec<RuleSpec>, schema: &SchemaRef) -> Result<Self, ScoringError> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let mut rules = Vec::with_capacity(specs.len());
        let mut ids = std::collections::HashSet::new();
        for spec in specs {
            let err = |message: String| ScoringError::Rule {
                rule: spec.id.clone(),
                message,
            };
            if spec.id.is_empty() || !ids.insert(spec.id.clone()) {
                return Err(err("rule ids must be present and unique".into()));
            }
            if spec.ttl_secs == 0 {
                return Err(err("ttl_secs must be at least 1".into()));
            }
            if spec.action == Action::Allow {
                return Err(err(
                    "a rule cannot allow; use the policy's allow-list".into()
                ));
            }
            if spec
                .throttle_rps
                .is_some_and(|r| !(r > 0.0 && r.is_finite()))
            {
                return Err(err("throttle_rps must be a positive number".into()));
            }
            let logical = ctx
                .parse_sql_expr(&spec.when, &df_schema)
                .map_err(|e| err(e.to_string()))?;
            let expr = ctx
                .create_physical_expr(logical, &df_schema)
                .map_err(|e| err(e.to_string()))?;
            let ty = expr
                .data_type(schema.as_ref())
                .map_err(|e| err(e.to_string()))?;
            if ty != DataType::Boolean {
                return Err(err(format!(
                    "`when` must be a condition, but it is of type {ty}"
                )));
            }
            rules.push(CompiledRule { spec, expr });
        }
        Ok(Self { rules })
    }

    /// For each rule of `kind`: its index and the rows of `batch` where it holds (null = no).
    pub fn evaluate(
        &self,
        kind: SubjectKind,
        batch: &RecordBatch,
    ) -> Result<Vec<(usize, BooleanArray)>, ScoringError> {
        let mut out = Vec::new();
        for (i, r) in self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.spec.kind == kind)
        {
            let mask = match r.expr.evaluate(batch)? {
                ColumnarValue::Array(a) => a
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .ok_or_else(|| {
                        ScoringError::Schema(format!("rule {} gave no booleans", r.spec.id))
                    })?,
                ColumnarValue::Scalar(s) => {
                    let v = matches!(s, datafusion::scalar::ScalarValue::Boolean(Some(true)));
                    BooleanArray::from(vec![v; batch.num_rows()])
                }
            };
            if mask.true_count() > 0 {
                out.push((i, mask));
            }
        }
        Ok(out)
    }
}

/// Rules from a file, re-read when the file changes (checked at most every `check_every`).
pub struct ReloadableRules {
    path: Option<PathBuf>,
    schema: SchemaRef,
    current: RwLock<Arc<RuleSet>>,
    state: std::sync::Mutex<(Instant, Option<SystemTime>)>,
    check_every: Duration,
}

impl ReloadableRules {
    /// Loads `path`, or the built-in default rules when `None`.
    pub fn load(path: Option<&Path>, schema: SchemaRef) -> Result<Self, ScoringError> {
        let (set, mtime) = match path {
            Some(p) => (read(p, &schema)?, mtime(p)),
            None => (
                RuleSet::from_toml(DEFAULT_RULES, "built-in default rules", &schema)?,
                None,
            ),
        };
        Ok(Self {
            path: path.map(Path::to_path_buf),
            schema,
            current: RwLock::new(Arc::new(set)),
            state: std::sync::Mutex::new((Instant::now(), mtime)),
            check_every: Duration::from_secs(2),
        })
    }

    /// A set that never reloads (backtests, tests).
    pub fn fixed(set: RuleSet, schema: SchemaRef) -> Self {
        Self {
            path: None,
            schema,
            current: RwLock::new(Arc::new(set)),
            state: std::sync::Mutex::new((Instant::now(), None)),
            check_every: Duration::from_secs(2),
        }
    }

    /// The rules file, when the rules come from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the file now. On error the old rules stay and the error is returned.
    pub fn reload(&self) -> Result<usize, ScoringError> {
        let Some(p) = &self.path else {
            return Ok(self.current().rules.len());
        };
        let set = read(p, &self.schema)?;
        let n = set.rules.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(n)
    }

    /// Reloads when the file's modification time changed; cheap to call on every batch.
    pub fn maybe_reload(&self) {
        let Some(p) = &self.path else { return };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0.elapsed() < self.check_every {
            return;
        }
        st.0 = Instant::now();
        let m = mtime(p);
        if m == st.1 {
            return;
        }
        st.1 = m;
        match self.reload() {
            Ok(n) => tracing::info!(path = %p.display(), rules = n, "rules reloaded"),
            Err(error) => tracing::error!(%error, "rules file invalid; keeping the previous rules"),
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn read(p: &Path, schema: &SchemaRef) -> Result<RuleSet, ScoringError> {
    let text = std::fs::read_to_string(p).map_err(|e| ScoringError::RulesFile {
        path: p.display().to_string(),
        message: e.to_string(),
    })?;
    RuleSet::from_toml(&text, &p.display().to_string(), schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureConfig, Windows, features_schema};

    fn schema() -> SchemaRef {
        features_schema(&Windows::new(&FeatureConfig::default()))
    }

    fn rule(id: &str, when: &str) -> String {
        format!(
            "[[rule]]\nid = \"{id}\"\nkind = \"ip\"\nwhen = \"{when}\"\naction = \"block\"\nttl_secs = 60\nseverity = \"high\"\n"
        )
    }

    #[test]
    fn default_rules_compile() {
        let set = RuleSet::from_toml(DEFAULT_RULES, "default", &schema()).unwrap();
        assert!(set.rules.len() >= 8);
    }

    #[test]
    fn broken_rules_are_rejected_with_their_id() {
        let e =
            RuleSet::from_toml(&rule("typo", "auth_failurez_1m > 3"), "f", &schema()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("rule `typo`:") && m.contains("auth_failurez_1m"),
            "{m}"
        );
        let e =
            RuleSet::from_toml(&rule("syntax", "auth_failures_1m >"), "f", &schema()).unwrap_err();
        assert!(e.to_string().starts_with("rule `syntax`:"), "{e}");
        let e =
            RuleSet::from_toml(&rule("num", "auth_failures_1m + 1"), "f", &schema()).unwrap_err();
        assert!(e.to_string().contains("must be a condition"), "{e}");
        let two = format!("{}{}", rule("a", "rate_1m > 1"), rule("a", "rate_1m > 2"));
        assert!(
            RuleSet::from_toml(&two, "f", &schema())
                .unwrap_err()
                .to_string()
                .contains("unique")
        );
        let e = RuleSet::from_toml("[[rule]]\nid = 1\n", "rules.toml", &schema()).unwrap_err();
        assert!(e.to_string().starts_with("rules file rules.toml"), "{e}");
    }

    #[test]
    fn reload_keeps_old_rules_when_the_new_file_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, rule("one", "rate_1m > 1")).unwrap();
        let r = ReloadableRules::load(Some(&path), schema()).unwrap();
        assert_eq!(r.current().rules.len(), 1);
        std::fs::write(
            &path,
            format!(
                "{}{}",
                rule("one", "rate_1m > 1"),
                rule("two", "rate_1m > 2")
            ),
        )
        .unwrap();
        assert_eq!(r.reload().unwrap(), 2);
        std::fs::write(&path, rule("bad", "nope >")).unwrap();
        assert!(r.reload().is_err());
        assert_eq!(r.current().rules.len(), 2, "the previous rules stay");
    }
}
