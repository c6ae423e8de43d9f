//! `vigil features`: the feature rows the scorer computes, written to a file — what the model
//! training pipeline (`models/train.py`) learns from, and a way to look at what the rules see.
//!
//! The log files are read exactly as `vigil replay` reads them ([`crate::replay::read_logs`]),
//! scored by the same [`vigil_scoring::Scorer`] (so the rows are the ones rules and models are
//! evaluated on in production), and every feature row is written: `kind`, `subject`,
//! `timestamp`, then every feature column of the catalogue. With `--labels` (the file
//! `vigil simulate --labels-out` writes), two columns are added: `label` (1 for a row of a
//! labelled subject at or after its attack start, else 0) and `scenario` (the label's scenario
//! on those rows, else null).

use crate::replay::{LogInputArgs, create_buffered, read_logs};
use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, Int8Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vigil_scoring::parquet::arrow::ArrowWriter;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeaturesFormat {
    /// Apache Parquet (one file, row groups as the rows come).
    Parquet,
    /// One JSON object per row.
    Ndjson,
}

#[derive(Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    input: LogInputArgs,
    /// File format of `--out`.
    #[arg(long, value_enum, default_value = "parquet")]
    output: FeaturesFormat,
    /// Where the feature rows go.
    #[arg(long)]
    out: PathBuf,
    /// Labels file (NDJSON, as `vigil simulate --labels-out` writes): adds `label` and
    /// `scenario` columns.
    #[arg(long)]
    labels: Option<PathBuf>,
}

/// Ground truth by `(kind, id)`: scenario and attack start.
struct Labels(HashMap<(String, String), (String, i64)>);

#[derive(serde::Deserialize)]
struct LabelLine {
    kind: String,
    id: String,
    scenario: String,
    start_us: i64,
}

impl Labels {
    fn read(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open labels file {}", path.display()))?;
        let mut map = HashMap::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let l: LabelLine = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a label", path.display(), i + 1))?;
            let start = map
                .entry((l.kind, l.id))
                .or_insert((l.scenario, l.start_us));
            start.1 = start.1.min(l.start_us);
        }
        Ok(Self(map))
    }

    /// `batch` with the `label` and `scenario` columns appended.
    fn annotate(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("feature batch without `{name}`"))
        };
        let kind = col("kind")?.as_any().downcast_ref::<StringArray>();
        let subject = col("subject")?.as_any().downcast_ref::<StringArray>();
        let ts = col("timestamp")?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>();
        let (Some(kind), Some(subject), Some(ts)) = (kind, subject, ts) else {
            bail!("feature batch columns of unexpected types");
        };
        let mut label = Vec::with_capacity(batch.num_rows());
        let mut scenario = Vec::with_capacity(batch.num_rows());
        let mut key = (String::new(), String::new());
        for row in 0..batch.num_rows() {
            key.0.clear();
            key.0.push_str(kind.value(row));
            key.1.clear();
            key.1.push_str(subject.value(row));
            match self.0.get(&key) {
                Some((s, start)) if ts.value(row) >= *start => {
                    label.push(1i8);
                    scenario.push(Some(s.as_str()));
                }
                _ => {
                    label.push(0);
                    scenario.push(None);
                }
            }
        }
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols.push(Arc::new(Int8Array::from(label)));
        cols.push(Arc::new(StringArray::from(scenario)));
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

enum Sink {
    Parquet(ArrowWriter<std::io::BufWriter<std::fs::File>>),
    Ndjson(arrow::json::LineDelimitedWriter<std::io::BufWriter<std::fs::File>>),
}

pub fn features(args: FeaturesArgs) -> Result<()> {
    let cfg = crate::config::Config::load(args.input.config.as_deref())?;
    let mut scorer = vigil_scoring::Scorer::new(&cfg.scoring)?;
    let labels = args.labels.as_deref().map(Labels::read).transpose()?;
    let mut schema = scorer.features_schema().clone();
    if labels.is_some() {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
        fields.push(Field::new("label", DataType::Int8, false));
        fields.push(Field::new("scenario", DataType::Utf8, true));
        schema = Arc::new(Schema::new(fields));
    }
    let file = create_buffered(&args.out)?;
    let mut sink = match args.output {
        FeaturesFormat::Parquet => Sink::Parquet(
            ArrowWriter::try_new(file, schema.clone(), None)
                .with_context(|| format!("cannot write parquet to {}", args.out.display()))?,
        ),
        FeaturesFormat::Ndjson => Sink::Ndjson(arrow::json::LineDelimitedWriter::new(file)),
    };
    let mut rows = 0u64;
    // the scorer is the only reader of the events: only its columns are built
    let columns = Some(vigil_scoring::scorer::EVENT_COLUMNS);
    let read = read_logs(&args.input, &cfg, columns, true, |events| {
        let out = scorer.score_batch(events)?;
        for batch in &out.features {
            let batch = match &labels {
                Some(l) => l.annotate(batch, &schema)?,
                None => batch.clone(),
            };
            rows += batch.num_rows() as u64;
            match &mut sink {
                Sink::Parquet(w) => w.write(&batch)?,
                Sink::Ndjson(w) => w.write(&batch)?,
            }
        }
        Ok(())
    })?;
    match sink {
        Sink::Parquet(w) => {
            w.into_inner()
                .with_context(|| format!("finishing {}", args.out.display()))?
                .flush()
                .with_context(|| format!("finishing {}", args.out.display()))?;
        }
        Sink::Ndjson(mut w) => {
            w.finish()?;
            w.into_inner()
                .flush()
                .with_context(|| format!("finishing {}", args.out.display()))?;
        }
    }
    tracing::info!(
        events = read.stats.events.load(Ordering::Relaxed),
        dead_letters = read.stats.dead_letters.load(Ordering::Relaxed),
        rows,
        out = %args.out.display(),
        "features written"
    );
    Ok(())
}
