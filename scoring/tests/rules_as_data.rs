//! The built-in rules as data: `tests/cases/*.toml` lists event streams and the decisions each
//! must produce (and that no other decision is made). See the file for the format.

mod support;

use serde::Deserialize;
use vigil_scoring::{Scorer, ScoringConfig};

#[derive(Deserialize)]
struct File {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    events: Vec<EventSpec>,
    expect: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default = "step")]
    step_s: f64,
    ip: String,
    identity: Option<String>,
    session: Option<String>,
    api_key: Option<String>,
    #[serde(default = "get")]
    method: String,
    path: String,
    status: u16,
    #[serde(default)]
    bytes_out: u64,
    ua: String,
    /// What an enforcement point did with the request (`vigil proxy`'s events).
    enforced: Option<String>,
}

fn one() -> u32 {
    1
}
fn step() -> f64 {
    1.0
}
fn get() -> String {
    "GET".into()
}

#[derive(Deserialize)]
struct Expect {
    subject: String,
    action: String,
    rule: String,
}

const T0: f64 = 1_795_500_000.0;

fn lines(case: &Case) -> String {
    let mut out = String::new();
    let mut t = T0;
    for e in &case.events {
        for i in 0..e.repeat {
            let s = |v: &str| v.replace("{i}", &i.to_string());
            let mut obj = serde_json::json!({
                "timestamp": t, "client_ip": s(&e.ip), "method": e.method, "path": s(&e.path),
                "status": e.status, "bytes_out": e.bytes_out, "user_agent": e.ua,
            });
            let m = obj.as_object_mut().unwrap();
            for (k, v) in [
                ("identity", &e.identity),
                ("session", &e.session),
                ("api_key", &e.api_key),
                ("enforced", &e.enforced),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), s(v).into());
                }
            }
            out.push_str(&obj.to_string());
            out.push('\n');
            t += e.step_s;
        }
    }
    out
}

#[test]
fn built_in_rules_decide_as_the_cases_say() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/default_rules.toml"
    ))
    .unwrap();
    let file: File = toml::from_str(&text).unwrap();
    let mut failures = Vec::new();
    for case in &file.case {
        let events = support::events_from_json_lines(&lines(case));
        // The rules alone: the models would (rightly) add decisions of their own.
        let mut cfg = ScoringConfig::default();
        cfg.models.enabled = false;
        let mut scorer = Scorer::new(&cfg).unwrap();
        let decisions = scorer.score_batch(&events).unwrap().decisions;
        let got: Vec<(String, String, Vec<String>)> = decisions
            .iter()
            .map(|d| {
                (
                    d.subject.key(),
                    d.action.as_str().to_string(),
                    d.reasons.clone(),
                )
            })
            .collect();
        for e in &case.expect {
            let hit = got.iter().any(|(s, a, reasons)| {
                *s == e.subject && *a == e.action && reasons.contains(&format!("rule:{}", e.rule))
            });
            if !hit {
                failures.push(format!(
                    "{}: expected {} {} by {}, got {got:?}",
                    case.name, e.action, e.subject, e.rule
                ));
            }
        }
        for (s, a, r) in &got {
            if !case.expect.iter().any(|e| e.subject == *s) {
                failures.push(format!("{}: unexpected {a} for {s} ({r:?})", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
