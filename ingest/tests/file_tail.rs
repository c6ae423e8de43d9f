//! The file source: tailing, malformed lines, rotation (rename + create), truncation, and a
//! restart that resumes from the checkpoint without skipping or repeating lines.

mod support;

use std::io::Write;
use std::path::Path;
use support::Harness;
use vigil_ingest::formats::FormatName;
use vigil_ingest::source::file::{FileSourceConfig, StartAt};
use vigil_ingest::source::{SourceConfig, SourceKind};

fn line(i: usize) -> String {
    format!(
        "203.0.113.{} - user-{i} [24/Nov/2026:10:{:02}:{:02} +0000] \"GET /api/v1/items/{i} HTTP/1.1\" 200 {} \"-\" \"curl/8.5.0\" 0.010 0.008\n",
        i % 250,
        (i / 60) % 60,
        i % 60,
        100 + i
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
}

fn config(path: &Path) -> SourceConfig {
    SourceConfig {
        format: FormatName::Nginx,
        fields: Default::default(),
        kind: SourceKind::File(FileSourceConfig {
            paths: vec![path.to_path_buf()],
            start_at: StartAt::Beginning,
            poll_interval_ms: 20,
            read_bytes: 4096,
            rotate_wait_ms: 300,
        }),
    }
}

fn identities(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["identity"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_rotates_truncates_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("access.log");
    for i in 0..100 {
        append(&log, &line(i));
    }
    append(&log, "garbage that is not a log line\n");

    let h = Harness::start("edge", &config(&log), &data);
    h.wait_for(10, "first 100 lines", |h| h.event_count() == 100)
        .await;
    let dead = h.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "malformed");
    assert!(dead[0].origin.ends_with(&format!(
        ":{}",
        (0..100).map(|i| line(i).len()).sum::<usize>()
    )));

    // Lines written while tailing, one of them in two writes (a partial line is held back).
    let l100 = line(100);
    let (a, b) = l100.split_at(20);
    append(&log, a);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(h.event_count(), 100, "a partial line is not an event");
    append(&log, b);
    h.wait_for(10, "line 100", |h| h.event_count() == 101).await;

    // Rotation: rename and create; the tail of the old file is read before the new one.
    let rotated = dir.path().join("access.log.1");
    append(&log, &line(101));
    std::fs::rename(&log, &rotated).unwrap();
    for i in 103..110 {
        append(&log, &line(i));
    }
    // The old writer appends after the rename, once the tail has already seen it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    append(&rotated, &line(102));
    h.wait_for(10, "rotation", |h| h.event_count() == 110).await;

    // Stop and restart: nothing is read twice.
    let first = h.stop().await;
    let mut ids = identities(&first);
    for i in 110..120 {
        append(&log, &line(i));
    }
    let h = Harness::start("edge", &config(&log), &data);
    h.wait_for(10, "lines after restart", |h| h.event_count() == 10)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        h.event_count(),
        10,
        "resumed from the checkpoint, nothing repeated"
    );

    // Truncation (copytruncate): the file is read again from its start.
    std::fs::write(&log, "").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for i in 120..125 {
        append(&log, &line(i));
    }
    h.wait_for(10, "lines after truncation", |h| h.event_count() == 15)
        .await;
    let second = h.stop().await;
    ids.extend(identities(&second));

    let expected: Vec<String> = (0..125).map(|i| format!("user-{i}")).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|s| s[5..].parse::<u32>().unwrap());
    assert_eq!(sorted, expected, "every line exactly once");
    let event_ids: std::collections::HashSet<&str> = first
        .iter()
        .chain(&second)
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        event_ids.len(),
        125,
        "event ids are unique across files and restarts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_history_and_overlong_lines_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    for i in 0..10 {
        append(&log, &line(i));
    }
    let mut cfg = config(&log);
    if let SourceKind::File(f) = &mut cfg.kind {
        f.start_at = StartAt::End;
    }
    let pipeline = vigil_ingest::pipeline::PipelineConfig {
        batch_max_delay_ms: 20,
        max_line_bytes: 1024,
        ..Default::default()
    };
    let h = Harness::start_with("edge", &cfg, &dir.path().join("data"), pipeline);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    append(&log, &format!("{}\n", "x".repeat(10_000)));
    append(&log, &line(10));
    h.wait_for(10, "new line", |h| h.event_count() == 1).await;
    h.wait_for(10, "dead letter", |h| {
        h.stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    let dead = h.dead_letters();
    assert_eq!(dead[0].reason, "line_too_long");
    assert!(dead[0].line_truncated);
    let events = h.stop().await;
    assert_eq!(identities(&events), vec!["user-10"]);
}
