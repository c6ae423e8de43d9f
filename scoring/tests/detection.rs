//! Detection quality on simulated traffic the rules were not tuned on (seeds other than the
//! simulator's default 42) and the built-in models were not trained on (`models/train.py` uses
//! none of 7, 1001, 2026, 42), with rules and models in the loop: every attack scenario's
//! subjects are flagged (step-up, throttle or block) within 60 s of event time after the attack
//! starts, with recall ≥ 0.95 per scenario, and at most 0.1% of benign subjects are ever
//! throttled or blocked. Prints the table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use vigil_enforce::Action;
use vigil_ingest::event::EventBatchBuilder;
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
use vigil_ingest::simulate::{Scenario, SimConfig, SimFormat, Simulation, render};
use vigil_scoring::{Scorer, ScoringConfig};

const DETECT_WITHIN_US: i64 = 60_000_000;

struct Outcome {
    table: Vec<(String, usize, usize, f64)>,
    benign_subjects: usize,
    benign_blocked: Vec<String>,
    /// Devices (client fingerprints) throttled or blocked, and the benign users (identity, or
    /// address when anonymous) who sent requests from one of them.
    devices_blocked: usize,
    benign_on_blocked_devices: usize,
    /// Decisions whose action came from a model, and decisions naming a model among reasons.
    model_origin: usize,
    model_reasons: usize,
}

fn run(seed: u64, format: SimFormat, fmt: FormatName) -> Outcome {
    let sim = Simulation::new(SimConfig {
        seed,
        duration_secs: 3600,
        benign_users: 400,
        attackers_per_scenario: 3,
        ..Default::default()
    })
    .unwrap();
    let mut parser = Parser::new(
        "sim",
        fmt,
        FormatOptions::default(),
        Normalizer::new(NormalizeConfig::default()).unwrap(),
        Arc::new(IngestStats::default()),
    )
    .unwrap();
    let mut scorer = Scorer::new(&ScoringConfig::default()).unwrap();
    let mut decisions = Vec::new();
    let mut benign: HashSet<(String, String)> = HashSet::new();
    let mut device_users: HashMap<String, HashSet<String>> = HashMap::new();
    let mut device = String::new();
    let mut text = String::new();
    let mut lines = 0;
    let flush =
        |text: &mut String, parser: &mut Parser, scorer: &mut Scorer, decisions: &mut Vec<_>| {
            let mut chunk = LineChunk::new("sim".into(), seed);
            let mut split = LineSplitter::new(0, 1 << 20);
            split.push(text.as_bytes(), &mut chunk);
            split.finish(&mut chunk);
            let mut builder = EventBatchBuilder::with_capacity(8192);
            let mut dead = Vec::new();
            parser.parse_chunk(&chunk, &mut builder, &mut dead);
            assert!(
                dead.is_empty(),
                "simulated lines all parse: {:?}",
                dead.first()
            );
            let out = scorer.score_batch(&builder.finish()).unwrap();
            decisions.extend(out.decisions);
            text.clear();
        };
    for req in sim.requests() {
        if req.scenario.is_none() {
            if let Some(i) = &req.identity {
                benign.insert(("identity".into(), i.clone()));
            }
            if let Some(s) = &req.session {
                benign.insert(("session".into(), s.clone()));
            }
            benign.insert(("ip".into(), req.client_ip.clone()));
            device.clear();
            vigil_ingest::normalize::write_device(
                Some(&req.tls_fingerprint),
                Some(&req.http_fingerprint),
                &mut device,
            );
            device_users.entry(device.clone()).or_default().insert(
                req.identity
                    .clone()
                    .unwrap_or_else(|| req.client_ip.clone()),
            );
            if let Some(k) = &req.api_key {
                benign.insert(("api_key".into(), vigil_ingest::normalize::api_key_id(k)));
            }
        }
        render(format, &req, &mut text);
        text.push('\n');
        lines += 1;
        if lines % 8192 == 0 {
            flush(&mut text, &mut parser, &mut scorer, &mut decisions);
        }
    }
    flush(&mut text, &mut parser, &mut scorer, &mut decisions);

    // First flagging decision per subject.
    let mut first: HashMap<(String, String), i64> = HashMap::new();
    let mut blocked: HashMap<(String, String), Vec<String>> = HashMap::new();
    for d in &decisions {
        let key = (d.subject.kind.as_str().to_string(), d.subject.id.clone());
        if d.action >= Action::StepUp {
            let t = first.entry(key.clone()).or_insert(d.issued_at.0);
            *t = (*t).min(d.issued_at.0);
        }
        if d.action >= Action::Throttle {
            blocked
                .entry(key)
                .or_default()
                .extend(d.reasons.iter().cloned());
        }
    }
    let labelled: HashSet<(String, String)> = sim
        .labels()
        .iter()
        .map(|l| (l.kind.to_string(), l.id.clone()))
        .collect();
    let mut per: BTreeMap<String, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for l in sim.labels() {
        let e = per.entry(l.scenario.as_str().to_string()).or_default();
        e.0 += 1;
        if let Some(t) = first.get(&(l.kind.to_string(), l.id.clone()))
            && *t - l.start_us <= DETECT_WITHIN_US
        {
            e.1 += 1;
            e.2.push((*t - l.start_us) as f64 / 1e6);
        }
    }
    let table = per
        .into_iter()
        .map(|(s, (n, hit, mut lat))| {
            lat.sort_by(f64::total_cmp);
            let median = lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN);
            (s, n, hit, median)
        })
        .collect();
    let benign_only: Vec<&(String, String)> =
        benign.iter().filter(|k| !labelled.contains(*k)).collect();
    let benign_blocked = benign_only
        .iter()
        .filter_map(|k| {
            blocked
                .get(*k)
                .map(|reasons| format!("{}:{} {reasons:?}", k.0, k.1))
        })
        .collect();
    let blocked_devices: Vec<&String> = blocked
        .keys()
        .filter(|k| k.0 == "device")
        .map(|k| &k.1)
        .collect();
    let benign_on_blocked_devices = blocked_devices
        .iter()
        .filter_map(|d| device_users.get(*d))
        .flatten()
        .collect::<HashSet<_>>()
        .len();
    Outcome {
        table,
        benign_subjects: benign_only.len(),
        benign_blocked,
        devices_blocked: blocked_devices.len(),
        benign_on_blocked_devices,
        model_origin: decisions.iter().filter(|d| d.origin == "model").count(),
        model_reasons: decisions
            .iter()
            .filter(|d| d.reasons.iter().any(|r| r.starts_with("model:")))
            .count(),
    }
}

