//! TLS for every protocol: certificates from PEM files, reloadable without dropping anyone.
//!
//! A connection whose first byte opens a TLS handshake is handed to rustls (the
//! [TLS wire](crate::transport::tls)); what comes out of the tunnel is sniffed again and
//! served like a plain connection (line protocol, IRC, or HTTP and WebSocket). Reloading (SIGHUP) swaps the configuration for new handshakes only;
//! established connections keep theirs.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The server's certificate and key, and the rustls configuration made from them.
pub struct Tls {
    /// The configuration new handshakes use; replaced whole on reload.
    current: RwLock<Arc<ServerConfig>>,
    /// Where the certificate chain is read from.
    cert: PathBuf,
    /// Where the private key is read from.
    key: PathBuf,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn invalid(path: &Path, what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}: {e}", path.display()),
    )
}

/// Reads a PEM certificate chain and private key into a rustls server configuration.
fn load(cert: &Path, key: &Path) -> io::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, "cannot read certificates", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert, "bad certificate", e))?;
    if certs.is_empty() {
        return Err(invalid(
            cert,
            "no certificate",
            "the file holds no CERTIFICATE block",
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, "cannot read the key", e))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, "TLS setup", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| invalid(cert, "certificate and key do not go together", e))
}

impl Tls {
    /// Loads the certificate chain and key.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> io::Result<Self> {
        let (cert, key) = (cert.into(), key.into());
        let config = load(&cert, &key)?;
        Ok(Self {
            current: RwLock::new(Arc::new(config)),
            cert,
            key,
        })
    }

    /// Reads the files again; on failure the old configuration stays in force.
    pub fn reload(&self) -> io::Result<()> {
        let config = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// The configuration for a new handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
