//! The scorer: events in, decisions (and the feature and score rows behind them) out.
//!
//! For each event, every subject it names is updated ([`FeatureStore::observe`]). A subject is
//! evaluated — its feature row computed and the rules of its kind run on it — at most once per
//! `eval_interval_secs` of its own event time while it is active, and at the end of each batch,
//! so a burst inside a batch is seen when it happens, not when the batch ends. Rules run
//! vectorized over all the rows of a kind at once, and so do the models: one batched inference
//! per model and kind per call of [`Scorer::score_batch`], never one per event.

use crate::ScoringError;
use crate::features::{
    Event, FeatureBatchBuilder, FeatureConfig, FeatureStore, KINDS, Observation, features_schema,
    is_sensitive, ua_mismatch,
};
use crate::model::{ModelMode, ModelSet, ModelsConfig};
use crate::policy::{ModelSignal, Policy, PolicyConfig, trust_score};
use crate::rules::{ReloadableRules, RuleSet};
use arrow::array::{
    Array, BooleanArray, Float64Builder, ListArray, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder, UInt16Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use vigil_detect::AttackClass;
use vigil_enforce::{Decision, SubjectKind};
use vigil_ingest::event::col;

/// `[scoring]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Rules file (TOML); the built-in default rules when unset. Reloaded when it changes.
    pub rules_path: Option<PathBuf>,
    /// A subject is re-evaluated at most this often while active (event time). Default 5.
    pub eval_interval_secs: u64,
    pub features: FeatureConfig,
    pub policy: PolicyConfig,
    /// ONNX models (`[scoring.models]`): the built-in ones by default.
    pub models: ModelsConfig,
    /// IP reputation lists (`[[scoring.reputation]]`): a feature, a reason, a weight in the
    /// trust score and, when configured, an action.
    pub reputation: Vec<crate::reputation::ReputationSource>,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            rules_path: None,
            eval_interval_secs: 5,
            features: FeatureConfig::default(),
            policy: PolicyConfig::default(),
            models: ModelsConfig::default(),
            reputation: Vec::new(),
        }
    }
}

/// What model `m` says with `score`, for the policy.
fn signal(m: &crate::model::Model, score: f64) -> ModelSignal<'_> {
    ModelSignal {
        name: m.name(),
        version: m.version(),
        score,
        weight: m.weight,
        action: m.thresholds.action(score),
        enforce: m.mode == ModelMode::Enforce,
        ttl_secs: m.ttl_secs,
    }
}

/// A subject's current trust ([`Scorer::assess`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// Event time of the subject's latest event (µs since the epoch).
    pub last_seen_us: i64,
    /// Event time the features were computed at: the newest event seen (µs).
    pub at_us: i64,
    /// Trust score in `[0, 1]` (1 = most suspicious), as the policy computes it.
    pub score: f64,
    /// Rules that hold on the features now.
    pub rules: Vec<String>,
    /// Every model's score: (`name@version`, score).
    pub models: Vec<(String, f64)>,
    /// The features, in catalogue order.
    pub features: Vec<(String, Option<f64>)>,
}

/// What one batch of events produced.
#[derive(Debug, Default)]
pub struct ScoringOutput {
    /// One row per evaluation: kind, subject, timestamp and the features.
    pub features: Vec<RecordBatch>,
    /// The `scores` rows (rows where a rule fired or a model reached a threshold): kind,
    /// subject, timestamp, trust score, rules fired, model scores.
    pub scores: Option<RecordBatch>,
    pub decisions: Vec<Decision>,
}

struct Columns<'a> {
    ts: &'a TimestampMicrosecondArray,
    status: &'a UInt16Array,
    bytes_out: &'a UInt64Array,
    route: &'a StringArray,
    path: &'a StringArray,
    ip: &'a StringArray,
    identity: &'a StringArray,
    session: &'a StringArray,
    api_key: &'a StringArray,
    agent: &'a StringArray,
    enforced: &'a StringArray,
    attack_classes: &'a ListArray,
    evidence: &'a StringArray,
    evidence_strong: &'a BooleanArray,
    device: &'a StringArray,
    tls_fingerprint: &'a StringArray,
    http_fingerprint: &'a StringArray,
}

