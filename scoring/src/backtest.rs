//! Rule backtests: which subjects a rule would have hit over past events, and when.
//!
//! The events are fed in time order to a scorer that computes features only (no rules, no
//! models, no policy effects), exactly as live scoring computes them; the rule under test is
//! evaluated on every feature row of its kind. A hit is a feature row where the rule holds;
//! the report gives, per subject, the first and last hit and how many evaluations hit.

use crate::rules::{RuleSet, RuleSpec};
use crate::scorer::column;
use crate::{Scorer, ScoringConfig, ScoringError};
use arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use serde::Serialize;
use std::collections::HashMap;
use vigil_enforce::{SubjectKind, UnixMicros};

/// One subject the rule would have hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestHit {
    pub kind: SubjectKind,
    pub subject: String,
    pub first_hit: UnixMicros,
    pub last_hit: UnixMicros,
    /// Evaluations of the subject where the rule held.
    pub hits: u64,
}

/// What a backtest found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub rule: String,
    pub kind: SubjectKind,
    pub events: u64,
    /// Feature rows of the rule's kind evaluated.
    pub evaluations: u64,
    /// Subjects hit, by first hit.
    pub subjects: Vec<BacktestHit>,
}

pub struct Backtest {
    scorer: Scorer,
    rule: RuleSet,
    kind: SubjectKind,
    id: String,
    events: u64,
    evaluations: u64,
    hits: HashMap<String, (i64, i64, u64)>,
}

impl Backtest {
    /// Compiles `rule` against the feature schema of `cfg` (errors name the rule).
    pub fn new(cfg: &ScoringConfig, rule: RuleSpec) -> Result<Self, ScoringError> {
        let scorer = Scorer::features_only(cfg)?;
        let kind = rule.kind;
        let id = rule.id.clone();
        let rule = RuleSet::compile(vec![rule], scorer.features_schema())?;
        Ok(Self {
            scorer,
            rule,
            kind,
            id,
            events: 0,
            evaluations: 0,
            hits: HashMap::new(),
        })
    }

    /// Feeds one batch of events (the `events` schema), in time order.
    pub fn feed(&mut self, events: &RecordBatch) -> Result<(), ScoringError> {
        self.events += events.num_rows() as u64;
        let out = self.scorer.score_batch(events)?;
        for batch in &out.features {
            let Some(kinds) = batch
                .column_by_name("kind")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            else {
                continue;
            };
            if kinds.is_empty() || kinds.value(0) != self.kind.as_str() {
                continue;
            }
            self.evaluations += batch.num_rows() as u64;
            let subjects = column::<StringArray>(batch, "subject")?;
            let ts = column::<TimestampMicrosecondArray>(batch, "timestamp")?;
            for (_, mask) in self.rule.evaluate(self.kind, batch)? {
                for row in 0..batch.num_rows() {
                    if !(mask.is_valid(row) && mask.value(row)) {
                        continue;
                    }
                    let t = ts.value(row);
                    let e = self
                        .hits
                        .entry(subjects.value(row).to_string())
                        .or_insert((t, t, 0));
                    e.0 = e.0.min(t);
                    e.1 = e.1.max(t);
                    e.2 += 1;
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> BacktestReport {
        let mut subjects: Vec<BacktestHit> = self
            .hits
            .into_iter()
            .map(|(subject, (first, last, hits))| BacktestHit {
                kind: self.kind,
                subject,
                first_hit: UnixMicros(first),
                last_hit: UnixMicros(last),
                hits,
            })
            .collect();
        subjects.sort_by(|a, b| {
            a.first_hit
                .cmp(&b.first_hit)
                .then_with(|| a.subject.cmp(&b.subject))
        });
        BacktestReport {
            rule: self.id,
            kind: self.kind,
            events: self.events,
            evaluations: self.evaluations,
            subjects,
        }
    }
}
