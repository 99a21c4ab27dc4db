//! When the node's TLS files are loaded again, and what a load that fails does.
//!
//! Two triggers. SIGHUP loads the files at once. Without it, their contents are compared with
//! the last load every [`POLL_EVERY`], and a change is loaded once it has stayed the same for
//! one more look: a certificate and its key are two files written one after the other, and a
//! load between the two writes would be refused as a key that does not fit. Reading three small
//! files that often costs nothing measurable, and unlike modification times it sees every
//! change, a copy that keeps the old time or a Kubernetes secret's symlink swap included.
//!
//! A load is all or nothing: certificate, key and CA bundle are parsed and checked together,
//! then swapped in as one value (`live.rs`). One that fails leaves the material in force
//! untouched, logs the reason at WARN, counts in `cairn_tls_reloads_total{result="error"}`, and
//! is not tried again until the files change or another SIGHUP comes.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;

use super::live::{Live, Material};
use super::pem::{NodePem, TlsError};
use crate::config::TlsFiles;
use crate::metrics::METRICS;

/// How often the files are compared with the last load.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// SHA-256 of the files' contents (or of why they could not be read).
type Digest = [u8; 32];

/// The node's TLS files, the material loaded from them, and where the watch stands.
pub struct Reloader {
    files: TlsFiles,
    live: Live,
    /// What the material in force was loaded from.
    loaded: Digest,
    /// Contents whose load failed; not tried again unless a SIGHUP asks.
    failed: Option<Digest>,
    /// A change seen by the last poll, loaded if the next poll sees it unchanged.
    pending: Option<Digest>,
}

/// What one look at the files did.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Unchanged,
    /// A change, waiting for the next poll to see it settled.
    Settling,
    Reloaded,
    Failed,
}

impl Reloader {
    /// The start-up load: an error here stops the node before it touches any data.
    pub fn load(files: &TlsFiles) -> Result<Reloader, TlsError> {
        let read = NodePem::read(files);
        let loaded = digest(&read);
        let material = Material::parse(files, &read?)?;
        METRICS.tls_cert_not_after.store(material.not_after.unwrap_or(0), Relaxed);
        Ok(Reloader { files: files.clone(), live: Live::new(material), loaded, failed: None, pending: None })
    }

    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Loads the files now, changed or not.
    pub(super) fn on_signal(&mut self) -> Step {
        let read = NodePem::read(&self.files);
        let d = digest(&read);
        self.pending = None;
        self.apply(read, d, "SIGHUP")
    }

    fn poll(&mut self) -> Step {
        let read = NodePem::read(&self.files);
        let d = digest(&read);
        if d == self.loaded {
            // Back to what is in force (a failed change undone): nothing to load, and nothing
            // failed any more.
            (self.pending, self.failed) = (None, None);
            return Step::Unchanged;
        }
        if self.failed == Some(d) {
            self.pending = None;
            return Step::Unchanged;
        }
        if self.pending != Some(d) {
            self.pending = Some(d);
            return Step::Settling;
        }
        self.pending = None;
        self.apply(read, d, "file change")
    }

    fn apply(&mut self, read: Result<NodePem, TlsError>, d: Digest, trigger: &'static str) -> Step {
        match read.and_then(|pem| Material::parse(&self.files, &pem)) {
            Ok(material) => {
                let not_after = material.not_after;
                self.live.replace(material);
                (self.loaded, self.failed) = (d, None);
                METRICS.tls_reloads_ok.fetch_add(1, Relaxed);
                METRICS.tls_cert_not_after.store(not_after.unwrap_or(0), Relaxed);
                let expires = not_after.map_or_else(
                    || "unknown".to_string(),
                    |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
                );
                tracing::info!(trigger, %expires, "TLS files reloaded");
                Step::Reloaded
            }
            Err(e) => {
                self.failed = Some(d);
                METRICS.tls_reloads_failed.fetch_add(1, Relaxed);
                tracing::warn!(trigger, error = %e, "TLS reload failed; keeping the certificates in use");
                Step::Failed
            }
        }
    }
}

