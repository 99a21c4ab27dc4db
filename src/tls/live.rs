//! What a reload replaces, and the rustls hooks that read it on every handshake.
//!
//! The node's `ServerConfig` and peer `ClientConfig` are built once, around these hooks, and
//! never rebuilt: the listener, Raft's connections (`http1.rs`) and both reqwest clients keep
//! the configurations they were given at start-up (reqwest clones a `ClientConfig`, which
//! shares the hooks), and each new handshake asks the hooks for the certificate and the trust
//! in force now. Connections already open keep what they negotiated, so a reload drops none.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::expiry;
use super::pem::{self, provider, NodePem, TlsError};
use crate::config::TlsFiles;

/// Resumable sessions the server remembers (rustls's default).
const SESSIONS: usize = 256;

/// Everything one load of the files produced, checked and ready to use; replaced whole.
#[derive(Debug)]
pub struct Material {
    /// The certificate chain and key, served to clients and presented to peers.
    pub identity: Arc<CertifiedKey>,
    /// From `--peer-ca`; `None` without it (then the peer client trusts the system roots,
    /// read once, and the server asks for no client certificate).
    peer_trust: Option<PeerTrust>,
    /// The server's resumable sessions. Each load starts an empty cache, so every connection
    /// after a reload makes a full handshake against the new certificate and CA: a resumed
    /// session skips the client-certificate check, and would outlive a CA dropped from
    /// `--peer-ca` for as long as its tickets do.
    sessions: Arc<ServerSessionMemoryCache>,
    /// notAfter of the leaf, in Unix seconds, when it could be read.
    pub not_after: Option<u64>,
}

/// Verifiers built from one `--peer-ca` bundle.
#[derive(Debug)]
struct PeerTrust {
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<dyn ServerCertVerifier>,
}

impl Material {
    /// Parses and checks `pem` (the contents of `files`): all of it is usable, or the error
    /// names the file that is not.
    pub fn parse(files: &TlsFiles, pem: &NodePem) -> Result<Material, TlsError> {
        let certs = pem::certs(&files.cert, &pem.cert)?;
        let not_after = expiry::not_after(&certs[0]);
        let key = pem::key(&files.key, &pem.key)?;
        let key = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::content(&files.key, format!("not a usable private key: {e}")))?;
        let identity = CertifiedKey::new(certs, key);
        match identity.keys_match() {
            // A key type that cannot say its public key: rustls accepts it as well.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e @ rustls::Error::InconsistentKeys(_)) => {
                let what = format!("does not fit the certificate in {}: {e}", files.cert.display());
                return Err(TlsError::content(&files.key, what));
            }
            Err(e) => return Err(TlsError::content(&files.cert, format!("not a usable certificate: {e}"))),
        }
        let peer_trust = match (&files.peer_ca, &pem.peer_ca) {
            (Some(path), Some(bundle)) => {
                let roots = Arc::new(pem::roots(path, bundle)?);
                let unusable = |e: rustls::server::VerifierBuilderError| {
                    TlsError::content(path, format!("cannot verify peers with it: {e}"))
                };
                let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(unusable)?;
                let servers =
                    WebPkiServerVerifier::builder_with_provider(roots, provider()).build().map_err(unusable)?;
                Some(PeerTrust { clients, servers })
            }
            _ => None,
        };
        Ok(Material {
            identity: Arc::new(identity),
            peer_trust,
            sessions: ServerSessionMemoryCache::new(SESSIONS),
            not_after,
        })
    }

    fn peer_trust(&self) -> Result<&PeerTrust, rustls::Error> {
        // The hooks that call this are installed only with `--peer-ca`, and every load of such
        // a node has one; this is the answer should that ever change.
        self.peer_trust.as_ref().ok_or_else(|| rustls::Error::General("no --peer-ca loaded".into()))
    }
}

/// The material in force, shared by every hook and replaced by a reload. A std `RwLock`, not
/// tokio's: rustls calls the hooks from synchronous code, and the lock is held only to clone an
/// `Arc`, so a handshake holds the material it started with even across a reload.
#[derive(Debug, Clone)]
pub struct Live(Arc<RwLock<Arc<Material>>>);

impl Live {
    pub fn new(material: Material) -> Live {
        Live(Arc::new(RwLock::new(Arc::new(material))))
    }

    pub fn current(&self) -> Arc<Material> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn replace(&self, material: Material) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(material);
    }

    /// The server side of the node's listener. With `--peer-ca` it asks every client for a
    /// certificate (verified against the bundle in force, but optional: API clients have none;
    /// `/raft/*` checks for one).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match self.current().peer_trust {
            Some(_) => builder.with_client_cert_verifier(Arc::new(PeerClients::new(self.clone()))),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(Identity(self.clone())));
        config.session_storage = Arc::new(Sessions(self.clone()));
        // The server speaks HTTP/1.1 only (axum without its http2 feature).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The client side of the node's connections to peers. With `--peer-ca` they trust only
    /// the bundle in force and present the node's own certificate; without it they trust the
    /// system roots and present none.
    pub fn peer_client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(match self.current().peer_trust {
            // `dangerous` only because the verifier is not rustls's own; it delegates to
            // rustls's WebPKI verifier for the bundle in force.
            Some(_) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PeerServers::new(self.clone())))
                .with_client_cert_resolver(Arc::new(Identity(self.clone()))),
            None => builder.with_root_certificates(pem::native_roots()).with_no_client_auth(),
        })
    }
}

/// The node's certificate: served to every client, and presented to the peers it dials.
#[derive(Debug)]
struct Identity(Live);

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().identity.clone())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().identity.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Checks a client's certificate chain against the `--peer-ca` in force. Signatures do not
/// depend on the CA, so they are checked with the provider's algorithms directly, as rustls's
/// own verifier does.
#[derive(Debug)]
struct PeerClients {
    live: Live,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerClients {
    fn new(live: Live) -> PeerClients {
        PeerClients { live, algorithms: provider().signature_verification_algorithms }
    }
}

impl ClientCertVerifier for PeerClients {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// None: hints would have to be borrowed from a bundle a reload may replace. Without them
    /// a client sends whatever certificate it has, which is what peers do.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.live.current().peer_trust()?.clients.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks a peer's server certificate against the `--peer-ca` in force (see [`PeerClients`]).
#[derive(Debug)]
struct PeerServers {
    live: Live,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerServers {
    fn new(live: Live) -> PeerServers {
        PeerServers { live, algorithms: provider().signature_verification_algorithms }
    }
}

impl ServerCertVerifier for PeerServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let current = self.live.current();
        current.peer_trust()?.servers.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server's session cache of the material in force (see [`Material::sessions`]).
#[derive(Debug)]
struct Sessions(Live);

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.current().sessions.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().sessions.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().sessions.take(key)
    }

    fn can_cache(&self) -> bool {
        self.0.current().sessions.can_cache()
    }
}