impl<'a> Columns<'a> {
    /// The id of row `i`'s subject of kind `k` (an index into [`KINDS`]), when it has one.
    fn subject(&self, k: u8, i: usize) -> Option<&'a str> {
        let column = match k {
            0 => self.identity,
            1 => self.session,
            2 => self.ip,
            3 => self.api_key,
            _ => self.device,
        };
        text(column, i)
    }
}

/// The attack classes of row `i` of an `attack_classes` column as a bit set (bit `n`: the
/// `n`-th of [`AttackClass::ALL`]).
fn class_mask(list: &ListArray, i: usize) -> u16 {
    if list.is_null(i) {
        return 0;
    }
    let offsets = list.value_offsets();
    let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
    if a == b {
        return 0;
    }
    let Some(values) = list.values().as_any().downcast_ref::<StringArray>() else {
        return 0;
    };
    (a..b)
        .filter_map(|j| AttackClass::from_name(values.value(j)))
        .fold(0, |m, c| m | (1 << (c as u16)))
}

/// The columns of the events table that scoring reads (each event's features, rules,
/// models and decisions come from these alone). A reader that only feeds the scorer builds
/// just these (`EventBatchBuilder::with_columns`, as `vigil replay` does when it writes no
/// events); a batch of more columns is read the same.
pub const EVENT_COLUMNS: &[&str] = &[
    col::TIMESTAMP,
    col::STATUS,
    col::BYTES_OUT,
    col::ROUTE,
    col::PATH,
    col::CLIENT_IP,
    col::IDENTITY,
    col::SESSION,
    col::API_KEY_ID,
    col::USER_AGENT,
    col::ENFORCED,
    col::ATTACK_CLASSES,
    col::EVIDENCE,
    col::EVIDENCE_STRONG,
    col::DEVICE,
    col::TLS_FINGERPRINT,
    col::HTTP_FINGERPRINT,
];

pub(crate) fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, ScoringError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            ScoringError::Schema(format!("column `{name}` missing or of the wrong type"))
        })
}

fn text(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// Schema of the `scores` table.
pub fn scores_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("score", DataType::Float64, false),
        Field::new("rules", DataType::Utf8, true),
        // Every model's score on the row: `name@version=score`, comma-separated.
        Field::new("models", DataType::Utf8, true),
    ]))
}

pub struct Scorer {
    store: FeatureStore,
    rules: ReloadableRules,
    policy: Policy,
    models: ModelSet,
    /// Per model: the input rows of the kind being decided, and their scores.
    model_rows: Vec<Vec<f32>>,
    model_scores: Vec<Vec<f32>>,
    schema: SchemaRef,
    eval_interval_us: i64,
    values: Vec<Option<f64>>,
    /// The latest attack evidence in words per (kind index, subject) of the batch being
    /// scored, for the reasons of decisions it leads to.
    evidence: HashMap<(u8, String), String>,
    /// Subjects touched in the batch being scored and not evaluated at their latest event,
    /// with that event's time and row (whose column holds the subject's id); kept between
    /// batches for its capacity.
    pending: HashMap<(u8, u64), (i64, usize), BuildHasherDefault<KeyHasher>>,
    /// The feature rows of the batch being scored, one builder per kind; kept between
    /// batches for their buffers.
    builders: Vec<FeatureBatchBuilder>,
    reputation: crate::reputation::Reputations,
    pub events_scored: u64,
}