fn digest(read: &Result<NodePem, TlsError>) -> Digest {
    let mut h = Sha256::new();
    match read {
        Ok(pem) => {
            for part in [Some(&pem.cert), Some(&pem.key), pem.peer_ca.as_ref()] {
                // Length-prefixed, so bytes moving from one file to the next still differ.
                let bytes = part.map_or(&[][..], Vec::as_slice);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
        Err(e) => {
            h.update(b"unreadable: ");
            h.update(e.to_string());
        }
    }
    h.finalize().into()
}

/// The running watch. Dropping it stops the watch, so a node that fails to start after it began
/// (or an embedding program's node that stopped) leaves no task polling its files.
pub struct Watch(JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the watch: SIGHUP and, with TLS, the poll of the files. SIGHUP is handled from this
/// call on, TLS or not, so it never ends the process (its default); without TLS it is only
/// logged.
pub fn spawn_reloader(reloader: Option<Reloader>) -> Watch {
    let mut hangups = Hangups::register();
    Watch(tokio::spawn(async move {
        let Some(mut reloader) = reloader else {
            loop {
                hangups.next().await;
                tracing::info!("SIGHUP received; no TLS files to reload");
            }
        };
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The files are small and local, so they are read on this task; a step takes
            // microseconds.
            tokio::select! {
                () = hangups.next() => {
                    reloader.on_signal();
                }
                _ = poll.tick() => {
                    reloader.poll();
                }
            }
        }
    }))
}

/// SIGHUP, as something to wait for.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn register() -> Hangups {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle SIGHUP; TLS files are still reloaded when they change");
                    None
                }
            };
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    /// A self-signed certificate and its key, as PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// A node's files in `dir`, the certificate its own peer CA.
    fn files(dir: &Path) -> (TlsFiles, String) {
        let (cert, key) = pair();
        let files =
            TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem"), peer_ca: Some(dir.join("ca.pem")) };
        write(&files.cert, &cert);
        write(&files.key, &key);
        write(files.peer_ca.as_ref().unwrap(), &cert);
        (files, cert)
    }

    /// The leaf in force, as PEM text's DER.
    fn served(r: &Reloader) -> Vec<u8> {
        r.live().current().identity.cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn a_change_is_loaded_once_settled_and_a_failed_one_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (files, first) = files(dir.path());
        let mut r = Reloader::load(&files).unwrap();
        assert_eq!(r.poll(), Step::Unchanged);

        // The certificate is written first: its key is not there yet.
        let (cert, key) = pair();
        write(&files.cert, &cert);
        assert_eq!(r.poll(), Step::Settling);
        assert_eq!(r.poll(), Step::Failed);
        assert_eq!(r.poll(), Step::Unchanged, "a failed change is not loaded again");
        assert_eq!(served(&r), der(&first));

        write(&files.key, &key);
        assert_eq!(r.poll(), Step::Settling);
        assert_eq!(r.poll(), Step::Reloaded);
        assert_eq!(served(&r), der(&cert));
        assert_eq!(r.poll(), Step::Unchanged);
    }

    #[test]
    fn a_change_seen_half_done_waits_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = files(dir.path());
        let mut r = Reloader::load(&files).unwrap();
        let (cert, key) = pair();
        write(&files.cert, &cert);
        assert_eq!(r.poll(), Step::Settling);
        write(&files.key, &key);
        assert_eq!(r.poll(), Step::Settling, "changed again since the last poll");
        assert_eq!(r.poll(), Step::Reloaded);
        assert_eq!(served(&r), der(&cert));
    }

    #[test]
    fn a_signal_loads_at_once_and_a_failed_load_keeps_the_material() {
        let dir = tempfile::tempdir().unwrap();
        let (files, first) = files(dir.path());
        let mut r = Reloader::load(&files).unwrap();
        let before = r.live().current();

        write(&files.cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(r.on_signal(), Step::Failed);
        assert!(Arc::ptr_eq(&before, &r.live().current()), "nothing replaced");
        std::fs::remove_file(files.peer_ca.as_ref().unwrap()).unwrap();
        assert_eq!(r.on_signal(), Step::Failed, "a missing file");
        assert_eq!(r.poll(), Step::Unchanged, "the poll does not retry what failed");

        // Back to the files in force: nothing to do, and nothing counts as failed any more.
        write(&files.cert, &first);
        write(files.peer_ca.as_ref().unwrap(), &first);
        assert_eq!(r.poll(), Step::Unchanged);
        assert_eq!(r.on_signal(), Step::Reloaded, "SIGHUP always loads");
        assert_eq!(served(&r), der(&first));
    }

    #[test]
    fn start_up_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = files(dir.path());
        let (_, other_key) = pair();
        let wrong = dir.path().join("other.pem");
        write(&wrong, &other_key);
        let e = Reloader::load(&TlsFiles { key: wrong, ..files.clone() }).err().expect("a key that does not fit");
        assert!(e.to_string().contains("other.pem") && e.to_string().contains("does not fit"), "{e}");
        let e = Reloader::load(&TlsFiles { peer_ca: Some(dir.path().join("none.pem")), ..files })
            .err()
            .expect("a missing CA file");
        assert!(e.to_string().contains("none.pem"), "{e}");
    }
}
