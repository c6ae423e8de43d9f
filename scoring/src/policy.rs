//! The decision policy: from the rules that fired for a subject and what the models said about
//! it to one decision with an action, a TTL, a score and its reasons.
//!
//! - **Score** (the trust score, 1 = certainly hostile): `1 - Π(1 - s) · Π(1 - w·m) · Π(1 - r)`
//!   over the fired rules' severity scores `s`, every model's score `m` (clamped to 0..1) times
//!   its weight `w`, and the `weight` `r` of every reputation list holding the address. A list's
//!   weight is in a severity's units: weight 0.8 counts like a fired `high` rule.
//! - **Action**: the strictest action among the fired rules, the models whose thresholds the
//!   score reached and the reputation lists configured with an `action`, counting those in
//!   `enforce` mode (lists always are); when only `monitor`-mode rules or models acted, or the
//!   policy is in global monitor mode: action `monitor`, with `would:<action>` among the
//!   reasons. The origin is `rule`, `model` or `reputation`, whichever gave the action (a rule
//!   before a model before a list, when they give the same one). A list without an `action`
//!   never gives one.
//! - **Reasons**: `rule:<id>` per fired rule, `model:<name>@<version>=<score>` per model that
//!   reached a threshold, `reputation:<name>` per list holding the address (the scorer adds
//!   the model's top contributing features after them).
//! - **Hysteresis**: no new decision while one at least as strict is active with more than half
//!   of the new decision's own (unescalated) TTL left, so a subject does not flap, the feed is
//!   not flooded, and misbehaving on while blocked is not a new offence.
//! - **Escalation**: a repeat offender (`escalate_after` decisions within `repeat_window_secs`)
//!   has `throttle`/`step_up` raised to `block` and its TTL doubled per offence (up to
//!   `max_ttl_secs`).
//! - **Allow-list**: subjects (`kind:id`) and CIDRs (for `ip` subjects) never get a decision.

use crate::ScoringError;
use crate::rules::{CompiledRule, RuleMode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use vigil_enforce::subjects::Cidr;
use vigil_enforce::{Action, Decision, Subject, SubjectKind, UnixMicros};

/// `[scoring.policy]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Record every decision as `monitor` (shadow mode): nothing is enforced. Default false.
    pub monitor_only: bool,
    /// Subjects that never get a decision, as `kind:id` (`identity:ops-bot`). Default none.
    pub allow_subjects: Vec<String>,
    /// Client networks whose `ip` subjects never get a decision. Default none.
    pub allow_cidrs: Vec<String>,
    /// Window in which earlier decisions count toward escalation. Default 3600.
    pub repeat_window_secs: u64,
    /// Decisions within the window after which a subject is escalated. Default 3.
    pub escalate_after: u32,
    /// Longest TTL escalation may reach. Default 86400.
    pub max_ttl_secs: u64,
    /// Most subjects whose decision history is kept; the oldest are forgotten. Default 1,000,000.
    pub max_history: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            monitor_only: false,
            allow_subjects: Vec::new(),
            allow_cidrs: Vec::new(),
            repeat_window_secs: 3600,
            escalate_after: 3,
            max_ttl_secs: 86_400,
            max_history: 1_000_000,
        }
    }
}

/// What one model said about a subject's feature row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSignal<'a> {
    pub name: &'a str,
    pub version: u32,
    pub score: f64,
    /// Share of the score in the trust score (0 to 1).
    pub weight: f64,
    /// The strictest action whose threshold the score reached; `None` below all of them.
    pub action: Option<Action>,
    /// `false`: the model runs in monitor (shadow) mode.
    pub enforce: bool,
    pub ttl_secs: u64,
}

/// A reputation list (`[[scoring.reputation]]`) that holds the subject's address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListSignal<'a> {
    pub name: &'a str,
    /// What a match adds to the trust score (0 to 1, a severity's units).
    pub weight: f64,
    /// What a match issues by itself; `None`: nothing (a feature and a reason only).
    pub action: Option<Action>,
    /// TTL of the decisions of `action`.
    pub ttl_secs: u64,
}

