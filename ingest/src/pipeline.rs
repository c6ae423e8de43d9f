//! From chunks of raw lines to acknowledged batches of events.
//!
//! Sources hand [`LineChunk`]s to a parse task through a bounded channel (a full channel blocks
//! the source: backpressure, not buffering). The parse task appends events to an Arrow builder
//! and emits an [`EventBatch`] when it holds `batch_max_events` rows, when its oldest row is
//! `batch_max_delay_ms` old, or at once when no chunk is waiting and the consumer has taken every
//! batch (a quiet stream's line is not held back; a busy pipeline batches up). Dead letters are
//! written to their sink before the batch leaves.
//! Each chunk carries an [`Ack`]; the downstream consumer calls [`EventBatch::ack`] once it has
//! handled the batch, and only then does a source commit (Kafka offsets, file checkpoints, the
//! HTTP response). Losing the batch before that means it is read again: at-least-once.

use crate::dead_letter::{DeadLetter, DeadLetterSink, MAX_RAW_BYTES};
use crate::error::{IngestError, ParseError, ParseErrorKind};
use crate::event::{EventBatchBuilder, LineOrigin};
use crate::formats::{FormatName, FormatOptions, LogFormat};
use crate::normalize::Normalizer;
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `[pipeline]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most events in one batch. Default 8192.
    pub batch_max_events: usize,
    /// Longest a parsed event waits for its batch to fill. Default 250 ms.
    pub batch_max_delay_ms: u64,
    /// Chunks queued between a source and its parse task; a full queue blocks the source.
    /// Default 16.
    pub queue_chunks: usize,
    /// Longest line read; longer lines are dead-lettered (`line_too_long`). Default 1 MiB (an
    /// OTLP export of a few hundred records is one line).
    pub max_line_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 8192,
            batch_max_delay_ms: 250,
            queue_chunks: 16,
            max_line_bytes: 1024 * 1024,
        }
    }
}

impl PipelineConfig {
    pub fn validate(&self) -> Result<(), IngestError> {
        let check = |ok: bool, key: &str, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(IngestError::config(format!("pipeline.{key}"), msg))
            }
        };
        check(
            self.batch_max_events > 0,
            "batch_max_events",
            "must be at least 1",
        )?;
        check(
            self.batch_max_delay_ms > 0,
            "batch_max_delay_ms",
            "must be at least 1",
        )?;
        check(self.queue_chunks > 0, "queue_chunks", "must be at least 1")?;
        check(
            self.max_line_bytes >= 256,
            "max_line_bytes",
            "must be at least 256",
        )
    }
}

/// What the parse stage made of one chunk; handed to the chunk's [`Ack`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub lines: u64,
    pub events: u64,
    pub dead_letters: u64,
}

/// Called once the events of a chunk have been handled downstream (and its dead letters
/// written). Dropping an `Ack` without calling it means "not handled": nothing is committed.
pub struct Ack(Box<dyn FnOnce(ChunkOutcome) + Send>);

impl Ack {
    pub fn new(f: impl FnOnce(ChunkOutcome) + Send + 'static) -> Self {
        Self(Box::new(f))
    }
    pub fn done(self, outcome: ChunkOutcome) {
        (self.0)(outcome)
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// One line of a chunk: `data[start..end]`, at `position` of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSpan {
    pub start: usize,
    pub end: usize,
    pub position: u64,
    pub sub: u32,
    /// The line was longer than `max_line_bytes`; `data` holds only its beginning.
    pub truncated: bool,
}

/// Lines read from one stream, in order.
#[derive(Debug)]
pub struct LineChunk {
    /// Human-readable stream, e.g. `file:/var/log/nginx/access.log`.
    pub stream: Arc<str>,
    /// See [`LineOrigin::id_seed`].
    pub id_seed: u64,
    pub data: Vec<u8>,
    pub lines: Vec<LineSpan>,
    /// Parse with this format instead of the source's (HTTP push chooses per request).
    pub format: Option<FormatName>,
    pub ack: Option<Ack>,
}

/// Splits a byte stream into lines, remembering each line's offset. Lines longer than the
/// limit are cut and flagged rather than buffered without bound; `\r\n` is accepted.
#[derive(Debug)]
pub struct LineSplitter {
    /// The current (incomplete) line, or its kept beginning when it is over-long.
    buf: Vec<u8>,
    /// Stream offset of the current line's first byte.
    line_start: u64,
    /// Bytes of the current line seen so far (may exceed `buf.len()`).
    line_len: u64,
    max_line: usize,
    keep: usize,
}

impl LineSplitter {
    pub fn new(start_offset: u64, max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            line_start: start_offset,
            line_len: 0,
            max_line,
            keep: max_line.max(MAX_RAW_BYTES) + 1,
        }
    }

    /// Stream offset just past the last complete line handed out.
    pub fn committed_offset(&self) -> u64 {
        self.line_start
    }

    /// Bytes seen of an incomplete last line.
    pub fn pending(&self) -> u64 {
        self.line_len
    }

    fn take_part(&mut self, part: &[u8]) {
        let room = self.keep.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&part[..part.len().min(room)]);
        self.line_len += part.len() as u64;
    }

    fn emit(&mut self, chunk: &mut LineChunk) {
        let truncated = self.line_len > self.max_line as u64;
        let s = chunk.data.len();
        chunk.data.extend_from_slice(&self.buf);
        // Only this line's own `\r`: an empty line must not take the previous line's last
        // byte (found by `fuzz/`: `a\r\r\n\n` gave a span ending before it started).
        if !truncated && self.buf.last() == Some(&b'\r') {
            chunk.data.pop();
        }
        chunk.lines.push(LineSpan {
            start: s,
            end: chunk.data.len(),
            position: self.line_start,
            sub: 0,
            truncated,
        });
        self.buf.clear();
    }

    /// Adds `bytes` and moves every complete line into `chunk`.
    pub fn push(&mut self, bytes: &[u8], chunk: &mut LineChunk) {
        let mut rest = bytes;
        // A line begun in an earlier push is finished through the buffer.
        if self.line_len > 0 {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.take_part(rest);
                return;
            };
            self.take_part(&rest[..i]);
            self.emit(chunk);
            self.line_start += self.line_len + 1;
            self.line_len = 0;
            rest = &rest[i + 1..];
        }
        // The lines that end in `rest` go into the chunk in one copy (one per line through the
        // buffer cost the parse thread a fifth of its time in `memcpy`); each span leaves out
        // its newline and `\r`, and an over-long line's span keeps what `emit` would.
        if let Some(last) = memchr::memrchr(b'\n', rest) {
            let block = &rest[..=last];
            let base = chunk.data.len();
            chunk.data.extend_from_slice(block);
            let mut start = 0;
            for i in memchr::memchr_iter(b'\n', block) {
                let len = i - start;
                let truncated = len > self.max_line;
                let end = if truncated {
                    start + len.min(self.keep)
                } else if len > 0 && block[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                chunk.lines.push(LineSpan {
                    start: base + start,
                    end: base + end,
                    position: self.line_start,
                    sub: 0,
                    truncated,
                });
                self.line_start += len as u64 + 1;
                start = i + 1;
            }
            rest = &rest[last + 1..];
        }
        self.take_part(rest);
    }

    /// Ends the stream: a last line without a newline is a line too.
    pub fn finish(&mut self, chunk: &mut LineChunk) {
        if self.line_len > 0 {
            self.emit(chunk);
            self.line_start += self.line_len;
            self.line_len = 0;
        }
    }
}

impl LineChunk {
    pub fn new(stream: Arc<str>, id_seed: u64) -> Self {
        Self {
            stream,
            id_seed,
            data: Vec::new(),
            lines: Vec::new(),
            format: None,
            ack: None,
        }
    }
}

/// Counters of one parse stage (or a whole replay); cheap to share.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub lines: AtomicU64,
    pub events: AtomicU64,
    pub dead_letters: AtomicU64,
    pub reasons: [AtomicU64; ParseErrorKind::ALL.len()],
}

impl IngestStats {
    pub fn reason_counts(&self) -> Vec<(&'static str, u64)> {
        ParseErrorKind::ALL
            .iter()
            .zip(&self.reasons)
            .map(|(k, c)| (k.as_str(), c.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c > 0)
            .collect()
    }
}

/// Turns chunks into event rows and dead letters. One per source; not shared across threads.
pub struct Parser {
    gateway: Arc<str>,
    format: Box<dyn LogFormat>,
    format_name: FormatName,
    options: FormatOptions,
    /// Formats chosen per chunk (HTTP push), built on first use.
    others: HashMap<FormatName, Box<dyn LogFormat>>,
    normalizer: Normalizer,
    stats: Arc<IngestStats>,
}

impl Parser {
    pub fn new(
        gateway: &str,
        format: FormatName,
        options: FormatOptions,
        normalizer: Normalizer,
        stats: Arc<IngestStats>,
    ) -> Result<Self, IngestError> {
        Ok(Self {
            gateway: gateway.into(),
            format: format.build(&options)?,
            format_name: format,
            options,
            others: HashMap::new(),
            normalizer,
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// Parses every line of `chunk` into `builder`, pushing failures to `dead`.
    pub fn parse_chunk(
        &mut self,
        chunk: &LineChunk,
        builder: &mut EventBatchBuilder,
        dead: &mut Vec<DeadLetter>,
    ) -> ChunkOutcome {
        let name = chunk.format.unwrap_or(self.format_name);
        if name != self.format_name && !self.others.contains_key(&name) {
            match name.build(&self.options) {
                Ok(f) => {
                    self.others.insert(name, f);
                }
                Err(e) => {
                    // Options valid for the source's format but not this one: every line of
                    // the chunk is a dead letter naming why.
                    let mut out = ChunkOutcome::default();
                    for span in &chunk.lines {
                        out.lines += 1;
                        out.dead_letters += 1;
                        let err =
                            ParseError::new(ParseErrorKind::UnrecognizedFormat, e.to_string());
                        dead.push(self.dead_letter(chunk, span, name.as_str(), &err, 0));
                    }
                    self.count(&out, dead);
                    return out;
                }
            }
        }
        let format: &dyn LogFormat = if name == self.format_name {
            &*self.format
        } else {
            &*self.others[&name]
        };
        let dead_before = dead.len();
        let mut out = ChunkOutcome::default();
        for span in &chunk.lines {
            let raw = &chunk.data[span.start..span.end];
            let origin = LineOrigin {
                gateway: &self.gateway,
                format: format.name(),
                stream: &chunk.stream,
                id_seed: chunk.id_seed,
                position: span.position,
                sub: span.sub,
            };
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue; // blank lines are not records
            }
            out.lines += 1;
            let line = match (span.truncated, std::str::from_utf8(raw)) {
                (true, _) => Err(ParseError::new(
                    ParseErrorKind::LineTooLong,
                    "line longer than pipeline.max_line_bytes".to_string(),
                )),
                (false, Ok(l)) => Ok(l),
                (false, Err(e)) => Err(ParseError::new(
                    ParseErrorKind::NotUtf8,
                    format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                )),
            };
            let line = match line {
                Ok(l) => l,
                Err(err) => {
                    dead.push(dead_letter(
                        &self.gateway,
                        chunk,
                        span,
                        format.name(),
                        &err,
                        0,
                    ));
                    continue;
                }
            };
            let mut index = 0u32;
            let normalizer = &mut self.normalizer;
            let gateway = &self.gateway;
            format.parse(line, &mut |r| {
                match r {
                    Ok(rec) => {
                        builder.append(&rec, &origin, index, normalizer);
                        out.events += 1;
                    }
                    Err(err) => dead.push(dead_letter(
                        gateway,
                        chunk,
                        span,
                        origin.format,
                        &err,
                        index,
                    )),
                }
                index += 1;
            });
        }
        out.dead_letters = (dead.len() - dead_before) as u64;
        self.count(&out, &dead[dead_before..]);
        out
    }

    fn dead_letter(
        &self,
        chunk: &LineChunk,
        span: &LineSpan,
        format: &str,
        err: &ParseError,
        index: u32,
    ) -> DeadLetter {
        dead_letter(&self.gateway, chunk, span, format, err, index)
    }

    fn count(&self, out: &ChunkOutcome, new_dead: &[DeadLetter]) {
        self.stats.lines.fetch_add(out.lines, Ordering::Relaxed);
        self.stats.events.fetch_add(out.events, Ordering::Relaxed);
        self.stats
            .dead_letters
            .fetch_add(out.dead_letters, Ordering::Relaxed);
        for d in new_dead {
            let i = ParseErrorKind::ALL
                .iter()
                .position(|k| *k == d.kind)
                .unwrap_or(0);
            self.stats.reasons[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn dead_letter(
    gateway: &str,
    chunk: &LineChunk,
    span: &LineSpan,
    format: &str,
    err: &ParseError,
    index: u32,
) -> DeadLetter {
    let raw = &chunk.data[span.start..span.end];
    let kept = &raw[..raw.len().min(MAX_RAW_BYTES)];
    let mut origin = format!("{}:{}", chunk.stream, span.position);
    if span.sub > 0 {
        origin.push_str(&format!("/{}", span.sub));
    }
    if index > 0 {
        origin.push_str(&format!("#{index}"));
    }
    DeadLetter {
        received_at: crate::time::rfc3339_us(now_us()),
        gateway: gateway.to_string(),
        format: format.to_string(),
        origin,
        reason: err.kind.as_str(),
        detail: err.detail.clone(),
        line: String::from_utf8_lossy(kept).into_owned(),
        line_truncated: span.truncated || kept.len() < raw.len(),
        kind: err.kind,
    }
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A batch of events leaving the ingest stage, with the acks of the chunks it covers.
#[derive(Debug)]
pub struct EventBatch {
    pub gateway: Arc<str>,
    pub events: RecordBatch,
    pub dead_letters: u64,
    acks: Vec<(Ack, ChunkOutcome)>,
}

impl EventBatch {
    /// A batch of events made in process (the enforcement point's own access events): no
    /// source waits for its acknowledgement.
    pub fn in_process(gateway: Arc<str>, events: RecordBatch) -> Self {
        Self {
            gateway,
            events,
            dead_letters: 0,
            acks: Vec::new(),
        }
    }

    /// Marks the batch handled: sources may now commit what it covers.
    pub fn ack(self) {
        self.deferred_ack().done();
    }

    /// The batch's acknowledgement, to give once what the consumer does with the batch is
    /// durable (the store calls it after the flush that wrote the rows).
    pub fn deferred_ack(self) -> BatchAck {
        BatchAck(self.acks)
    }
}

/// The acknowledgement of one [`EventBatch`], held until its events are durable.
#[derive(Debug, Default)]
pub struct BatchAck(Vec<(Ack, ChunkOutcome)>);

impl BatchAck {
    /// Sources may now commit what the batch covers.
    pub fn done(self) {
        for (ack, outcome) in self.0 {
            ack.done(outcome);
        }
    }
}

/// Runs a parse stage: chunks in, batches out, until `chunks` closes or `shutdown` fires (then
/// the partial batch is flushed). Returns an error only when the dead-letter sink fails; then
/// the unacknowledged chunks are read again after a restart.
pub async fn run_parse_stage(
    mut parser: Parser,
    cfg: PipelineConfig,
    mut chunks: mpsc::Receiver<LineChunk>,
    out: mpsc::Sender<EventBatch>,
    dead_sink: Arc<DeadLetterSink>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let mut builder = EventBatchBuilder::with_capacity(cfg.batch_max_events.min(65_536));
    let mut dead: Vec<DeadLetter> = Vec::new();
    let mut acks: Vec<(Ack, ChunkOutcome)> = Vec::new();
    let delay = Duration::from_millis(cfg.batch_max_delay_ms);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let flush_now = tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(mut chunk) => {
                    let outcome = parser.parse_chunk(&chunk, &mut builder, &mut dead);
                    if let Some(ack) = chunk.ack.take() {
                        acks.push((ack, outcome));
                    }
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + delay);
                    }
                    // Full, or nothing more to parse while the consumer waits for work: a lone
                    // line does not wait out the delay. Under load the consumer is busy or
                    // more chunks are queued, and batches fill up to the size or the delay.
                    builder.len() >= cfg.batch_max_events
                        || (chunks.is_empty() && out.capacity() == out.max_capacity())
                }
                None => {
                    flush(&parser, &mut builder, &mut dead, &mut acks, &out, &dead_sink).await?;
                    return Ok(());
                }
            },
            () = timer => true,
            () = shutdown.cancelled() => {
                flush(&parser, &mut builder, &mut dead, &mut acks, &out, &dead_sink).await?;
                return Ok(());
            }
        };
        if flush_now {
            flush(
                &parser,
                &mut builder,
                &mut dead,
                &mut acks,
                &out,
                &dead_sink,
            )
            .await?;
            deadline = None;
        }
    }
}

async fn flush(
    parser: &Parser,
    builder: &mut EventBatchBuilder,
    dead: &mut Vec<DeadLetter>,
    acks: &mut Vec<(Ack, ChunkOutcome)>,
    out: &mpsc::Sender<EventBatch>,
    dead_sink: &DeadLetterSink,
) -> Result<(), IngestError> {
    if builder.is_empty() && dead.is_empty() && acks.is_empty() {
        return Ok(());
    }
    dead_sink.write(dead).await?;
    let batch = EventBatch {
        gateway: parser.gateway.clone(),
        events: builder.finish(),
        dead_letters: dead.len() as u64,
        acks: std::mem::take(acks),
    };
    dead.clear();
    out.send(batch).await.map_err(|_| IngestError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz/): a line ending in `\r\r` followed by an empty line.
    #[test]
    fn empty_line_after_carriage_returns_keeps_spans_in_order() {
        let mut chunk = LineChunk::new("t".into(), 1);
        let mut s = LineSplitter::new(0, 1024);
        s.push(b"a\r\r\n\n\r\nb\r\n", &mut chunk);
        s.finish(&mut chunk);
        let lines: Vec<&[u8]> = chunk
            .lines
            .iter()
            .map(|l| &chunk.data[l.start..l.end])
            .collect();
        assert_eq!(lines, [&b"a\r"[..], b"", b"", b"b"]);
        let positions: Vec<u64> = chunk.lines.iter().map(|l| l.position).collect();
        assert_eq!(positions, [0, 4, 5, 7]);
    }

    /// The lines, positions and flags of `data` split by `push`es at `cuts`.
    fn split(data: &[u8], cuts: &[usize], max_line: usize) -> Vec<(Vec<u8>, u64, bool)> {
        let mut chunk = LineChunk::new("t".into(), 1);
        let mut s = LineSplitter::new(100, max_line);
        let mut at = 0;
        for &c in cuts.iter().chain([&data.len()]) {
            let c = c.clamp(at, data.len());
            s.push(&data[at..c], &mut chunk);
            at = c;
        }
        s.finish(&mut chunk);
        chunk
            .lines
            .iter()
            .map(|l| (chunk.data[l.start..l.end].to_vec(), l.position, l.truncated))
            .collect()
    }

    #[test]
    fn lines_are_the_same_however_the_stream_is_cut() {
        // Random streams of short, empty, `\r`-ended and over-long lines, pushed whole, a
        // byte at a time (every line through the buffer) and cut at random: the same lines.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let max_line = 300;
        let keep = max_line.max(MAX_RAW_BYTES) + 1;
        for _ in 0..200 {
            let mut data = Vec::new();
            for _ in 0..next(20) {
                let len = [0, 1, 5, 80, max_line, max_line + 1, keep + 10][next(7)];
                data.extend((0..len).map(|_| b"ab\r c"[next(5)]));
                if next(4) == 0 {
                    data.push(b'\r');
                }
                data.push(b'\n');
            }
            if next(2) == 0 {
                data.extend_from_slice(b"tail\r");
            }
            let whole = split(&data, &[], max_line);
            let bytes: Vec<usize> = (1..data.len()).collect();
            assert_eq!(split(&data, &bytes, max_line), whole);
            let mut cuts: Vec<usize> = (0..next(6)).map(|_| next(data.len() + 1)).collect();
            cuts.sort_unstable();
            assert_eq!(split(&data, &cuts, max_line), whole);
            // positions are each line's offset in the stream
            let mut at = 100;
            for (line, position, truncated) in &whole {
                assert_eq!(*position, at);
                let len = data[(at - 100) as usize..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(data.len() - (at - 100) as usize);
                assert_eq!(*truncated, len > max_line);
                if !truncated {
                    let own = &data[(at - 100) as usize..][..len];
                    let want = own.strip_suffix(b"\r").unwrap_or(own);
                    assert_eq!(line.as_slice(), want);
                }
                at += len as u64 + 1;
            }
        }
    }
}
