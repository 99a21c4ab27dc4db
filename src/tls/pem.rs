//! PEM files: reading them, and turning their bytes into certificates, keys and trust roots.
//! Every failure names the file it came from, so a bad path or a wrong file is a one-line
//! start-up error, or the one-line reason a reload was refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::config::TlsFiles;

/// Why TLS could not be set up, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Content { path: PathBuf, what: String },
    #[error("{0}")]
    Setup(String),
}

impl TlsError {
    pub fn content(path: &Path, what: impl Into<String>) -> TlsError {
        TlsError::Content { path: path.to_path_buf(), what: what.into() }
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// The node's files as read at one moment. A reload parses exactly the bytes it compared with
/// the last load, so what it decides to load is what it loads.
pub struct NodePem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub peer_ca: Option<Vec<u8>>,
}

impl NodePem {
    pub fn read(files: &TlsFiles) -> Result<NodePem, TlsError> {
        Ok(NodePem {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            peer_ca: files.peer_ca.as_deref().map(read).transpose()?,
        })
    }
}

/// Every certificate in `pem` (read from `path`), in order (a chain: leaf first).
pub fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::content(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::content(path, "no PEM certificates (-----BEGIN CERTIFICATE-----) found"));
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::content(path, "no PEM private key (PKCS#8, PKCS#1 or SEC1) found")
        }
        e => TlsError::content(path, format!("not a PEM private key file: {e}")),
    })
}

/// The CA certificates in `pem` as trust roots.
pub fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, pem)? {
        roots.add(cert).map_err(|e| TlsError::content(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The operating system's trust roots. Unreadable entries are skipped: a node or CLI that only
/// talks to privately issued certificates must not fail because the system store is odd.
pub fn native_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping unreadable system trust roots");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn missing_files_are_named() {
        let e = read(Path::new("/nonexistent/cert.pem")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn wrong_contents_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let junk = write(dir.path(), "junk.pem", "hello\n");
        let cert_path = write(dir.path(), "cert.pem", &cert.pem());
        let key_path = write(dir.path(), "key.pem", &key.serialize_pem());
        let parse_certs = |p: &Path| certs(p, &read(p).unwrap());
        let e = parse_certs(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("no PEM certificates"), "{e}");
        let e = self::key(&cert_path, &read(&cert_path).unwrap()).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no PEM private key"), "{e}");
        let e = parse_certs(&key_path).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
        assert_eq!(parse_certs(&cert_path).unwrap().len(), 1);
        assert!(self::key(&key_path, &read(&key_path).unwrap()).is_ok());
    }
}
