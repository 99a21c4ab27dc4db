//! TLS material: loading PEM certificates and keys, and building the rustls configurations a
//! node serves and dials peers with, and the one the CLI dials nodes with. Every failure names
//! the file it came from, so a bad path or a wrong file is a one-line startup error.
//!
//! rustls runs on the ring provider everywhere (chosen explicitly, never the process default),
//! so the build needs no cmake or nasm, which aws-lc-rs would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsFiles;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Content { path: PathBuf, what: String },
    #[error("{0}")]
    Setup(String),
}

fn content(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Content { path: path.to_path_buf(), what: what.into() }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no PEM certificates (-----BEGIN CERTIFICATE-----) found"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            content(path, "no PEM private key (PKCS#8, PKCS#1 or SEC1) found")
        }
        e => content(path, format!("not a PEM private key file: {e}")),
    })
}

/// The CA certificates of a PEM file as trust roots.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| content(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The operating system's trust roots. Unreadable entries are skipped: a node or CLI that only
/// talks to privately issued certificates must not fail because the system store is odd.
fn native_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping unreadable system trust roots");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}

/// What a node with `--tls-cert` needs: the server side of its listener, and the client side
/// of its connections to peers.
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub peer_client: Arc<ClientConfig>,
}

impl NodeTls {
    /// With `peer_ca`, the server asks every client for a certificate (verified against it, but
    /// optional: API clients have none; `/raft/*` checks for one) and peers present this node's
    /// own certificate and trust only `peer_ca`. Without it, peers trust the system roots.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        let certs = load_certs(&files.cert)?;
        let key = load_key(&files.key)?;
        let peer_roots = files.peer_ca.as_deref().map(load_roots).transpose()?;

        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let server = match &peer_roots {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Setup(format!("client certificate verifier: {e}")))?;
                server.with_client_cert_verifier(verifier)
            }
            None => server.with_no_client_auth(),
        };
        let mut server = server.with_single_cert(certs.clone(), key.clone_key()).map_err(|e| {
            content(&files.key, format!("does not fit the certificate in {}: {e}", files.cert.display()))
        })?;
        // The server speaks HTTP/1.1 only (axum without its http2 feature).
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let peer_client = match peer_roots {
            Some(roots) => client
                .with_root_certificates(roots)
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Setup(format!("peer client identity: {e}")))?,
            None => client.with_root_certificates(native_roots()).with_no_client_auth(),
        };
        Ok(NodeTls { server: Arc::new(server), peer_client: Arc::new(peer_client) })
    }
}

/// A client configuration for the CLI and `cairn bench`: trusts `ca` when given, else the
/// system roots.
pub fn client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => load_roots(path)?,
        None => native_roots(),
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn missing_files_are_named() {
        let e = load_certs(Path::new("/nonexistent/cert.pem")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
        let e = load_key(Path::new("/nonexistent/key.pem")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
    }

    #[test]
    fn wrong_contents_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let junk = write(dir.path(), "junk.pem", "hello\n");
        let cert_path = write(dir.path(), "cert.pem", &cert);
        let key_path = write(dir.path(), "key.pem", &key);
        let e = load_certs(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("no PEM certificates"), "{e}");
        let e = load_key(&cert_path).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no PEM private key"), "{e}");
        let e = load_certs(&key_path).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
        assert_eq!(load_certs(&cert_path).unwrap().len(), 1);
        assert!(load_key(&key_path).is_ok());
    }

    #[test]
    fn node_config_builds_and_rejects_a_key_of_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let files = TlsFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            peer_ca: Some(write(dir.path(), "ca.pem", &cert)),
        };
        assert!(NodeTls::load(&files).is_ok());
        let wrong = TlsFiles { key: write(dir.path(), "other.pem", &other_key), ..files };
        let e = NodeTls::load(&wrong).err().expect("a mismatched key is refused").to_string();
        assert!(e.contains("other.pem"), "{e}");
    }
}
