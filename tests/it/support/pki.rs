//! Certificates for the TLS tests, made with rcgen: a CA per `Pki`, leaves for 127.0.0.1 usable
//! as server and client certificates, and a rustls handshake that reports which certificate a
//! node serves (the reload tests tell old from new by it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA and the PEM files it issued, in a tempdir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

/// A leaf certificate and its key, not yet written anywhere.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate as a handshake shows it.
    pub der: Vec<u8>,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl Leaf {
    /// Writes the certificate and key to `cert` and `key`, each by a rename, so a reader
    /// never sees half a file.
    pub fn write_to(&self, cert: &Path, key: &Path) {
        write_atomically(key, &self.key_pem);
        write_atomically(cert, &self.cert_pem);
    }

    /// The certificate and its key in one PEM, as `reqwest::Identity::from_pem` wants it.
    pub fn identity(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new().prefix("cairn-pki-").tempdir().expect("create pki tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let pki = Pki { dir, ca_cert, ca_key };
        std::fs::write(pki.ca_path(), pki.ca_cert.pem()).expect("write CA");
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// A new key and a certificate for 127.0.0.1 and localhost, with rcgen's default expiry.
    pub fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, None)
    }

    /// [`Pki::leaf`] expiring at midnight UTC of the given day.
    pub fn leaf_expiring(&self, name: &str, (year, month, day): (i32, u8, u8)) -> Leaf {
        self.leaf_with(name, Some((year, month, day)))
    }

    /// Issues `name.pem` / `name.key` for serving only: without the client-auth usage, so
    /// peers refuse it when this node dials them.
    pub fn issue_server_only(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        self.leaf_for(name, None, &[rcgen::ExtendedKeyUsagePurpose::ServerAuth]).write_to(&cert, &key);
        (cert, key)
    }

    fn leaf_with(&self, name: &str, not_after: Option<(i32, u8, u8)>) -> Leaf {
        let both = [rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf_for(name, not_after, &both)
    }

    fn leaf_for(
        &self,
        name: &str,
        not_after: Option<(i32, u8, u8)>,
        usages: &[rcgen::ExtendedKeyUsagePurpose],
    ) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = usages.to_vec();
        if let Some((year, month, day)) = not_after {
            params.not_after = rcgen::date_time_ymd(year, month, day);
        }
        let not_after = params.not_after.unix_timestamp();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).expect("sign leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec(), not_after }
    }

    /// Issues `name.pem` / `name.key` in this PKI's directory; returns (cert path, key path).
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        self.leaf(name).write_to(&cert, &key);
        (cert, key)
    }

    /// A new leaf's certificate and key in one PEM (see [`Leaf::identity`]).
    pub fn identity(&self, name: &str) -> String {
        self.leaf(name).identity()
    }
}

/// Replaces `path`'s contents through a temporary file and a rename.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename onto {}: {e}", path.display()));
}

/// Completes a TLS handshake with `addr` (`127.0.0.1:port`), trusting the CAs in `roots_pem`,
/// and returns the certificate the server presented (its leaf, DER). Each call is a new
/// connection and a full handshake: the client keeps no session to resume.
pub async fn served_certificate(addr: &str, roots_pem: &[&str]) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.map_err(|e| format!("test CA PEM: {e}"))?).map_err(|e| format!("test CA: {e}"))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = ServerName::try_from(addr.rsplit_once(':').map_or(addr, |(host, _)| host).to_string())
        .map_err(|e| format!("{addr}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    let served = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate served")?;
    Ok(served.to_vec())
}
