//! `vigil replay`: parse log files offline, with a progress bar on a terminal and a summary.
//! [`read_logs`] is the reading half, shared with `vigil features`.

use crate::Output;
use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use vigil_ingest::dead_letter::DeadLetterSink;
use vigil_ingest::event::{EventBatchBuilder, write_ndjson};
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::Normalizer;
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};

/// The log input shared by `vigil replay` and `vigil features`: files, their format, the
/// config whose `[normalize]`/`[pipeline]`/`data_dir` apply, and where dead letters go.
#[derive(Args)]
pub struct LogInputArgs {
    /// Log format of the files.
    #[arg(long, short, value_parser = crate::parse_format, default_value = "auto")]
    pub format: FormatName,
    /// Gateway (source) name recorded in the events.
    #[arg(long, default_value = "replay")]
    pub gateway: String,
    /// Config file whose `[normalize]`, `[pipeline]`, `[scoring]` and `data_dir` apply.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write every dead letter (line, reason, position) as NDJSON. Default:
    /// `<data_dir>/dead-letters.ndjson`.
    #[arg(long)]
    pub dead_letters_out: Option<PathBuf>,
    /// Log files; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    input: LogInputArgs,
    /// Summary format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Write every normalized event as NDJSON (the `events` schema's field names).
    #[arg(long)]
    events_out: Option<PathBuf>,
    /// Write every decision as NDJSON (the decision record: subject, action, score, reasons,
    /// issued_at, expires_at).
    #[arg(long)]
    decisions_out: Option<PathBuf>,
    /// Parse only: no features, rules or decisions.
    #[arg(long)]
    no_scoring: bool,
    /// Store the events (and scores and decisions) in this data directory's store
    /// (`DIR/store`), for `vigil sql --data-dir DIR` and `vigil backtest --data-dir DIR`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    events_in: u64,
    events_parsed: u64,
    dead_lettered: u64,
    elapsed_secs: f64,
    events_per_sec: f64,
    bytes_read: u64,
    dead_letter_reasons: BTreeMap<&'static str, u64>,
    dead_letters_path: String,
    /// Decisions issued, by action (absent with `--no-scoring`).
    #[serde(skip_serializing_if = "Option::is_none")]
    decisions: Option<BTreeMap<&'static str, u64>>,
    /// Subjects tracked at the end, by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects_tracked: Option<BTreeMap<&'static str, usize>>,
    /// Of those, the subjects seen once (kept as their one event, not a full state).
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects_seen_once: Option<usize>,
    /// Of the others, the subjects with a record of rare signals (attack evidence, step-up
    /// challenges, browser mismatches).
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects_with_rare_signals: Option<usize>,
    /// Bytes held by the feature state of the tracked subjects, index included.
    #[serde(skip_serializing_if = "Option::is_none")]
    feature_state_bytes: Option<usize>,
}

