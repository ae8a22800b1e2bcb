//! TLS for both sides: the server certificate clients see, and the trust
//! roots used to reach an `https://` upstream.
//!
//! rustls with the `ring` provider (no C toolchain beyond `cc`, no cmake),
//! TLS 1.2 and 1.3 only, and ALPN `h2` then `http/1.1` so HTTP/2 clients
//! get HTTP/2. The acceptor lives behind an `ArcSwap` so `SIGHUP` can put a
//! renewed certificate in place: connections accepted afterwards use it,
//! open ones keep the one they shook hands with.
//!
//! Every error names the file and what is wrong with it, because a bad
//! certificate path is the most common start-up mistake there is.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A TLS file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{key}: {} {problem}", path.display())]
    Content {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("proxy.tls: certificate {} and key {} do not form a usable pair: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// Where the server certificate and key are.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsFiles(cert: {}, key: {})",
            self.cert.display(),
            self.key.display()
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn content(key: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        key,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Builds a server config from the files (reads them now).
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let cert_pem = read("proxy.tls.cert", &files.cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            content(
                "proxy.tls.cert",
                &files.cert,
                format!("is not valid PEM: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(content(
            "proxy.tls.cert",
            &files.cert,
            "contains no CERTIFICATE",
        ));
    }
    let key_pem = read("proxy.tls.key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        content(
            "proxy.tls.key",
            &files.key,
            format!("holds no usable private key (PKCS#8, RSA or EC PEM): {e}"),
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The live server-side TLS state: an acceptor that a reload can replace.
pub struct Tls {
    acceptor: ArcSwap<TlsAcceptor>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Loads the certificate and key.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(files)?;
        Ok(Tls {
            acceptor: ArcSwap::from_pointee(TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// Re-reads the files; on error the current certificate stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        let config = server_config(files)?;
        self.acceptor
            .store(Arc::new(TlsAcceptor::from(Arc::new(config))));
        Ok(())
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.acceptor.load_full()
    }
}

/// The client config for an `https://` upstream: webpki's roots, or only
/// the CA certificates in `ca` when it is set.
pub fn upstream_client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let pem = read("proxy.upstream_ca", path)?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    content("proxy.upstream_ca", path, format!("is not valid PEM: {e}"))
                })?;
            if certs.is_empty() {
                return Err(content(
                    "proxy.upstream_ca",
                    path,
                    "contains no CERTIFICATE",
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    content(
                        "proxy.upstream_ca",
                        path,
                        format!("holds an unusable CA certificate: {e}"),
                    )
                })?;
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| content("proxy.upstream_ca", Path::new("-"), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
