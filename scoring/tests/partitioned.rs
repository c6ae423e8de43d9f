//! `Scorer::score_partitioned`, the scale-out `score` role's entry: a row updates only the
//! subject it stands for, and rows read behind the watermark are still counted.

mod support;

use vigil_enforce::SubjectKind;
use vigil_scoring::{Scorer, ScoringConfig};

const T0: f64 = 1_795_500_000.0;

fn line(t: f64, ip: &str, identity: &str) -> String {
    serde_json::json!({
        "timestamp": T0 + t, "client_ip": ip, "identity": identity, "method": "GET",
        "path": "/api/v1/products", "status": 200, "user_agent": "curl/8.5.0",
    })
    .to_string()
}

fn tracked(s: &Scorer, kind: SubjectKind, id: &str) -> bool {
    s.store().find(kind, id).is_some()
}

#[test]
fn a_row_updates_only_the_subject_it_stands_for() {
    let mut s = Scorer::new(&ScoringConfig::default()).unwrap();
    let events = support::events_from_json_lines(&format!(
        "{}\n{}\n",
        line(0.0, "10.0.0.1", "alice"),
        line(1.0, "10.0.0.2", "bob")
    ));
    // row 0 is the copy for its ip, row 1 the copy for its identity (KINDS order: identity,
    // session, ip, api_key, device)
    s.score_partitioned(&events, Some(&[2, 0]), true).unwrap();
    assert!(tracked(&s, SubjectKind::Ip, "10.0.0.1"));
    assert!(
        !tracked(&s, SubjectKind::Identity, "alice"),
        "another owner's"
    );
    assert!(tracked(&s, SubjectKind::Identity, "bob"));
    assert!(!tracked(&s, SubjectKind::Ip, "10.0.0.2"), "another owner's");
    assert_eq!(s.store().tracked(), [1, 0, 1, 0, 0]);

    let e = s
        .score_partitioned(&events, Some(&[2]), true)
        .expect_err("one kind per row");
    assert!(
        e.to_string().contains("1 subject kinds for 2 events"),
        "{e}"
    );
}

#[test]
fn in_order_rows_behind_the_watermark_still_count() {
    let mut s = Scorer::new(&ScoringConfig::default()).unwrap();
    let now = support::events_from_json_lines(&line(600.0, "10.0.0.1", "alice"));
    s.score_batch(&now).unwrap();
    // ten minutes behind the watermark: late for the default 30 s lateness ...
    let behind = support::events_from_json_lines(&line(0.0, "10.0.0.9", "carol"));
    s.score_batch(&behind).unwrap();
    assert!(!tracked(&s, SubjectKind::Ip, "10.0.0.9"), "refused as late");
    // ... unless its partition vouches for the order (a backlog, a takeover's replay)
    s.score_partitioned(&behind, Some(&[2]), true).unwrap();
    assert!(tracked(&s, SubjectKind::Ip, "10.0.0.9"));
    assert!(!tracked(&s, SubjectKind::Identity, "carol"));
}
