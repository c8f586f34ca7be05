//! TLS for the control plane's HTTP servers (rustls with ring), with the certificate and key
//! re-read from disk whenever either file changes — rotation needs no restart. A rotated pair
//! that fails to load is logged and the previous one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Loads a PEM certificate chain and private key into a [`CertifiedKey`].
pub fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{}: no certificate found (expected PEM)", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| anyhow::anyhow!("{} / {}: {e}", cert.display(), key.display()))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A certificate resolver that reloads its files when their modification time changes.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Loads the pair once (errors are fatal at start: no certificate, no server).
    pub fn new(cert: PathBuf, key: PathBuf) -> anyhow::Result<Arc<Self>> {
        let ck = Arc::new(load_certified_key(&cert, &key)?);
        let state = Mutex::new((mtime(&cert), mtime(&key), ck));
        Ok(Arc::new(Self { cert, key, state }))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut g = self.state.lock().ok()?;
        let (c, k) = (mtime(&self.cert), mtime(&self.key));
        if (c, k) != (g.0, g.1) {
            match load_certified_key(&self.cert, &self.key) {
                Ok(ck) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    *g = (c, k, Arc::new(ck));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the previous one");
                    g.0 = c;
                    g.1 = k;
                }
            }
        }
        Some(g.2.clone())
    }
}

/// A rustls server config over a reloading certificate (HTTP/1.1 and HTTP/2).
pub fn server_config(resolver: Arc<ReloadingCert>) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}