/// Scoring during a replay: the scorer, decision counts and the decisions file.
struct ReplayScoring {
    scorer: vigil_scoring::Scorer,
    by_action: BTreeMap<&'static str, u64>,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl ReplayScoring {
    fn score(
        &mut self,
        batch: &arrow::array::RecordBatch,
        store: Option<&vigil_ingest::store::Store>,
    ) -> Result<()> {
        let out = self.scorer.score_batch(batch)?;
        if let Some(store) = store {
            if let Some(scores) = out.scores.filter(|s| s.num_rows() > 0) {
                store.append("scores", scores, None)?;
            }
            if !out.decisions.is_empty() {
                let rows = out
                    .decisions
                    .iter()
                    .map(|d| (d, vigil_scoring::tables::Change::Issue));
                store.append(
                    "decisions",
                    vigil_scoring::tables::decisions_batch(rows)?,
                    None,
                )?;
            }
        }
        for d in &out.decisions {
            *self.by_action.entry(d.action.as_str()).or_default() += 1;
            if let Some(w) = self.out.as_mut() {
                w.write_all(d.to_json().as_bytes())?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

/// What reading the log input produced, for the summaries.
pub struct ReadOutcome {
    pub stats: Arc<IngestStats>,
    pub bytes_read: u64,
    pub dead_letters_path: PathBuf,
}

/// Reads, parses and normalizes every file of `input` in order, handing each event batch (at
/// most `pipeline.batch_max_events` events) to `on_batch`; dead letters go to their sink. The
/// batches hold every column of the events table, or only `columns` when given (those the
/// caller reads: the others are not built). A progress bar is drawn on a terminal when
/// `progress` is set.
pub fn read_logs(
    input: &LogInputArgs,
    cfg: &crate::config::Config,
    columns: Option<&[&str]>,
    progress: bool,
    mut on_batch: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<ReadOutcome> {
    let stats = Arc::new(IngestStats::default());
    let mut parser = Parser::new(
        &input.gateway,
        input.format,
        FormatOptions::default(),
        Normalizer::new(cfg.normalize.clone())?,
        stats.clone(),
    )?;
    let dl_path = input
        .dead_letters_out
        .clone()
        .unwrap_or_else(|| cfg.dead_letters.file_path(&cfg.data_dir));
    let dead_sink = DeadLetterSink::file(&dl_path)?;
    let total_bytes: u64 = input
        .files
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let progress = (progress && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(total_bytes);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let batch_max = cfg.pipeline.batch_max_events;
    let rows = batch_max.min(65_536);
    let mut builder = match columns {
        Some(columns) => {
            EventBatchBuilder::with_columns(rows, columns).map_err(|e| anyhow::anyhow!(e))?
        }
        None => EventBatchBuilder::with_capacity(rows),
    };
    let mut dead = Vec::new();
    let mut bytes_read = 0u64;
    for path in &input.files {
        let (mut reader, stream): (Box<dyn Read>, String) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdin().lock()), "stdin".to_string())
        } else {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            (Box::new(f), format!("file:{}", path.display()))
        };
        let stream: Arc<str> = stream.into();
        let mut splitter = LineSplitter::new(0, cfg.pipeline.max_line_bytes);
        let mut buf = vec![0u8; 1 << 20];
        let mut seed: Option<u64> = None;
        let mut head: Vec<u8> = Vec::new();
        loop {
            let n = reader
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            bytes_read += n as u64;
            let data: &[u8] = if seed.is_none() {
                // Event ids are seeded by the stream's first line (as the file source does).
                head.extend_from_slice(&buf[..n]);
                match memchr_newline(&head) {
                    Some(i) => {
                        seed = Some(vigil_ingest::source::content_seed(
                            &input.gateway,
                            &head[..i],
                        ))
                    }
                    None if n == 0 => {
                        seed = Some(vigil_ingest::source::content_seed(&input.gateway, &head))
                    }
                    None => continue,
                }
                &head
            } else {
                &buf[..n]
            };
            let mut chunk = LineChunk::new(stream.clone(), seed.unwrap_or_default());
            splitter.push(data, &mut chunk);
            if n == 0 {
                splitter.finish(&mut chunk);
            }
            head.clear();
            parser.parse_chunk(&chunk, &mut builder, &mut dead);
            if builder.len() >= batch_max || n == 0 {
                on_batch(&builder.finish())?;
            }
            if !dead.is_empty() {
                dead_sink.write_blocking(&dead)?;
                dead.clear();
            }
            if let Some(pb) = &progress {
                pb.set_position(bytes_read);
                pb.set_message(format!("{} events", stats.events.load(Ordering::Relaxed)));
            }
            if n == 0 {
                break;
            }
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    Ok(ReadOutcome {
        stats,
        bytes_read,
        dead_letters_path: dl_path,
    })
}

/// Opens `path` for writing, buffered, naming it in the error.
pub fn create_buffered(path: &std::path::Path) -> Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    ))
}

pub fn replay(args: ReplayArgs) -> Result<()> {
    let mut cfg = crate::config::Config::load(args.input.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        // the data directory holds the dead letters too (unless --dead-letters-out says)
        cfg.data_dir = dir.clone();
    }
    let mut events_out = args
        .events_out
        .as_deref()
        .map(create_buffered)
        .transpose()?;
    let mut scoring = if args.no_scoring {
        None
    } else {
        Some(ReplayScoring {
            scorer: vigil_scoring::Scorer::new(&cfg.scoring)?,
            by_action: BTreeMap::new(),
            out: args
                .decisions_out
                .as_deref()
                .map(create_buffered)
                .transpose()?,
        })
    };
    let store = match &args.data_dir {
        Some(dir) => {
            let store_cfg = vigil_ingest::store::StoreConfig {
                retention: None,
                ..cfg.store.store_config(dir)
            };
            Some(
                vigil_ingest::store::Store::open(store_cfg, crate::run::table_specs())
                    .with_context(|| format!("cannot open the store in {}", dir.display()))?,
            )
        }
        None => None,
    };
    let store_stop = tokio_util::sync::CancellationToken::new();
    let maintenance = store
        .as_ref()
        .map(|s| s.spawn_maintenance(std::time::Duration::from_millis(200), store_stop.clone()));
    let consumer_store = store.clone();
    // Parsing (this thread) and what follows it (the NDJSON writer, the scorer and the store,
    // on their own thread) overlap; a few batches in flight at most.
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
    let consumer = std::thread::Builder::new()
        .name("vigil-score".into())
        .spawn(move || -> Result<Option<ReplayScoring>> {
            for batch in rx {
                if let Some(w) = events_out.as_mut() {
                    write_ndjson(&mut *w, &batch)?;
                }
                if let Some(s) = scoring.as_mut() {
                    s.score(&batch, consumer_store.as_deref())?;
                }
                if let Some(store) = &consumer_store {
                    store.append("events", batch, None)?;
                }
            }
            if let Some(mut w) = events_out {
                w.flush()?;
            }
            if let Some(w) = scoring.as_mut().and_then(|s| s.out.as_mut()) {
                w.flush()?;
            }
            Ok(scoring)
        })
        .context("cannot start the scoring thread")?;
    // When scoring alone reads the events, the batches carry only the columns it reads.
    // `--no-scoring` with no output still builds every column: it is the parse-only baseline
    // of scripts/bench-score, parsing into the whole events table.
    let columns = (args.events_out.is_none() && args.data_dir.is_none() && !args.no_scoring)
        .then_some(vigil_scoring::scorer::EVENT_COLUMNS);
    let read = read_logs(
        &args.input,
        &cfg,
        columns,
        args.output == Output::Text,
        |batch| {
            tx.send(batch.clone())
                .map_err(|_| anyhow::anyhow!("the scoring stage stopped"))
        },
    );
    drop(tx);
    // the consumer's own error explains a read that stopped because the consumer did
    let scoring = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("the scoring stage panicked"))??;
    let read = read?;
    if let Some(store) = &store {
        // everything to Parquet before the summary: the data directory is complete
        store.flush()?;
        store_stop.cancel();
        if let Some(t) = maintenance {
            let _ = t.join();
        }
    }
    let stats = &read.stats;
    let elapsed = started.elapsed().as_secs_f64();
    let lines = stats.lines.load(Ordering::Relaxed);
    let summary = Summary {
        files: args.input.files.len(),
        events_in: lines,
        events_parsed: stats.events.load(Ordering::Relaxed),
        dead_lettered: stats.dead_letters.load(Ordering::Relaxed),
        elapsed_secs: elapsed,
        events_per_sec: if elapsed > 0.0 {
            lines as f64 / elapsed
        } else {
            0.0
        },
        bytes_read: read.bytes_read,
        dead_letter_reasons: stats.reason_counts().into_iter().collect(),
        dead_letters_path: read.dead_letters_path.display().to_string(),
        decisions: scoring.as_ref().map(|s| s.by_action.clone()),
        subjects_tracked: scoring.as_ref().map(|s| {
            let n = s.scorer.store().tracked();
            vigil_scoring::features::KINDS
                .iter()
                .zip(n)
                .map(|(k, n)| (k.as_str(), n))
                .collect()
        }),
        subjects_seen_once: scoring.as_ref().map(|s| s.scorer.store().seen_once()),
        subjects_with_rare_signals: scoring
            .as_ref()
            .map(|s| s.scorer.store().with_rare_signals()),
        feature_state_bytes: scoring.as_ref().map(|s| s.scorer.store().bytes()),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Text => {
            println!(
                "{} lines: {} events, {} dead letters in {:.2}s ({:.0} lines/s)",
                summary.events_in,
                summary.events_parsed,
                summary.dead_lettered,
                elapsed,
                summary.events_per_sec
            );
            for (reason, n) in &summary.dead_letter_reasons {
                println!("  {reason}: {n}");
            }
            if let Some(d) = &summary.decisions {
                let list: Vec<String> = d.iter().map(|(a, n)| format!("{a} {n}")).collect();
                println!(
                    "decisions: {}",
                    if list.is_empty() {
                        "none".into()
                    } else {
                        list.join(", ")
                    }
                );
            }
            if summary.dead_lettered > 0 {
                println!("dead letters: {}", summary.dead_letters_path);
            }
        }
    }
    Ok(())
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}