/// Hashes a `(kind, key)` pair whose key is already a seeded 64-bit hash of the subject's id
/// ([`FeatureStore::observe`]): mixing the kind in is all there is left to do.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.0 ^= u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Scorer {
    pub fn new(cfg: &ScoringConfig) -> Result<Self, ScoringError> {
        if cfg.eval_interval_secs == 0 {
            return Err(ScoringError::config(
                "scoring.eval_interval_secs",
                "must be at least 1",
            ));
        }
        let store = FeatureStore::new(cfg.features.clone())?;
        let schema = features_schema(store.windows());
        let rules = ReloadableRules::load(cfg.rules_path.as_deref(), schema.clone())?;
        let models = ModelSet::load(&cfg.models, &schema)?;
        let builders = KINDS
            .iter()
            .map(|_| FeatureBatchBuilder::new(schema.clone()))
            .collect();
        Ok(Self {
            store,
            rules,
            policy: Policy::new(cfg.policy.clone())?,
            model_rows: vec![Vec::new(); models.models.len()],
            model_scores: vec![Vec::new(); models.models.len()],
            models,
            schema,
            eval_interval_us: cfg.eval_interval_secs as i64 * 1_000_000,
            values: Vec::new(),
            evidence: HashMap::new(),
            pending: HashMap::default(),
            builders,
            reputation: crate::reputation::Reputations::load(&cfg.reputation)?,
            events_scored: 0,
        })
    }

    pub fn features_schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn store(&self) -> &FeatureStore {
        &self.store
    }

    pub fn rules(&self) -> &ReloadableRules {
        &self.rules
    }

    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// The downloaders of the `url` reputation lists: what they download, this scorer uses
    /// from its next batch on. The engine runs them ([`crate::reputation::Feed::run`]).
    pub fn reputation_feeds(&self) -> crate::reputation::Feeds {
        self.reputation.feeds()
    }

    /// A scorer that computes features only: no rules, no models (backtests).
    pub fn features_only(cfg: &ScoringConfig) -> Result<Self, ScoringError> {
        let mut cfg = cfg.clone();
        cfg.models.enabled = false;
        let mut s = Self::new(&cfg)?;
        s.rules = ReloadableRules::fixed(RuleSet::default(), s.schema.clone());
        Ok(s)
    }

    /// The current trust of subject `(kind, id)`: its features at the latest event time seen,
    /// the rules that hold on them, every model's score and the trust score; `None` when the
    /// subject is not tracked. Changes nothing a later evaluation would see.
    pub fn assess(
        &mut self,
        kind: SubjectKind,
        id: &str,
    ) -> Result<Option<Assessment>, ScoringError> {
        let Some(state) = self.store.find(kind, id) else {
            return Ok(None);
        };
        let mut values = Vec::new();
        let t = self.store.watermark_us().max(state.last_seen_us());
        let last_seen_us = state.last_seen_us();
        self.store.features(kind, &state, t, &mut values);
        if kind == SubjectKind::Ip
            && let Some(last) = values.last_mut()
        {
            *last = self.reputation.feature(id);
        }
        let mut b = FeatureBatchBuilder::new(self.schema.clone());
        b.push(kind, id, t, &values);
        let batch = b.finish();
        let rules = self.rules.current();
        let fired: Vec<&crate::rules::CompiledRule> = rules
            .evaluate(kind, &batch)?
            .into_iter()
            .filter(|(_, mask)| mask.is_valid(0) && mask.value(0))
            .map(|(i, _)| &rules.rules[i])
            .collect();
        self.run_models(kind, &batch)?;
        let mut models = Vec::new();
        let mut signals = Vec::new();
        for (m, scores) in self.models.models.iter().zip(&self.model_scores) {
            let Some(score) = scores.first() else {
                continue;
            };
            let score = f64::from(*score);
            models.push((format!("{}@{}", m.name(), m.version()), score));
            signals.push(signal(m, score));
        }
        let lists = if kind == SubjectKind::Ip {
            self.reputation.matches(id)
        } else {
            Vec::new()
        };
        // the first three columns are kind, subject and timestamp
        let names = self
            .schema
            .fields()
            .iter()
            .skip(3)
            .map(|f| f.name().clone());
        Ok(Some(Assessment {
            last_seen_us,
            at_us: t,
            score: trust_score(&fired, &signals, &lists),
            rules: fired.iter().map(|r| r.spec.id.clone()).collect(),
            models,
            features: names.zip(values).collect(),
        }))
    }

    /// Scores one batch of events (the `events` schema).
    pub fn score_batch(&mut self, events: &RecordBatch) -> Result<ScoringOutput, ScoringError> {
        self.score_partitioned(events, None, false)
    }

    /// Scores events that reach this scorer once per subject (the scale-out `score` role,
    /// where `vigil.events` carries an event once for each of its subjects, keyed by it):
    /// `kinds[i]` is the subject kind row `i` stands for (its position in [`KINDS`]), and only
    /// that subject's state is updated from the row (the others' owners see their own copies).
    /// `in_order`: each subject's events come in order (one Kafka partition holds all of a
    /// subject's), so no event is refused as late against the watermark, which the other
    /// partitions' events drive: a partition read behind the others (a backlog, a takeover's
    /// replay) is still counted, older events weighing less in the decayed windows.
    pub fn score_partitioned(
        &mut self,
        events: &RecordBatch,
        kinds: Option<&[u8]>,
        in_order: bool,
    ) -> Result<ScoringOutput, ScoringError> {
        self.score_rows(events, kinds, in_order, true)
    }

    /// Rebuilds subject state from events read again (a scale-out takeover's replay): the
    /// features as [`Scorer::score_partitioned`] with `in_order` keeps them, but no rule, model
    /// or policy runs, so the policy's memory stays what was actually published.
    pub fn rebuild(&mut self, events: &RecordBatch, kinds: &[u8]) -> Result<(), ScoringError> {
        self.score_rows(events, Some(kinds), true, false).map(drop)
    }

    fn score_rows(
        &mut self,
        events: &RecordBatch,
        kinds: Option<&[u8]>,
        in_order: bool,
        decide: bool,
    ) -> Result<ScoringOutput, ScoringError> {
        if let Some(k) = kinds
            && k.len() != events.num_rows()
        {
            return Err(ScoringError::Schema(format!(
                "{} subject kinds for {} events",
                k.len(),
                events.num_rows()
            )));
        }
        self.rules.maybe_reload();
        self.reputation.maybe_reload();
        // every column read here is in EVENT_COLUMNS
        let c = Columns {
            ts: column(events, col::TIMESTAMP)?,
            status: column(events, col::STATUS)?,
            bytes_out: column(events, col::BYTES_OUT)?,
            route: column(events, col::ROUTE)?,
            path: column(events, col::PATH)?,
            ip: column(events, col::CLIENT_IP)?,
            identity: column(events, col::IDENTITY)?,
            session: column(events, col::SESSION)?,
            api_key: column(events, col::API_KEY_ID)?,
            agent: column(events, col::USER_AGENT)?,
            enforced: column(events, col::ENFORCED)?,
            attack_classes: column(events, col::ATTACK_CLASSES)?,
            evidence: column(events, col::EVIDENCE)?,
            evidence_strong: column(events, col::EVIDENCE_STRONG)?,
            device: column(events, col::DEVICE)?,
            tls_fingerprint: column(events, col::TLS_FINGERPRINT)?,
            http_fingerprint: column(events, col::HTTP_FINGERPRINT)?,
        };
        self.evidence.clear();
        let mut builders = std::mem::take(&mut self.builders);
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        for i in 0..events.num_rows() {
            let t = c.ts.value(i);
            if in_order {
                self.store.advance(t);
            } else if !self.store.admit(t) {
                continue;
            }
            self.events_scored += 1;
            let path = text(c.path, i);
            let enforced = text(c.enforced, i);
            // The enforcement point's own refusals say what vigil decided, not how the API
            // answered: they are requests, not 4xx or failed logins (else a shared subject,
            // a popular device, would collect the refusals of every attacker sharing it).
            let refused = matches!(enforced, Some("block" | "step_up"))
                || (enforced == Some("throttle") && c.status.value(i) == 429);
            let o = Observation {
                t_us: t,
                status: if refused { 0 } else { c.status.value(i) },
                bytes_out: if c.bytes_out.is_valid(i) {
                    c.bytes_out.value(i)
                } else {
                    0
                },
                route: text(c.route, i),
                path,
                ip: text(c.ip, i),
                identity: text(c.identity, i),
                session: text(c.session, i),
                user_agent: text(c.agent, i),
                sensitive: path.is_some_and(is_sensitive),
                unauthenticated: c.identity.is_null(i) && c.api_key.is_null(i),
                challenged: enforced == Some("step_up"),
                stepped_up: enforced == Some("stepped_up"),
                attack_classes: class_mask(c.attack_classes, i),
                evidence_strong: c.evidence_strong.is_valid(i) && c.evidence_strong.value(i),
                device: text(c.device, i),
                ua_mismatch: ua_mismatch(
                    text(c.agent, i),
                    text(c.tls_fingerprint, i),
                    text(c.http_fingerprint, i),
                ),
            };
            let evidence = text(c.evidence, i);
            let event = Event::of(&o);
            let only = kinds.map(|k| k[i]);
            for k in 0..KINDS.len() as u8 {
                let Some(id) = c.subject(k, i) else { continue };
                if only.is_some_and(|o| o != k) {
                    continue;
                }
                let kind = KINDS[usize::from(k)];
                if let Some(e) = evidence {
                    self.evidence.insert((k, id.to_string()), e.to_string());
                }
                let (key, evaluated) = self.store.observe_event(kind, id, &event);
                let due = evaluated.is_none_or(|last| t - last >= self.eval_interval_us);
                if due {
                    self.evaluate_into(&mut builders[usize::from(k)], kind, key, id, t);
                    pending.remove(&(k, key));
                } else {
                    pending.insert((k, key), (t, i));
                }
            }
        }
        for (&(k, key), &(t, row)) in &pending {
            if let Some(id) = c.subject(k, row) {
                let kind = KINDS[usize::from(k)];
                self.evaluate_into(&mut builders[usize::from(k)], kind, key, id, t);
            }
        }
        self.pending = pending;
        self.store.maintain();
        let out = if decide {
            self.decide(&mut builders)
        } else {
            Ok(ScoringOutput::default())
        };
        // rows left by a rebuild, or by a batch whose decisions failed part way, are not the
        // next batch's
        for b in builders.iter_mut().filter(|b| !b.is_empty()) {
            drop(b.finish());
        }
        self.builders = builders;
        out
    }

    fn evaluate_into(
        &mut self,
        b: &mut FeatureBatchBuilder,
        kind: SubjectKind,
        key: u64,
        id: &str,
        t: i64,
    ) {
        if self.store.evaluate(kind, key, t, &mut self.values) {
            if kind == SubjectKind::Ip
                && let Some(last) = self.values.last_mut()
            {
                *last = self.reputation.feature(id);
            }
            b.push(kind, id, t, &self.values);
        }
    }

    /// Runs every model that scores `kind` over the kind's feature rows, leaving the inputs in
    /// `model_rows` and the scores in `model_scores` (empty for models that skip the kind).
    fn run_models(&mut self, kind: SubjectKind, batch: &RecordBatch) -> Result<(), ScoringError> {
        let models = &self.models.models;
        for (i, m) in models.iter().enumerate() {
            let (done, rest) = self.model_rows.split_at_mut(i);
            let rows = &mut rest[0];
            let scores = &mut self.model_scores[i];
            rows.clear();
            scores.clear();
            if !m.scores_kind(kind) {
                continue;
            }
            // The built-in models read the same inputs: gather them once.
            let twin = (0..i).find(|&j| models[j].scores_kind(kind) && models[j].same_inputs(m));
            match twin {
                Some(j) => rows.extend_from_slice(&done[j]),
                None => m.gather(kind, batch, rows)?,
            }
            m.predict(rows, scores)?;
        }
        Ok(())
    }

    fn decide(
        &mut self,
        builders: &mut [FeatureBatchBuilder],
    ) -> Result<ScoringOutput, ScoringError> {
        let rules = self.rules.current();
        let mut out = ScoringOutput::default();
        let mut s_kind = StringBuilder::new();
        let mut s_subject = StringBuilder::new();
        let mut s_ts = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
        let mut s_score = Float64Builder::new();
        let mut s_rules = StringBuilder::new();
        let mut s_models = StringBuilder::new();
        for (ki, b) in builders.iter_mut().enumerate() {
            let batch = b.finish();
            if batch.num_rows() == 0 {
                continue;
            }
            let kind = KINDS[ki];
            let fired = rules.evaluate(kind, &batch)?;
            self.run_models(kind, &batch)?;
            let mut signals: Vec<ModelSignal<'_>> = Vec::with_capacity(self.models.models.len());
            let subjects: &StringArray = column(&batch, "subject")?;
            let ts: &TimestampMicrosecondArray = column(&batch, "timestamp")?;
            for row in 0..batch.num_rows() {
                let hits: Vec<&crate::rules::CompiledRule> = fired
                    .iter()
                    .filter(|(_, mask)| mask.is_valid(row) && mask.value(row))
                    .map(|(i, _)| &rules.rules[*i])
                    .collect();
                signals.clear();
                for (m, scores) in self.models.models.iter().zip(&self.model_scores) {
                    let Some(score) = scores.get(row) else {
                        continue;
                    };
                    signals.push(signal(m, f64::from(*score)));
                }
                let lists = if kind == SubjectKind::Ip {
                    self.reputation.matches(subjects.value(row))
                } else {
                    Vec::new()
                };
                if hits.is_empty()
                    && signals.iter().all(|m| m.action.is_none())
                    && lists.iter().all(|l| l.action.is_none())
                {
                    continue;
                }
                s_kind.append_value(kind.as_str());
                s_subject.append_value(subjects.value(row));
                s_ts.append_value(ts.value(row));
                s_score.append_value(trust_score(&hits, &signals, &lists));
                if hits.is_empty() {
                    s_rules.append_null();
                } else {
                    let names: Vec<&str> = hits.iter().map(|r| r.spec.id.as_str()).collect();
                    s_rules.append_value(names.join(","));
                }
                if signals.is_empty() {
                    s_models.append_null();
                } else {
                    let list: Vec<String> = signals
                        .iter()
                        .map(|m| format!("{}@{}={:.4}", m.name, m.version, m.score))
                        .collect();
                    s_models.append_value(list.join(","));
                }
                let Some(mut d) = self.policy.decide(
                    kind,
                    subjects.value(row),
                    ts.value(row),
                    &hits,
                    &signals,
                    &lists,
                ) else {
                    continue;
                };
                if let Some(e) = self
                    .evidence
                    .get(&(ki as u8, subjects.value(row).to_string()))
                {
                    d.reasons.push(format!("evidence:{e}"));
                }
                // Explanations cost one small inference each: only for decisions issued.
                for (i, m) in self.models.models.iter().enumerate() {
                    let Some(score) = self.model_scores[i].get(row) else {
                        continue;
                    };
                    if m.thresholds.action(f64::from(*score)).is_none() {
                        continue;
                    }
                    let w = m.width();
                    let input = &self.model_rows[i][row * w..(row + 1) * w];
                    for (feature, c) in m.explain(input, *score)? {
                        d.reasons
                            .push(format!("feature:{}:{feature}=+{c:.3}", m.name()));
                    }
                }
                out.decisions.push(d);
            }
            out.features.push(batch);
        }
        let scores = RecordBatch::try_new(
            scores_schema(),
            vec![
                Arc::new(s_kind.finish()),
                Arc::new(s_subject.finish()),
                Arc::new(s_ts.finish()),
                Arc::new(s_score.finish()),
                Arc::new(s_rules.finish()),
                Arc::new(s_models.finish()),
            ],
        )?;
        out.scores = Some(scores);
        Ok(out)
    }
}
