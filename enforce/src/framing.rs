//! Request-smuggling guard for HTTP/1 connections.
//!
//! hyper already refuses differing duplicate `Content-Length`s and `Transfer-Encoding`s that
//! do not end in `chunked` (400), but it silently *accepts* a request with both
//! `Content-Length` and `Transfer-Encoding` (it drops the length, reads chunked, then closes)
//! and merges identical duplicate `Content-Length`s; by the time a service sees the request
//! those headers are gone. Both are classic smuggling probes, and vigil refuses them outright.
//!
//! [`FramingGuard`] wraps the client socket and watches the bytes hyper reads (it never changes
//! them): it finds each request head, notes whether its framing is ambiguous, and follows the
//! body (fixed length or chunked) to the next head. The proxy pops one note per HTTP/1 request,
//! in order. When the guard cannot follow the stream (HTTP/2, upgrades, anything it does not
//! understand) it stops taking notes; requests without a note get hyper's own checks only.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the guard saw in one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Clear,
    Ambiguous(&'static str),
}

/// The notes of one connection, shared by the guard and the service.
#[derive(Debug, Default)]
pub struct FramingLog {
    notes: Mutex<VecDeque<Framing>>,
}

impl FramingLog {
    /// The note for the next request, if the guard took one.
    pub fn pop(&self) -> Option<Framing> {
        self.notes.lock().ok()?.pop_front()
    }

    fn push(&self, f: Framing) {
        if let Ok(mut q) = self.notes.lock() {
            // hyper reads at most a few pipelined heads ahead; a long queue means we are out
            // of step with it, and stale notes must not be applied.
            if q.len() < 64 {
                q.push_back(f);
            }
        }
    }
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Fixed(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd,
    Trailers { line_len: usize },
    Passthrough,
}

/// A socket wrapper that takes framing notes on what is read through it.
#[derive(Debug)]
pub struct FramingGuard<S> {
    inner: S,
    state: State,
    max_head: usize,
    log: std::sync::Arc<FramingLog>,
}

impl<S> FramingGuard<S> {
    pub fn new(inner: S, max_head: usize, log: std::sync::Arc<FramingLog>) -> Self {
        FramingGuard {
            inner,
            state: State::Head(Vec::new()),
            max_head,
            log,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Passthrough => return,
                State::Head(buf) => {
                    if buf.is_empty() {
                        // empty lines before a request line are allowed (RFC 9112 2.2)
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let mut done = None;
                    for (i, &b) in data.iter().enumerate() {
                        buf.push(b);
                        if b == b'\n' && (buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n")) {
                            done = Some(i + 1);
                            break;
                        }
                    }
                    let Some(used) = done else {
                        if buf.len() > self.max_head {
                            self.state = State::Passthrough;
                        }
                        return;
                    };
                    data = &data[used..];
                    let head = std::mem::take(buf);
                    self.state = self.head_done(&head);
                }
                State::Fixed(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => {
                    let Some(lf) = data.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > 4096 {
                            self.state = State::Passthrough;
                        }
                        return;
                    };
                    line.extend_from_slice(&data[..lf]);
                    data = &data[lf + 1..];
                    self.state = match parse_chunk_size(line) {
                        Some(0) => State::Trailers { line_len: 0 },
                        Some(n) => State::ChunkData(n),
                        None => State::Passthrough,
                    };
                }
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkDataEnd;
                    }
                }
                State::ChunkDataEnd => match data.iter().position(|b| *b == b'\n') {
                    Some(lf) => {
                        data = &data[lf + 1..];
                        self.state = State::ChunkSize(Vec::new());
                    }
                    None => return,
                },
                State::Trailers { line_len } => {
                    let b = data[0];
                    data = &data[1..];
                    match b {
                        b'\n' if *line_len == 0 => self.state = State::Head(Vec::new()),
                        b'\n' => *line_len = 0,
                        b'\r' => {}
                        _ => {
                            *line_len += 1;
                            if *line_len > 8192 {
                                self.state = State::Passthrough;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Notes the head's framing and says how its body is framed.
    fn head_done(&self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Passthrough;
        }
        let Ok(text) = std::str::from_utf8(head) else {
            // obs-text in a header value; hyper may still accept it, we cannot follow
            self.log.push(Framing::Clear);
            return State::Passthrough;
        };
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let request_line = lines.next().unwrap_or_default();
        let is_connect = request_line.starts_with("CONNECT ");
        let (mut cl_lines, mut cl_values, mut cl) = (0usize, 0usize, None::<&str>);
        let (mut te, mut chunked_last, mut upgrade) = (false, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                cl_lines += 1;
                for v in value.split(',') {
                    if !v.trim().is_empty() {
                        cl_values += 1;
                        cl = Some(v.trim());
                    }
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                te = true;
                chunked_last = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let note = if te && cl_lines > 0 {
            Framing::Ambiguous("both Content-Length and Transfer-Encoding")
        } else if cl_values > 1 {
            Framing::Ambiguous("more than one Content-Length")
        } else {
            Framing::Clear
        };
        self.log.push(note);
        if note != Framing::Clear || upgrade || is_connect {
            return State::Passthrough;
        }
        if te {
            return if chunked_last {
                State::ChunkSize(Vec::new())
            } else {
                State::Passthrough
            };
        }
        match cl.map(str::parse::<u64>) {
            None => State::Head(Vec::new()),
            Some(Ok(0)) => State::Head(Vec::new()),
            Some(Ok(n)) => State::Fixed(n),
            Some(Err(_)) => State::Passthrough,
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|b| *b == b';').next()?;
    let size = std::str::from_utf8(size).ok()?.trim_matches([' ', '\t']);
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn notes(stream: &[u8], split: usize) -> Vec<Framing> {
        let log = Arc::new(FramingLog::default());
        let mut g = FramingGuard::new((), 16384, log.clone());
        // feed in pieces of `split` bytes, as reads may deliver them
        for piece in stream.chunks(split.max(1)) {
            g.feed(piece);
        }
        std::iter::from_fn(|| log.pop()).collect()
    }

    #[test]
    fn follows_bodies_and_flags_ambiguity() {
        let stream = b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nGET /\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\nabc";
        for split in [1, 3, 7, 1000] {
            assert_eq!(
                notes(stream, split),
                vec![
                    Framing::Clear,
                    Framing::Clear,
                    Framing::Clear,
                    Framing::Ambiguous("more than one Content-Length")
                ],
                "split {split}"
            );
        }
        let both = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            notes(both, 5),
            vec![Framing::Ambiguous(
                "both Content-Length and Transfer-Encoding"
            )]
        );
        assert_eq!(
            notes(b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", 100),
            vec![Framing::Ambiguous("more than one Content-Length")]
        );
        // HTTP/2 prior knowledge: no notes
        assert!(notes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 100).is_empty());
        // a body that looks like a request is not taken for one
        let body_like = b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(notes(body_like, 9), vec![Framing::Clear]);
    }
}
