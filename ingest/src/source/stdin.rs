//! `type = "stdin"`: lines from standard input until it closes. Nothing is committed: stdin
//! cannot be re-read, so what was not acknowledged before a crash is lost with the stream.

use super::SourceContext;
use crate::error::IngestError;
use crate::pipeline::LineChunk;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdinSourceConfig {}

impl StdinSourceConfig {
    pub fn build(
        &self,
        ctx: &SourceContext,
        chunks: mpsc::Sender<LineChunk>,
        tasks: &mut JoinSet<Result<(), IngestError>>,
    ) -> Result<(), IngestError> {
        let ctx = ctx.clone();
        tasks.spawn(async move { read_stream(tokio::io::stdin(), "stdin", &ctx, chunks).await });
        Ok(())
    }
}

/// Reads `reader` to its end in chunks of whole lines (the event-id seed is the first line's
/// hash, as for files). Stops early on shutdown.
pub async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: &str,
    ctx: &SourceContext,
    chunks: mpsc::Sender<LineChunk>,
) -> Result<(), IngestError> {
    use tokio::io::AsyncReadExt;
    let stream: std::sync::Arc<str> = stream.into();
    let mut splitter = crate::pipeline::LineSplitter::new(0, ctx.pipeline.max_line_bytes);
    let mut seed: Option<u64> = None;
    let mut first_line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = tokio::select! {
            n = reader.read(&mut buf) => n.map_err(|e| IngestError::io(stream.to_string(), e))?,
            () = ctx.shutdown.cancelled() => return Ok(()),
        };
        // The id seed needs the first line; hold bytes until it is complete.
        if seed.is_none() {
            first_line.extend_from_slice(&buf[..n]);
            match memchr::memchr(b'\n', &first_line) {
                Some(i) => seed = Some(super::content_seed(&ctx.name, &first_line[..i])),
                None if n == 0 => seed = Some(super::content_seed(&ctx.name, &first_line)),
                None => continue,
            }
        }
        let mut chunk = LineChunk::new(stream.clone(), seed.unwrap_or_default());
        if first_line.is_empty() {
            splitter.push(&buf[..n], &mut chunk);
        } else {
            splitter.push(&std::mem::take(&mut first_line), &mut chunk);
        }
        if n == 0 {
            splitter.finish(&mut chunk);
        }
        if !chunk.lines.is_empty() && chunks.send(chunk).await.is_err() {
            return Ok(());
        }
        if n == 0 {
            return Ok(());
        }
    }
}
