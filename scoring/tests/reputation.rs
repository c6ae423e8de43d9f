//! Reputation lists end to end: an address on a configured list gets the feature, the default
//! rule's monitor decision and the list's name among its reasons; others do not.

mod support;

use vigil_scoring::reputation::ReputationSource;
use vigil_scoring::{Scorer, ScoringConfig};

#[test]
fn an_address_on_a_list_is_monitored_with_the_lists_name() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("firehol_level1.netset");
    std::fs::write(&list, "# FireHOL-style netset\n203.0.113.0/24\n").unwrap();
    let mut cfg = ScoringConfig::default();
    cfg.models.enabled = false;
    cfg.reputation = vec![ReputationSource {
        name: "firehol_level1".into(),
        path: list,
        format: "netset".into(),
        refresh_secs: 300,
    }];
    let mut scorer = Scorer::new(&cfg).unwrap();

    let mut text = String::new();
    for (i, ip) in ["203.0.113.9", "198.51.100.4"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        text.push_str(
            &serde_json::json!({
                "timestamp": 1_795_500_000.0 + i as f64, "client_ip": ip, "method": "GET",
                "path": "/api/v1/products", "status": 200, "user_agent": "Mozilla/5.0",
            })
            .to_string(),
        );
        text.push('\n');
    }
    let out = scorer
        .score_batch(&support::events_from_json_lines(&text))
        .unwrap();
    let got: Vec<_> = out
        .decisions
        .iter()
        .map(|d| (d.subject.key(), d.action.as_str(), d.reasons.clone()))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let (subject, action, reasons) = &got[0];
    assert_eq!((subject.as_str(), *action), ("ip:203.0.113.9", "monitor"));
    assert!(
        reasons.contains(&"rule:bad_reputation".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"reputation:firehol_level1".to_string()),
        "{reasons:?}"
    );
}

#[test]
fn a_missing_list_is_a_config_error_naming_its_key() {
    let cfg = ScoringConfig {
        reputation: vec![ReputationSource {
            name: "gone".into(),
            path: "/nonexistent/list.txt".into(),
            format: "plain".into(),
            refresh_secs: 300,
        }],
        ..ScoringConfig::default()
    };
    let e = Scorer::new(&cfg).err().expect("an error").to_string();
    assert!(e.contains("scoring.reputation[0].path"), "{e}");
}