fn check(name: &str, o: &Outcome) {
    println!("\n{name}\nscenario                  labelled  flagged<=60s  recall  median_detect_s");
    let mut failures = Vec::new();
    for (s, n, hit, median) in &o.table {
        let recall = *hit as f64 / *n as f64;
        println!("{s:<25} {n:>8}  {hit:>12}  {recall:>6.2}  {median:>15.1}");
        if recall < 0.95 {
            failures.push(format!("{s}: recall {recall:.2}"));
        }
    }
    let rate = o.benign_blocked.len() as f64 / o.benign_subjects as f64;
    println!(
        "benign subjects: {}, throttled or blocked: {} ({:.3}%)",
        o.benign_subjects,
        o.benign_blocked.len(),
        rate * 100.0
    );
    let device_rate = o.benign_on_blocked_devices as f64 / o.benign_subjects as f64;
    println!(
        "devices throttled or blocked: {}, benign users on them: {} ({:.3}%)",
        o.devices_blocked,
        o.benign_on_blocked_devices,
        device_rate * 100.0
    );
    if device_rate > 0.001 {
        failures.push(format!(
            "{} benign users behind blocked devices",
            o.benign_on_blocked_devices
        ));
    }
    println!(
        "decisions from models: {}, naming a model: {}",
        o.model_origin, o.model_reasons
    );
    if rate > 0.001 {
        failures.push(format!(
            "benign blocked {:.3}%: {:?}",
            rate * 100.0,
            &o.benign_blocked[..o.benign_blocked.len().min(10)]
        ));
    }
    assert_eq!(
        o.table.len(),
        Scenario::ALL.len(),
        "every scenario is simulated"
    );
    assert!(failures.is_empty(), "{name}: {failures:?}");
}

/// Seeds to evaluate; `VIGIL_DETECTION_SEEDS=42` evaluates the simulator's default seed, the
/// one the default rules were tuned on (kept out of the test itself).
fn seeds(default: &[u64]) -> Vec<u64> {
    std::env::var("VIGIL_DETECTION_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

#[test]
fn detects_every_scenario_on_unseen_seeds() {
    for seed in seeds(&[7, 1001]) {
        let o = run(seed, SimFormat::Json, FormatName::Json);
        check(&format!("seed {seed}, generic JSON"), &o);
    }
}

#[test]
fn detects_through_kong_logs() {
    let o = run(2026, SimFormat::Kong, FormatName::Kong);
    check("seed 2026, Kong http-log", &o);
}
