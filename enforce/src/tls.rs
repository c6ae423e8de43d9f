//! TLS on the proxy listener: rustls (the `ring` provider), certificate and key read once from
//! PEM files when the config is built, ALPN offering `h2` then `http/1.1`. And TLS as a client,
//! to `https` upstreams and JWKS servers: the public CAs of webpki-roots plus, when configured,
//! a private CA bundle.
//!
//! After the handshake the connection is served exactly like a cleartext one: hyper-util's
//! `auto` builder tells HTTP/2 from HTTP/1.1 by the client's preface, which matches what ALPN
//! negotiated. The handshake must finish within the header-read timeout.

use crate::error::EnforceError;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

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
