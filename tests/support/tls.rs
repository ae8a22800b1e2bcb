//! Real TLS for tests: a throwaway CA, leaf certificates written as PEM
//! files, and clients (HTTP/1.1 and HTTP/2 over rustls) that trust only
//! that CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Resp, PATIENCE};

/// A certificate authority for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA with its own key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// Writes a leaf certificate for `localhost` and 127.0.0.1, signed by
    /// this CA, as `<stem>.crt` and `<stem>.key` in `dir`.
    pub fn leaf(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Writes the CA certificate as PEM.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).unwrap();
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Connects to `addr` with TLS (SNI `localhost`), trusting this CA.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(self.client_config(alpn));
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// Sends raw HTTP/1.1 bytes over TLS and parses the response.
    pub async fn h1(&self, addr: SocketAddr, bytes: &[u8]) -> Resp {
        let mut stream = self
            .connect(addr, &[b"http/1.1"])
            .await
            .expect("TLS handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        stream.write_all(bytes).await.unwrap();
        let mut all = Vec::new();
        // A TLS peer may close without close_notify after Connection: close.
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
            .await
            .expect("response in time");
        Resp::parse(&all)
            .unwrap_or_else(|| panic!("unparsable: {:?}", String::from_utf8_lossy(&all)))
    }

    /// Opens an HTTP/2 connection (ALPN h2) and returns a request sender.
    pub async fn h2(
        &self,
        addr: SocketAddr,
    ) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let stream = self.connect(addr, &[b"h2"]).await.expect("TLS handshake");
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server chose h2"
        );
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender
    }
}

/// Sends one HTTP/2 request; returns status, headers and the whole body.
pub async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("h2 response in time")
        .expect("h2 response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("h2 body")
        .to_bytes();
    (status, headers, body)
}