/// The trust score of a subject given the rules that fired, the models' scores and the
/// reputation lists that hold it.
pub fn trust_score(
    fired: &[&CompiledRule],
    models: &[ModelSignal<'_>],
    lists: &[ListSignal<'_>],
) -> f64 {
    let rules: f64 = fired
        .iter()
        .map(|r| 1.0 - r.spec.severity.score())
        .product();
    let models: f64 = models
        .iter()
        .map(|m| 1.0 - m.weight.clamp(0.0, 1.0) * m.score.clamp(0.0, 1.0))
        .product();
    let lists: f64 = lists
        .iter()
        .map(|l| 1.0 - l.weight.clamp(0.0, 1.0))
        .product();
    (1.0 - rules * models * lists).clamp(0.0, 1.0)
}

/// One source of an action: a fired rule or a model over a threshold.
#[derive(Clone, Copy)]
struct Candidate {
    action: Action,
    /// Ties between equal actions go to the higher rank (severity score, model score).
    rank: f64,
    enforce: bool,
    ttl_secs: u64,
    origin: &'static str,
}

/// Which origin gives the action when several give the same one: the higher.
fn precedence(origin: &str) -> u8 {
    match origin {
        "rule" => 2,
        "model" => 1,
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy)]
struct History {
    action: Action,
    /// When the last decision was issued: the next one is issued later, whatever the event
    /// time says (see [`Policy::decide`]).
    issued_us: i64,
    expires_us: i64,
    offences: u32,
    first_offence_us: i64,
}

pub struct Policy {
    cfg: PolicyConfig,
    allow_subjects: std::collections::HashSet<String>,
    allow_cidrs: Vec<Cidr>,
    history: HashMap<(SubjectKind, String), History>,
    /// Allow-list entries added at run time (manual decisions), with their expiry (wall clock).
    manual_allow: HashMap<Subject, UnixMicros>,
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Result<Self, ScoringError> {
        let mut allow_subjects = std::collections::HashSet::new();
        for (i, s) in cfg.allow_subjects.iter().enumerate() {
            Subject::from_key(s).map_err(|e| {
                ScoringError::config(format!("scoring.policy.allow_subjects[{i}]"), e.to_string())
            })?;
            allow_subjects.insert(s.clone());
        }
        let allow_cidrs = cfg
            .allow_cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<Cidr>().map_err(|e| {
                    ScoringError::config(format!("scoring.policy.allow_cidrs[{i}]"), e.to_string())
                })
            })
            .collect::<Result<_, _>>()?;
        if cfg.escalate_after == 0 {
            return Err(ScoringError::config(
                "scoring.policy.escalate_after",
                "must be at least 1",
            ));
        }
        Ok(Self {
            cfg,
            allow_subjects,
            allow_cidrs,
            history: HashMap::new(),
            manual_allow: HashMap::new(),
        })
    }

    /// Allow-lists `subject` until `until` (a manual allow decision): no decision is issued
    /// for it meanwhile.
    pub fn allow(&mut self, subject: Subject, until: UnixMicros) {
        let now = UnixMicros::now();
        self.manual_allow.retain(|_, t| *t > now);
        self.manual_allow.insert(subject, until);
    }

    /// Ends a manual allow-list entry (a revoke); whether there was one.
    pub fn unallow(&mut self, subject: &Subject) -> bool {
        self.manual_allow.remove(subject).is_some()
    }

    /// Learns a decision already published for its subject (by another instance that owned
    /// the subject before, see the scale-out `score` role), so that this policy neither repeats
    /// it nor weakens it. A decision older than the one held changes nothing: a read-back may
    /// lag what this instance published itself.
    pub fn remember(&mut self, d: &Decision) {
        let key = (d.subject.kind, d.subject.id.clone());
        match self.history.get_mut(&key) {
            Some(h) if h.issued_us >= d.issued_at.0 => {}
            Some(h) => {
                h.action = d.action;
                h.issued_us = d.issued_at.0;
                h.expires_us = d.expires_at.0;
            }
            None => {
                self.history.insert(
                    key,
                    History {
                        action: d.action,
                        issued_us: d.issued_at.0,
                        expires_us: d.expires_at.0,
                        offences: 1,
                        first_offence_us: d.issued_at.0,
                    },
                );
            }
        }
    }

    /// Forgets the subject's decision history (a manual revoke: the next offence starts over).
    pub fn forget(&mut self, subject: &Subject) {
        self.history.remove(&(subject.kind, subject.id.clone()));
    }

    fn allowed(&self, kind: SubjectKind, id: &str) -> bool {
        let key = format!("{}:{id}", kind.as_str());
        if self.allow_subjects.contains(&key) {
            return true;
        }
        if !self.manual_allow.is_empty()
            && self
                .manual_allow
                .get(&Subject::new(kind, id))
                .is_some_and(|t| *t > UnixMicros::now())
        {
            return true;
        }
        kind == SubjectKind::Ip
            && vigil_enforce::subjects::parse_ip(id)
                .is_some_and(|ip| self.allow_cidrs.iter().any(|c| c.contains(ip)))
    }

    /// The decision for `subject` at event time `t_us` given the rules that fired, the
    /// models' signals and the reputation lists that hold it, or `None` (allow-listed, nothing
    /// fired, reached a threshold or has an action, or an active decision already covers it).
    pub fn decide(
        &mut self,
        kind: SubjectKind,
        id: &str,
        t_us: i64,
        fired: &[&CompiledRule],
        models: &[ModelSignal<'_>],
        lists: &[ListSignal<'_>],
    ) -> Option<Decision> {
        let acting: Vec<&ModelSignal<'_>> = models.iter().filter(|m| m.action.is_some()).collect();
        let acting_lists = lists.iter().filter(|l| l.action.is_some());
        if (fired.is_empty() && acting.is_empty() && acting_lists.clone().next().is_none())
            || self.allowed(kind, id)
        {
            return None;
        }
        let score = trust_score(fired, models, lists);
        let candidates: Vec<Candidate> = fired
            .iter()
            .map(|r| Candidate {
                action: r.spec.action,
                rank: r.spec.severity.score(),
                enforce: r.spec.mode == RuleMode::Enforce,
                ttl_secs: r.spec.ttl_secs,
                origin: "rule",
            })
            .chain(acting.iter().filter_map(|m| {
                Some(Candidate {
                    action: m.action?,
                    rank: m.score,
                    enforce: m.enforce,
                    ttl_secs: m.ttl_secs,
                    origin: "model",
                })
            }))
            .chain(acting_lists.filter_map(|l| {
                Some(Candidate {
                    action: l.action?,
                    rank: l.weight,
                    enforce: true,
                    ttl_secs: l.ttl_secs,
                    origin: "reputation",
                })
            }))
            .collect();
        let strictest = |enforcing_only: bool| {
            candidates
                .iter()
                .filter(|c| c.enforce || !enforcing_only)
                .copied()
                // Equal actions: a rule (explicit, with its throttle rate) before a model before
                // a list.
                .max_by(|a, b| {
                    a.action
                        .cmp(&b.action)
                        .then(precedence(a.origin).cmp(&precedence(b.origin)))
                        .then(a.rank.total_cmp(&b.rank))
                })
        };
        let enforcing = strictest(true);
        let strictest = enforcing.or_else(|| strictest(false))?;
        let mut action = strictest.action;
        let mut ttl_secs = candidates
            .iter()
            .map(|c| c.ttl_secs)
            .max()
            .unwrap_or(strictest.ttl_secs);

        let key = (kind, id.to_string());
        let prior = self.history.get(&key).copied();
        let shadow = self.cfg.monitor_only || enforcing.is_none();
        // Hysteresis: an active decision at least as strict, with more than half of this
        // decision's own (unescalated) TTL left, already covers this — and is not a new
        // offence: a subject that keeps misbehaving while blocked is not escalated on every
        // evaluation.
        let wanted = if shadow { Action::Monitor } else { action };
        if let Some(h) = prior
            && h.action >= wanted
            && h.expires_us - t_us > ttl_secs as i64 * 500_000
        {
            return None;
        }
        let window = self.cfg.repeat_window_secs as i64 * 1_000_000;
        let offences = match prior {
            Some(h) if t_us - h.first_offence_us <= window => h.offences + 1,
            _ => 1,
        };
        let escalated = offences > self.cfg.escalate_after;
        if escalated {
            if matches!(action, Action::Throttle | Action::StepUp) {
                action = Action::Block;
            }
            let doublings = (offences - self.cfg.escalate_after).min(16);
            ttl_secs = (ttl_secs << doublings).min(self.cfg.max_ttl_secs);
        }
        let recorded = if shadow { Action::Monitor } else { action };
        // A weaker decision never replaces a stricter one in force (enforcement points keep a
        // subject's newest decision): it waits for that one to expire.
        if let Some(h) = prior
            && h.action > recorded
            && h.expires_us > t_us
        {
            return None;
        }
        // Event time is not monotonic across one subject's events (sources with whole-second
        // timestamps beside the proxy's microseconds, late lines), but enforcement points keep
        // the decision with the newest `issued_at`: each decision is issued after the last.
        let t_us = prior.map_or(t_us, |h| t_us.max(h.issued_us + 1));
        if self.history.len() >= self.cfg.max_history && prior.is_none() {
            let now = t_us;
            self.history.retain(|_, h| h.expires_us > now);
            if self.history.len() >= self.cfg.max_history {
                self.history.clear();
            }
        }
        let expires_us = t_us + ttl_secs as i64 * 1_000_000;
        self.history.insert(
            key,
            History {
                action: recorded,
                issued_us: t_us,
                expires_us,
                offences,
                first_offence_us: match prior {
                    Some(h) if offences > 1 => h.first_offence_us,
                    _ => t_us,
                },
            },
        );
        let mut d = Decision::new(
            Subject::new(kind, id),
            recorded,
            score,
            strictest.origin,
            Duration::from_secs(ttl_secs),
        );
        d.issued_at = UnixMicros(t_us);
        d.expires_at = UnixMicros(expires_us);
        for r in fired {
            d.reasons.push(format!("rule:{}", r.spec.id));
        }
        for m in &acting {
            d.reasons
                .push(format!("model:{}@{}={:.3}", m.name, m.version, m.score));
        }
        for l in lists {
            d.reasons.push(format!("reputation:{}", l.name));
        }
        if shadow {
            d.reasons.push(format!("would:{}", action.as_str()));
        }
        if escalated {
            d.reasons.push(format!("repeat_offender:{offences}"));
        }
        if action == Action::Throttle {
            // Models name no rate: the rules' (or the enforcer's default) applies.
            d.throttle_rps = fired
                .iter()
                .filter_map(|r| r.spec.throttle_rps)
                .reduce(f64::min);
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureConfig, Windows, features_schema};
    use crate::rules::RuleSet;

    fn rules() -> RuleSet {
        let text = r#"
[[rule]]
id = "hard"
kind = "ip"
when = "rate_1m > 1"
action = "throttle"
ttl_secs = 600
severity = "high"
throttle_rps = 2.0
[[rule]]
id = "shadow"
kind = "ip"
when = "rate_1m > 1"
action = "block"
ttl_secs = 600
severity = "medium"
mode = "monitor"
"#;
        RuleSet::from_toml(
            text,
            "t",
            &features_schema(&Windows::new(&FeatureConfig::default())),
        )
        .unwrap()
    }

    const MIN: i64 = 60_000_000;

    #[test]
    fn strictest_enforced_action_hysteresis_and_escalation() {
        let set = rules();
        let both: Vec<&CompiledRule> = set.rules.iter().collect();
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        let d = p
            .decide(SubjectKind::Ip, "1.2.3.4", 0, &both, &[], &[])
            .unwrap();
        assert_eq!(
            d.action,
            Action::Throttle,
            "the monitor-mode rule does not enforce its block"
        );
        assert_eq!(d.throttle_rps, Some(2.0));
        assert!(
            d.reasons.contains(&"rule:hard".to_string())
                && d.reasons.contains(&"rule:shadow".to_string())
        );
        assert!((d.score - (1.0 - 0.2 * 0.45)).abs() < 1e-9);
        assert_eq!(d.expires_at.0 - d.issued_at.0, 10 * MIN);
        // still covered: no flapping
        assert!(
            p.decide(SubjectKind::Ip, "1.2.3.4", MIN, &both, &[], &[])
                .is_none()
        );
        // past half the TTL: renewed; the fourth offence in the hour escalates
        let d2 = p
            .decide(SubjectKind::Ip, "1.2.3.4", 6 * MIN, &both, &[], &[])
            .unwrap();
        assert_eq!(d2.action, Action::Throttle);
        p.decide(SubjectKind::Ip, "1.2.3.4", 12 * MIN, &both, &[], &[])
            .unwrap();
        let d4 = p
            .decide(SubjectKind::Ip, "1.2.3.4", 18 * MIN, &both, &[], &[])
            .unwrap();
        assert_eq!(d4.action, Action::Block);
        assert_eq!(d4.expires_at.0 - d4.issued_at.0, 20 * MIN, "TTL doubled");
        assert!(d4.reasons.iter().any(|r| r.starts_with("repeat_offender:")));
        // while the escalated block lasts, evaluations that fire again are covered by it: no
        // new decision, no further escalation
        for t in [19 * MIN, 20 * MIN, 25 * MIN, 30 * MIN] {
            assert!(
                p.decide(SubjectKind::Ip, "1.2.3.4", t, &both, &[], &[])
                    .is_none(),
                "at {t}"
            );
        }
        // past half of the rule's own TTL before the block ends: renewed (fifth offence)
        let d5 = p
            .decide(SubjectKind::Ip, "1.2.3.4", 34 * MIN, &both, &[], &[])
            .unwrap();
        assert_eq!(d5.action, Action::Block);
        assert!(d5.reasons.contains(&"repeat_offender:5".to_string()));
    }

    #[test]
    fn allow_list_and_monitor_mode() {
        let set = rules();
        let both: Vec<&CompiledRule> = set.rules.iter().collect();
        let mut p = Policy::new(PolicyConfig {
            allow_subjects: vec!["ip:9.9.9.9".into()],
            allow_cidrs: vec!["10.0.0.0/8".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(
            p.decide(SubjectKind::Ip, "9.9.9.9", 0, &both, &[], &[])
                .is_none()
        );
        assert!(
            p.decide(SubjectKind::Ip, "10.1.2.3", 0, &both, &[], &[])
                .is_none()
        );
        let mut shadow = Policy::new(PolicyConfig {
            monitor_only: true,
            ..Default::default()
        })
        .unwrap();
        let d = shadow
            .decide(SubjectKind::Ip, "1.2.3.4", 0, &both, &[], &[])
            .unwrap();
        assert_eq!(d.action, Action::Monitor);
        assert!(d.reasons.contains(&"would:throttle".to_string()));
        let only_shadow: Vec<&CompiledRule> =
            set.rules.iter().filter(|r| r.spec.id == "shadow").collect();
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        let d = p
            .decide(SubjectKind::Ip, "5.5.5.5", 0, &only_shadow, &[], &[])
            .unwrap();
        assert_eq!(
            (d.action, d.reasons.last().map(String::as_str)),
            (Action::Monitor, Some("would:block"))
        );
        let e = Policy::new(PolicyConfig {
            allow_cidrs: vec!["10.0.0.0/40".into()],
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("scoring.policy.allow_cidrs[0]"),
            "{e}"
        );
    }

    fn signal(action: Option<Action>, enforce: bool) -> ModelSignal<'static> {
        ModelSignal {
            name: "abuse",
            version: 3,
            score: 0.93,
            weight: 1.0,
            action,
            enforce,
            ttl_secs: 1200,
        }
    }

    #[test]
    fn models_alone_decide_and_combine_with_rules() {
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        assert!(
            p.decide(
                SubjectKind::Ip,
                "7.7.7.7",
                0,
                &[],
                &[signal(None, true)],
                &[]
            )
            .is_none(),
            "below every threshold: nothing"
        );
        let d = p
            .decide(
                SubjectKind::Ip,
                "7.7.7.7",
                0,
                &[],
                &[signal(Some(Action::StepUp), true)],
                &[],
            )
            .unwrap();
        assert_eq!((d.action, d.origin.as_str()), (Action::StepUp, "model"));
        assert_eq!(d.reasons, ["model:abuse@3=0.930"]);
        assert!((d.score - 0.93).abs() < 1e-9);
        assert_eq!(d.expires_at.0 - d.issued_at.0, 20 * MIN);

        // A stricter rule gives the action; the model's score still raises the trust score.
        let set = rules();
        let hard: Vec<&CompiledRule> = set.rules.iter().filter(|r| r.spec.id == "hard").collect();
        let d = p
            .decide(
                SubjectKind::Ip,
                "8.8.8.8",
                0,
                &hard,
                &[signal(Some(Action::StepUp), true)],
                &[],
            )
            .unwrap();
        assert_eq!((d.action, d.origin.as_str()), (Action::Throttle, "rule"));
        assert!((d.score - (1.0 - 0.2 * 0.07)).abs() < 1e-9);
        assert_eq!(d.reasons, ["rule:hard", "model:abuse@3=0.930"]);

        // A model in monitor mode only records what it would do.
        let d = p
            .decide(
                SubjectKind::Ip,
                "9.9.9.9",
                0,
                &[],
                &[signal(Some(Action::Throttle), false)],
                &[],
            )
            .unwrap();
        assert_eq!(d.action, Action::Monitor);
        assert_eq!(d.reasons.last().map(String::as_str), Some("would:throttle"));
    }

    #[test]
    fn a_weaker_decision_never_replaces_a_stricter_one_and_issue_times_only_grow() {
        let set = rules();
        let hard: Vec<&CompiledRule> = set.rules.iter().filter(|r| r.spec.id == "hard").collect();
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        // A monitor-mode model signal about a subject, at a microsecond event time ...
        let m = p
            .decide(
                SubjectKind::Ip,
                "6.6.6.6",
                10 * MIN + 123,
                &[],
                &[signal(Some(Action::Throttle), false)],
                &[],
            )
            .unwrap();
        assert_eq!(m.action, Action::Monitor);
        // ... then a throttle from lines logged with an earlier (whole-second) time: issued
        // after the monitor decision, so an enforcement point keeping the newest takes it.
        let t = p
            .decide(SubjectKind::Ip, "6.6.6.6", 10 * MIN, &hard, &[], &[])
            .unwrap();
        assert_eq!(t.action, Action::Throttle);
        assert!(t.issued_at > m.issued_at, "{t:?} after {m:?}");
        assert_eq!(t.expires_at.0 - t.issued_at.0, 10 * MIN);
        // While the throttle lasts, a weaker signal (the monitor again, even near its end)
        // issues nothing; once it has expired, the weaker decision is issued.
        for at in [11 * MIN, 19 * MIN] {
            assert!(
                p.decide(
                    SubjectKind::Ip,
                    "6.6.6.6",
                    at,
                    &[],
                    &[signal(Some(Action::Throttle), false)],
                    &[]
                )
                .is_none(),
                "at {at}"
            );
        }
        let later = p
            .decide(
                SubjectKind::Ip,
                "6.6.6.6",
                21 * MIN,
                &[],
                &[signal(Some(Action::Throttle), false)],
                &[],
            )
            .unwrap();
        assert_eq!(later.action, Action::Monitor);
    }

    #[test]
    fn a_remembered_decision_holds_like_an_own_one() {
        let set = rules();
        let hard: Vec<&CompiledRule> = set.rules.iter().filter(|r| r.spec.id == "hard").collect();
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        let mut d = Decision::new(
            Subject::new(SubjectKind::Ip, "5.5.5.5"),
            Action::Throttle,
            0.9,
            "rule",
            Duration::from_secs(600),
        );
        d.issued_at = UnixMicros(10 * MIN);
        d.expires_at = UnixMicros(20 * MIN);
        p.remember(&d);
        assert!(
            p.decide(SubjectKind::Ip, "5.5.5.5", 11 * MIN, &hard, &[], &[])
                .is_none(),
            "published by another instance: not repeated"
        );
        let again = p
            .decide(SubjectKind::Ip, "5.5.5.5", 16 * MIN, &hard, &[], &[])
            .unwrap();
        assert!(again.issued_at.0 > 10 * MIN);
    }

    fn list(name: &'static str, weight: f64, action: Option<Action>) -> ListSignal<'static> {
        ListSignal {
            name,
            weight,
            action,
            ttl_secs: 1800,
        }
    }

    #[test]
    fn reputation_lists_weigh_and_act_only_when_configured_to() {
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        // without an action a list decides nothing on its own
        assert!(
            p.decide(
                SubjectKind::Ip,
                "1.1.1.1",
                0,
                &[],
                &[],
                &[list("a", 0.5, None)]
            )
            .is_none()
        );
        // with one it does, naming itself; its weight is in the score like a severity
        let lists = [list("a", 0.5, None), list("b", 0.8, Some(Action::Block))];
        let d = p
            .decide(SubjectKind::Ip, "1.1.1.1", 0, &[], &[], &lists)
            .unwrap();
        assert_eq!((d.action, d.origin.as_str()), (Action::Block, "reputation"));
        assert_eq!(d.reasons, ["reputation:a", "reputation:b"]);
        assert!((d.score - (1.0 - 0.5 * 0.2)).abs() < 1e-9, "{}", d.score);
        assert_eq!(d.expires_at.0 - d.issued_at.0, 30 * MIN);
        // beside a fired rule: the stricter action wins, every weight counts
        let set = rules();
        let hard: Vec<&CompiledRule> = set.rules.iter().filter(|r| r.spec.id == "hard").collect();
        let d = p
            .decide(SubjectKind::Ip, "2.2.2.2", 0, &hard, &[], &lists)
            .unwrap();
        assert_eq!((d.action, d.origin.as_str()), (Action::Block, "reputation"));
        assert!((d.score - (1.0 - 0.2 * 0.5 * 0.2)).abs() < 1e-9);
        assert_eq!(d.reasons, ["rule:hard", "reputation:a", "reputation:b"]);
        let monitor = [list("m", 0.0, Some(Action::Throttle))];
        let d = p
            .decide(SubjectKind::Ip, "3.3.3.3", 0, &hard, &[], &monitor)
            .unwrap();
        assert_eq!(
            (d.action, d.origin.as_str()),
            (Action::Throttle, "rule"),
            "a rule before a list for the same action (the rule names its rate)"
        );
        assert_eq!(d.throttle_rps, Some(2.0));
        // global monitor mode and the allow-lists hold for lists too
        let mut shadow = Policy::new(PolicyConfig {
            monitor_only: true,
            allow_cidrs: vec!["10.0.0.0/8".into()],
            ..Default::default()
        })
        .unwrap();
        let d = shadow
            .decide(SubjectKind::Ip, "1.1.1.1", 0, &[], &[], &lists)
            .unwrap();
        assert_eq!(d.action, Action::Monitor);
        assert_eq!(d.reasons.last().map(String::as_str), Some("would:block"));
        assert!(
            shadow
                .decide(SubjectKind::Ip, "10.0.0.1", 0, &[], &[], &lists)
                .is_none()
        );
    }
}
