//! `type = "file"`: tails log files the way a gateway writes them.
//!
//! - **Position**: a checkpoint per file in `<data_dir>/checkpoints/`, written when the batch
//!   holding a chunk is acknowledged, so a restart resumes after the last handled line: nothing
//!   skipped, and nothing repeated beyond the at-least-once window of unacknowledged batches.
//! - **Identity**: a file is known by the hash of its first line, not its name: after a
//!   rotation, `access.log` is a new file and is read from its start; a copy of a file gets the
//!   same event ids as the original.
//! - **Rotation** (rename and create): the old file is read to its end before the new one is
//!   opened. **Truncation** (copytruncate): the file is read again from its start.

use super::SourceContext;
use crate::error::IngestError;
use crate::pipeline::{Ack, LineChunk, LineSplitter};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read files never seen before from their first line (default).
    #[default]
    Beginning,
    /// Read only lines written after vigil starts.
    End,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Files to tail. Required.
    pub paths: Vec<PathBuf>,
    /// Where to start in a file that has no checkpoint. Default `beginning`.
    pub start_at: StartAt,
    /// How often to look for new lines, rotation and truncation. Default 200 ms.
    pub poll_interval_ms: u64,
    /// Bytes read at a time. Default 256 KiB.
    pub read_bytes: usize,
    /// After a rotation, how long the old file is still read (writers keep appending to it
    /// until they reopen) before it is closed. Default 1000 ms.
    pub rotate_wait_ms: u64,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            start_at: StartAt::Beginning,
            poll_interval_ms: 200,
            read_bytes: 256 * 1024,
            rotate_wait_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    fingerprint: u64,
    offset: u64,
}

/// Where a file's checkpoint lives.
pub fn checkpoint_path(data_dir: &Path, source: &str, file: &Path) -> PathBuf {
    let h = xxhash_rust::xxh3::xxh3_64(file.as_os_str().as_encoded_bytes());
    data_dir
        .join("checkpoints")
        .join(format!("file-{source}-{h:016x}.json"))
}

fn load_checkpoint(path: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn store_checkpoint(path: &Path, cp: Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&cp).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

impl FileSourceConfig {
    pub fn build(
        &self,
        ctx: &SourceContext,
        chunks: mpsc::Sender<LineChunk>,
        tasks: &mut JoinSet<Result<(), IngestError>>,
    ) -> Result<(), IngestError> {
        if self.paths.is_empty() {
            return Err(IngestError::config(
                ctx.key("paths"),
                "at least one file is required",
            ));
        }
        if self.poll_interval_ms == 0 {
            return Err(IngestError::config(
                ctx.key("poll_interval_ms"),
                "must be at least 1",
            ));
        }
        if self.read_bytes < 4096 {
            return Err(IngestError::config(
                ctx.key("read_bytes"),
                "must be at least 4096",
            ));
        }
        let dir = ctx.data_dir.join("checkpoints");
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::io(dir.display().to_string(), e))?;
        for path in &self.paths {
            let tail = Tail {
                path: path.clone(),
                checkpoint: checkpoint_path(&ctx.data_dir, &ctx.name, path),
                cfg: self.clone(),
                gateway: ctx.name.clone(),
                max_line: ctx.pipeline.max_line_bytes,
                chunks: chunks.clone(),
                shutdown: ctx.shutdown.clone(),
            };
            tasks.spawn(async move {
                tokio::task::spawn_blocking(move || tail.run())
                    .await
                    .map_err(|e| IngestError::io("file tail task", std::io::Error::other(e)))?
            });
        }
        Ok(())
    }
}

struct Tail {
    path: PathBuf,
    checkpoint: PathBuf,
    cfg: FileSourceConfig,
    gateway: String,
    max_line: usize,
    chunks: mpsc::Sender<LineChunk>,
    shutdown: CancellationToken,
}

