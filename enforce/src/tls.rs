//! TLS on the proxy listener: rustls (the `ring` provider), certificate and key read once from
//! PEM files when the config is built, ALPN offering `h2` then `http/1.1`. And TLS as a client,
//! to `https` upstreams and JWKS servers: the public CAs of webpki-roots plus, when configured,
//! a private CA bundle.
//!
//! After the handshake the connection is served exactly like a cleartext one: hyper-util's
//! `auto` builder tells HTTP/2 from HTTP/1.1 by the client's preface, which matches what ALPN
//! negotiated. The handshake must finish within the header-read timeout.
//!
//! Before the handshake, unless `[proxy] fingerprints = false`, [`peek_client_hello_ja4`]
//! peeks the ClientHello (leaving every byte in the socket for rustls) and computes its JA4;
//! the connection carries it into each request's access event.

use crate::error::EnforceError;
use crate::fingerprint::{HelloLen, MAX_PEEK_LEN, client_hello_len, ja4};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The connector of vigil's HTTP clients: `http` as is, `https` through rustls.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A rustls client configuration trusting the public CAs (webpki-roots) and, when `ca_path` is
/// set, the PEM certificates in it (`ca_key` names the config key in errors).
pub fn client_config(
    ca_key: &str,
    ca_path: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, EnforceError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_path {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| EnforceError::config(ca_key, format!("cannot read `{path}`: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                EnforceError::config(ca_key, format!("`{path}` is not PEM certificates: {e}"))
            })?;
        if certs.is_empty() {
            return Err(EnforceError::config(
                ca_key,
                format!("`{path}` holds no certificate"),
            ));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                EnforceError::config(ca_key, format!("`{path}`: unusable CA certificate: {e}"))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnforceError::config(ca_key, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// `http` wrapped so `https` URIs go through TLS with `tls` (HTTP/1.1 inside).
pub fn https_connector(mut http: HttpConnector, tls: &rustls::ClientConfig) -> HttpsConnector {
    // the wrapper, not the TCP connector, decides what the scheme allows
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// A rustls server configuration from a PEM certificate chain and private key. `cert_key` and
/// `key_key` name the config keys in errors.
pub fn server_config(
    cert_key: &str,
    cert_path: &str,
    key_key: &str,
    key_path: &str,
) -> Result<Arc<rustls::ServerConfig>, EnforceError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| EnforceError::config(cert_key, format!("cannot read `{cert_path}`: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            EnforceError::config(
                cert_key,
                format!("`{cert_path}` is not PEM certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(EnforceError::config(
            cert_key,
            format!("`{cert_path}` holds no certificate"),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        EnforceError::config(
            key_key,
            format!("cannot read a private key from `{key_path}`: {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnforceError::config(cert_key, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            EnforceError::config(key_key, format!("certificate and key do not fit: {e}"))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// First peek size: a whole ClientHello of today's clients (chromium's, with a post-quantum key
/// share, is about 1.9 KB) fits, so one peek usually suffices; a larger hello grows the buffer
/// as [`client_hello_len`] asks, up to [`MAX_PEEK_LEN`].
const FIRST_PEEK_LEN: usize = 4096;

/// Peeks per connection at most: a hello trickled in more pieces than this is not
/// fingerprinted, so a client cannot keep the proxy peeking.
const MAX_PEEKS: usize = 32;

/// What one peek found.
enum Peeked {
    /// The ClientHello is complete in the first this-many bytes.
    Hello(usize),
    /// Not a ClientHello (or past the fingerprint module's limits), or the stream ended.
    NoHello,
    /// The buffer was filled and the hello needs this many bytes: grow and peek again.
    Grow(usize),
}

/// The JA4 of the TLS ClientHello at the head of `stream`, peeked without consuming a byte, so
/// the handshake that follows reads the stream as if nothing had happened. `None` when the
/// first bytes are not a ClientHello this proxy can fingerprint, when the client sends no
/// complete hello by `deadline` (the handshake's own deadline, so the peek never outlasts it),
/// after [`MAX_PEEKS`] partial peeks, or on any socket error.
///
/// A peek returns whatever has arrived, and a socket with unread data stays readable, so
/// waiting for readiness alone would spin while the rest of a hello is in flight. Instead, a
/// peek that shows too few bytes clears the socket's read readiness through
/// [`TcpStream::try_io`] (race-free: tokio keeps the readiness when an event arrived after it
/// was sampled), and the next peek waits for new data. The peek itself goes through a
/// duplicate of the socket's descriptor (same open socket, non-blocking), because tokio offers
/// no synchronous peek to call inside `try_io`.
pub async fn peek_client_hello_ja4(stream: &TcpStream, deadline: Instant) -> Option<String> {
    let peeker = match peek_handle(stream) {
        Ok(p) => p,
        Err(error) => {
            tracing::debug!(%error, "no ClientHello peek: cannot duplicate the socket");
            return None;
        }
    };
    let mut buf = vec![0u8; FIRST_PEEK_LEN];
    for _ in 0..MAX_PEEKS {
        let ready = tokio::time::timeout_at(deadline, stream.ready(Interest::READABLE))
            .await
            .ok()?
            .ok()?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peeker.peek(&mut buf)?;
            if n == 0 {
                return Ok(Peeked::NoHello);
            }
            match client_hello_len(&buf[..n]) {
                HelloLen::Complete(len) => Ok(Peeked::Hello(len)),
                HelloLen::NotClientHello => Ok(Peeked::NoHello),
                HelloLen::NeedAtLeast(want) if n == buf.len() => Ok(Peeked::Grow(want)),
                // everything that has arrived is too little: wait for more
                HelloLen::NeedAtLeast(_) => Err(io::ErrorKind::WouldBlock.into()),
            }
        });
        match peeked {
            Ok(Peeked::Hello(len)) => return buf.get(..len).and_then(ja4),
            Ok(Peeked::NoHello) => return None,
            Ok(Peeked::Grow(want)) if want <= MAX_PEEK_LEN => buf.resize(want, 0),
            Ok(Peeked::Grow(_)) => return None,
            // the client half-closed: nothing more will come
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && ready.is_read_closed() => {
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    None
}

/// A second handle on `stream`'s socket for synchronous, non-blocking peeks (the descriptor is
/// duplicated; the socket stays registered with tokio through the original).
#[cfg(unix)]
fn peek_handle(stream: &TcpStream) -> io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    Ok(std::net::TcpStream::from(
        stream.as_fd().try_clone_to_owned()?,
    ))
}

#[cfg(not(unix))]
fn peek_handle(_stream: &TcpStream) -> io::Result<std::net::TcpStream> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::tests::unhex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// rustls 0.23's hello to `localhost` (see `fingerprint.rs`'s captured hellos).
    const RUSTLS_HELLO: &str = include_str!("../tests/data/clienthello_rustls.hex");
    const RUSTLS_JA4: &str = "t13d1011h2_61a7ad8aa9b6_3fcd1a44f3e3";

    /// A connected pair: the accepted server side and the client side.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        (server, client)
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Sends `bytes` in the given pieces with a pause between them, then (optionally) closes
    /// the write side.
    async fn send_in_pieces(mut c: TcpStream, bytes: Vec<u8>, cuts: Vec<usize>, close: bool) {
        let mut at = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            c.write_all(&bytes[at..cut]).await.unwrap();
            at = cut;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if close {
            c.shutdown().await.unwrap();
        }
        // keep the socket open until the server is done
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink).await;
    }

    #[tokio::test]
    async fn a_hello_in_pieces_is_fingerprinted_and_left_unread() {
        let hello = unhex(RUSTLS_HELLO);
        let (mut server, client) = pair().await;
        let cuts = vec![3, 9, hello.len() / 2];
        let started = std::time::Instant::now();
        let sender = tokio::spawn(send_in_pieces(client, hello.clone(), cuts, false));
        let fp = peek_client_hello_ja4(&server, soon(5000)).await;
        assert_eq!(fp.as_deref(), Some(RUSTLS_JA4));
        // waited for the pieces (three pauses), not for the deadline
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // every byte is still there for the handshake
        let mut read = vec![0u8; hello.len()];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(read, hello);
        drop(server);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn a_large_hello_grows_the_buffer() {
        // the rustls hello padded to 6000 bytes, split into records of 1000
        let hello = unhex(RUSTLS_HELLO);
        let hs = &hello[5..];
        let mut padded = hs.to_vec();
        let pad = 6000 - padded.len();
        // extension 0x0015 (padding) appended; the lengths ahead of it grow to match
        padded.extend([0x00, 0x15]);
        padded.extend(u16::try_from(pad - 4).unwrap().to_be_bytes());
        padded.extend(vec![0u8; pad - 4]);
        let body_len = padded.len() - 4;
        padded[1..4].copy_from_slice(&u32::try_from(body_len).unwrap().to_be_bytes()[1..]);
        // the extension block's length sits after the fixed fields; find it by walking
        let mut i = 4 + 2 + 32;
        i += 1 + usize::from(padded[i]); // session id
        i += 2 + usize::from(u16::from_be_bytes([padded[i], padded[i + 1]])); // ciphers
        i += 1 + usize::from(padded[i]); // compression
        let ext_len = u16::from_be_bytes([padded[i], padded[i + 1]]) + u16::try_from(pad).unwrap();
        padded[i..i + 2].copy_from_slice(&ext_len.to_be_bytes());
        let mut records = Vec::new();
        for chunk in padded.chunks(1000) {
            records.extend([22, 3, 1]);
            records.extend(u16::try_from(chunk.len()).unwrap().to_be_bytes());
            records.extend(chunk);
        }
        let want = ja4(&records).expect("the padded hello fingerprints");
        assert!(want.starts_with("t13d1012h2_"), "{want}");
        let (server, client) = pair().await;
        let sender = tokio::spawn(send_in_pieces(client, records, vec![2000], false));
        let fp = peek_client_hello_ja4(&server, soon(5000)).await;
        assert_eq!(fp, Some(want));
        drop(server);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn no_hello_gives_none_without_waiting_for_the_deadline() {
        let hello = unhex(RUSTLS_HELLO);
        // not TLS at all
        let (server, client) = pair().await;
        let started = std::time::Instant::now();
        let sender = tokio::spawn(send_in_pieces(
            client,
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            vec![],
            false,
        ));
        assert_eq!(peek_client_hello_ja4(&server, soon(5000)).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(server);
        sender.await.unwrap();

        // half a hello, then the client closes its side
        let (server, client) = pair().await;
        let started = std::time::Instant::now();
        let half = hello[..hello.len() / 2].to_vec();
        let sender = tokio::spawn(send_in_pieces(client, half, vec![], true));
        assert_eq!(peek_client_hello_ja4(&server, soon(5000)).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(server);
        sender.await.unwrap();

        // half a hello and silence: the deadline ends the wait
        let (server, mut client) = pair().await;
        client.write_all(&hello[..100]).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(peek_client_hello_ja4(&server, soon(300)).await, None);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "{waited:?}"
        );

        // a hello trickled byte by byte is given up after MAX_PEEKS peeks, before the deadline
        let (server, client) = pair().await;
        let cuts: Vec<usize> = (1..=MAX_PEEKS + 2).collect();
        let sender = tokio::spawn(send_in_pieces(client, hello.clone(), cuts, false));
        let started = std::time::Instant::now();
        assert_eq!(peek_client_hello_ja4(&server, soon(20_000)).await, None);
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(server);
        sender.abort();
    }
}
