//! The gated matcher finds exactly what full matching finds.
//!
//! [`Detectors::inspect`] skips every regex whose necessary literals a part does not contain;
//! [`Detectors::inspect_reference`] matches every pattern list in full, as the detectors did
//! before the gate. Both must give the same evidence (classes, detector ids, strengths,
//! locations, in the same order) on every request: the whole evaluation corpus in several
//! request shapes, and generated query strings that splice attack fragments into benign text.

mod common;

use std::sync::OnceLock;

use common::{
    ATTACKS, BROWSER_UA, Sample, WORDS, attack_samples, benign_samples, encode_double, encode_form,
    encode_minimal, mixed_case,
};
use proptest::prelude::*;
use vigil_detect::{AttackClass, Detectors, Evidence, Request};

fn detectors() -> &'static Detectors {
    static D: OnceLock<Detectors> = OnceLock::new();
    D.get_or_init(|| Detectors::builtin().expect("builtin detectors compile"))
}

/// Inspects `req` both ways; returns the evidence, or a description of the difference.
fn compare(req: &Request<'_>) -> Result<Evidence, String> {
    let (mut gated, mut reference) = (Evidence::new(), Evidence::new());
    detectors().inspect(req, &mut gated);
    detectors().inspect_reference(req, &mut reference);
    let strengths = |e: &Evidence| {
        AttackClass::ALL
            .iter()
            .map(|&c| e.strength(c))
            .collect::<Vec<_>>()
    };
    if gated.matches() != reference.matches()
        || gated.classes().ne(reference.classes())
        || strengths(&gated) != strengths(&reference)
    {
        return Err(format!(
            "{req:?}\n  gated:     {:?}\n  reference: {:?}",
            gated.matches(),
            reference.matches()
        ));
    }
    Ok(gated)
}

/// Every shape a sample is sent in: as the evaluation sends it; with its query logged apart
/// from the path; and with the target repeated as the referer and as the user agent, so the
/// header matchers see attack text too.
fn shapes(s: &Sample) -> Vec<Request<'_>> {
    let base = s.request();
    let mut out = vec![base];
    if let Some((path, query)) = s.target.split_once('?') {
        out.push(Request {
            target: path,
            query: Some(query),
            ..base
        });
    }
    out.push(Request {
        referer: Some(&s.target),
        user_agent: Some(&s.target),
        ..base
    });
    out
}

#[test]
fn corpus_gated_equals_reference() {
    let samples: Vec<Sample> = attack_samples()
        .into_iter()
        .chain(benign_samples())
        .collect();
    let mut requests = 0;
    let mut flagged = 0;
    let mut failures = Vec::new();
    for s in &samples {
        for req in shapes(s) {
            requests += 1;
            match compare(&req) {
                Ok(e) if !e.is_empty() => flagged += 1,
                Ok(_) => {}
                Err(diff) => failures.push(diff),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests differ:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    // The corpus exercises both outcomes heavily.
    assert!(
        requests > 40_000 && flagged > 1_500,
        "{requests} requests, {flagged} flagged"
    );
}

/// Attack payloads from the corpus, whole.
fn payloads() -> &'static [String] {
    static P: OnceLock<Vec<String>> = OnceLock::new();
    P.get_or_init(|| {
        ATTACKS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.splitn(3, '\t').nth(2))
            .map(str::to_owned)
            .collect()
    })
}

/// One piece of a generated query value: a benign word, or a slice of an attack payload
/// (whole, or cut at arbitrary character boundaries, so that half-literals and partial
/// requirements occur).
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (0..WORDS.len()).prop_map(|i| WORDS[i].to_owned()),
        2 => (0..payloads().len()).prop_map(|i| payloads()[i].clone()),
        3 => (0..payloads().len(), any::<u16>(), any::<u16>()).prop_map(|(i, a, b)| {
            let p: Vec<char> = payloads()[i].chars().collect();
            let (a, b) = (usize::from(a) % (p.len() + 1), usize::from(b) % (p.len() + 1));
            p[a.min(b)..a.max(b)].iter().collect()
        }),
        1 => "[ -~]{0,12}",
        1 => prop::sample::select(vec!["'", "\"", "<", ">", "/*", "*/", "--", "${", "{{", "}}", "../", "://", ";", "|", "`", "%00", "%c0%af", "%u002e", "%", "\u{ad}"]).prop_map(str::to_owned),
    ]
}

/// A query value: fragments joined by spaces or nothing, in one of the encodings the
/// evaluation uses (or none at all).
fn value() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(fragment(), 1..5),
        any::<bool>(),
        0u8..5,
    )
        .prop_map(|(parts, spaced, encoding)| {
            let raw = parts.join(if spaced { " " } else { "" });
            match encoding {
                0 => encode_form(&raw),
                1 => encode_minimal(&raw),
                2 => encode_double(&raw),
                3 => encode_form(&mixed_case(&raw)),
                _ => raw.replace(['&', '#'], ""),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn generated_queries_gated_equals_reference(
        path in prop::sample::select(vec!["/", "/search", "/api/v1/items", "/index.php", "/cgi-bin/x", "/view"]),
        params in prop::collection::vec(("[a-z_]{1,8}", value()), 1..4),
        bare in prop::option::of(value()),
        ua_attack in prop::option::of(value()),
    ) {
        let mut target = path.to_owned();
        for (i, (name, value)) in params.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(name);
            target.push('=');
            target.push_str(value);
        }
        if let Some(bare) = &bare {
            target.push('&');
            target.push_str(bare);
        }
        let sample = Sample {
            label: None,
            method: "GET".into(),
            target,
            user_agent: ua_attack.unwrap_or_else(|| BROWSER_UA.to_owned()),
        };
        for req in shapes(&sample) {
            if let Err(diff) = compare(&req) {
                prop_assert!(false, "{}", diff);
            }
        }
    }

    #[test]
    fn arbitrary_targets_gated_equals_reference(target in "\\PC{0,160}", ua in "\\PC{0,60}") {
        let req = Request {
            method: "GET",
            target: &target,
            user_agent: Some(&ua),
            referer: Some(&target),
            ..Request::default()
        };
        if let Err(diff) = compare(&req) {
            prop_assert!(false, "{}", diff);
        }
    }
}
