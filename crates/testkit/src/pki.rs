//! A test PKI: a CA made with rcgen, a server certificate it signed for loopback names, and a
//! small HTTPS host on 127.0.0.1 answering JSON. Nothing here reaches beyond loopback.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// A CA (its PEM, also in a temporary file) and a server certificate it signed.
pub struct TestPki {
    pub ca_pem: String,
    /// The CA's PEM in a file, e.g. for `extra_ca_file`; removed when the `TestPki` drops.
    pub ca_file: tempfile::NamedTempFile,
    pub cert: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl TestPki {
    /// A CA named `ca_name` and a certificate for `names` (DNS names or IP addresses).
    pub fn new(ca_name: &str, names: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(ca_cert.pem().as_bytes()).unwrap();
        ca_file.flush().unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            ca_file,
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A TLS acceptor presenting the certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        consentry_server::install_crypto_providers();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(tls))
    }
}

/// A host on HTTPS (127.0.0.1) with `pki`'s certificate, answering every request with the JSON
/// in `body`; its port, and a count of the requests that got through the TLS handshake.
pub async fn json_tls_host(pki: &TestPki, body: Arc<Mutex<Value>>) -> (u16, Arc<AtomicUsize>) {
    let acceptor = pki.acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counter, body) = (acceptor.clone(), counter.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.lock().unwrap().to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, served)
}