/// The hash of a file's first line, once it has one.
fn fingerprint(file: &mut File, gateway: &str) -> std::io::Result<Option<u64>> {
    let mut head = vec![0u8; 8192];
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        let r = file.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    Ok(match memchr::memchr(b'\n', head) {
        Some(i) => Some(super::content_seed(gateway, &head[..i])),
        // A first line longer than the probe: its beginning identifies the file well enough.
        None if n == 8192 => Some(super::content_seed(gateway, head)),
        None => None,
    })
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

enum Next {
    Reopen,
    Stop,
}

impl Tail {
    fn sleep(&self) -> bool {
        let step = Duration::from_millis(self.cfg.poll_interval_ms.min(50));
        let mut left = Duration::from_millis(self.cfg.poll_interval_ms);
        while !left.is_zero() {
            if self.shutdown.is_cancelled() {
                return false;
            }
            let s = step.min(left);
            std::thread::sleep(s);
            left -= s;
        }
        !self.shutdown.is_cancelled()
    }

    fn run(self) -> Result<(), IngestError> {
        let io = |e| IngestError::io(self.path.display().to_string(), e);
        let mut first_open = true;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let mut file = match File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !self.sleep() {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            let Some(fp) = fingerprint(&mut file, &self.gateway).map_err(io)? else {
                // No complete first line yet: wait for the writer.
                if !self.sleep() {
                    return Ok(());
                }
                continue;
            };
            let len = file.metadata().map_err(io)?.len();
            let start = match load_checkpoint(&self.checkpoint) {
                Some(cp) if cp.fingerprint == fp && cp.offset <= len => cp.offset,
                _ if first_open && self.cfg.start_at == StartAt::End => len,
                _ => 0,
            };
            first_open = false;
            tracing::info!(path = %self.path.display(), offset = start, "tailing file");
            match self.follow(file, fp, start).map_err(io)? {
                Next::Reopen => continue,
                Next::Stop => return Ok(()),
            }
        }
    }

    /// Reads `file` from `start` until it is rotated away, truncated, or shutdown.
    fn follow(&self, mut file: File, fp: u64, start: u64) -> std::io::Result<Next> {
        let stream: Arc<str> = format!("file:{}", self.path.display()).into();
        let id = file_id(&file.metadata()?);
        file.seek(SeekFrom::Start(start))?;
        let mut splitter = LineSplitter::new(start, self.max_line);
        let mut read_at = start;
        let mut buf = vec![0u8; self.cfg.read_bytes];
        let mut rotated_at: Option<std::time::Instant> = None;
        loop {
            let n = file.read(&mut buf)?;
            let mut chunk = LineChunk::new(stream.clone(), fp);
            if n > 0 {
                read_at += n as u64;
                splitter.push(&buf[..n], &mut chunk);
            } else {
                let rotated = match std::fs::metadata(&self.path) {
                    Ok(m) => file_id(&m) != id,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(e),
                };
                if rotated {
                    let since = *rotated_at.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() < Duration::from_millis(self.cfg.rotate_wait_ms) {
                        // The writer may still append to the old file until it reopens.
                        if !self.sleep() {
                            return Ok(Next::Stop);
                        }
                        continue;
                    }
                    // The writer has moved on: a last line without newline is complete.
                    splitter.finish(&mut chunk);
                    self.send(chunk, fp, splitter.committed_offset());
                    tracing::info!(path = %self.path.display(), "file rotated; reopening");
                    return Ok(Next::Reopen);
                }
                if file.metadata()?.len() < read_at {
                    tracing::warn!(path = %self.path.display(), "file truncated; reading from its start");
                    return Ok(Next::Reopen);
                }
                if !self.sleep() {
                    return Ok(Next::Stop);
                }
                continue;
            }
            if !self.send(chunk, fp, splitter.committed_offset()) {
                return Ok(Next::Stop);
            }
        }
    }

    /// Sends `chunk` with an ack that checkpoints `offset`; false when the pipeline is gone.
    fn send(&self, mut chunk: LineChunk, fp: u64, offset: u64) -> bool {
        if chunk.lines.is_empty() {
            return !self.chunks.is_closed();
        }
        let path = self.checkpoint.clone();
        chunk.ack = Some(Ack::new(move |_| {
            let cp = Checkpoint {
                fingerprint: fp,
                offset,
            };
            if let Err(error) = store_checkpoint(&path, cp) {
                tracing::error!(%error, path = %path.display(), "cannot write file checkpoint");
            }
        }));
        self.chunks.blocking_send(chunk).is_ok()
    }
}
