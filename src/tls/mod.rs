//! TLS: the rustls configurations a node serves and dials peers with, the one the CLI dials
//! nodes with, and reloading the node's certificate, key and peer CA while it runs.
//!
//! - `pem`: reading PEM files into certificates, keys and trust roots; errors name the file
//! - `expiry`: a certificate's notAfter, for the expiry gauge
//! - `live`: what a reload replaces, and the rustls hooks that read it on every handshake
//! - `reload`: when a reload happens (SIGHUP, a change of the files) and what a failed one does
//!
//! rustls runs on the ring provider everywhere (chosen explicitly, never the process default),
//! so the build needs no cmake or nasm, which aws-lc-rs would.

mod expiry;
mod live;
mod pem;
mod reload;

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};

use crate::config::TlsFiles;
pub use pem::TlsError;
pub use reload::{spawn_reloader, Reloader};

/// What a node with `--tls-cert` needs: the server side of its listener, and the client side
/// of its connections to peers. Both are built once and follow every reload by themselves.
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub peer_client: Arc<ClientConfig>,
}

impl NodeTls {
    /// Loads the files, and returns the configurations with the [`Reloader`] that keeps them
    /// current (see [`spawn_reloader`]).
    pub fn load(files: &TlsFiles) -> Result<(NodeTls, Reloader), TlsError> {
        let reloader = Reloader::load(files)?;
        let live = reloader.live();
        let tls =
            NodeTls { server: Arc::new(live.server_config()?), peer_client: Arc::new(live.peer_client_config()?) };
        Ok((tls, reloader))
    }
}

/// A client configuration for the CLI and `cairn bench`: trusts `ca` when given, else the
/// system roots.
pub fn client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => pem::roots(path, &pem::read(path)?)?,
        None => pem::native_roots(),
    };
    Ok(ClientConfig::builder_with_provider(pem::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Ca {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            Ca { cert: params.self_signed(&key).unwrap(), key }
        }

        /// Writes a new leaf for 127.0.0.1 to `cert` and `key`; returns its DER.
        fn issue(&self, cert: &Path, key: &Path) -> Vec<u8> {
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &self.cert, &self.key)
                .unwrap();
            std::fs::write(cert, leaf.pem()).unwrap();
            std::fs::write(key, leaf_key.serialize_pem()).unwrap();
            leaf.der().to_vec()
        }
    }

    fn node_files(dir: &Path, name: &str, ca: &Path) -> TlsFiles {
        let path = |ext: &str| -> PathBuf { dir.join(format!("{name}.{ext}")) };
        TlsFiles { cert: path("pem"), key: path("key"), peer_ca: Some(ca.to_path_buf()) }
    }

    /// One TLS handshake in memory, `client` dialing `server` as peers do: the certificates
    /// each side presented (the server's, the client's), or why the handshake failed.
    async fn handshake(server: &NodeTls, client: &NodeTls) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (near, far) = tokio::io::duplex(64 << 10);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.server.clone());
        let connector = tokio_rustls::TlsConnector::from(client.peer_client.clone());
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let both = async { tokio::join!(acceptor.accept(far), connector.connect(name, near)) };
        let (accepted, connected) =
            tokio::time::timeout(std::time::Duration::from_secs(10), both).await.expect("the handshake ends");
        let connected = connected.map_err(|e| format!("client: {e}"))?;
        let accepted = accepted.map_err(|e| format!("server: {e}"))?;
        let first = |c: Option<&[rustls::pki_types::CertificateDer<'_>]>| c.map_or(Vec::new(), |c| c[0].to_vec());
        Ok((first(connected.get_ref().1.peer_certificates()), first(accepted.get_ref().1.peer_certificates())))
    }

    #[tokio::test]
    async fn peers_present_and_trust_what_the_last_load_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, old_ca.cert.pem()).unwrap();
        let (a_files, b_files) = (node_files(dir.path(), "a", &bundle), node_files(dir.path(), "b", &bundle));
        let a_cert = old_ca.issue(&a_files.cert, &a_files.key);
        let b_cert = old_ca.issue(&b_files.cert, &b_files.key);
        let (a, mut a_reload) = NodeTls::load(&a_files).unwrap();
        let (b, mut b_reload) = NodeTls::load(&b_files).unwrap();
        assert_eq!(handshake(&a, &b).await, Ok((a_cert, b_cert)));

        // Both move to the new CA, without an overlap; neither configuration is rebuilt.
        std::fs::write(&bundle, new_ca.cert.pem()).unwrap();
        let a_cert = new_ca.issue(&a_files.cert, &a_files.key);
        let b_cert = new_ca.issue(&b_files.cert, &b_files.key);
        a_reload.on_signal();
        let e = handshake(&a, &b).await.expect_err("b still trusts only the old CA");
        assert!(e.contains("UnknownIssuer"), "{e}");
        let e = handshake(&b, &a).await.expect_err("b's certificate is from the old CA");
        assert!(e.contains("UnknownIssuer"), "{e}");
        b_reload.on_signal();
        assert_eq!(handshake(&a, &b).await, Ok((a_cert.clone(), b_cert.clone())));
        assert_eq!(handshake(&b, &a).await, Ok((b_cert, a_cert)));
    }
}
