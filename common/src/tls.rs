//! Mutual TLS for every gRPC connection.
//!
//! The coordinator builds its own rustls `ServerConfig` (rather than tonic's `ServerTlsConfig`)
//! so that a refused client certificate is logged with the identity it presented (X33), and
//! serves tonic over the accepted streams. Clients (agent, CLI) use tonic's client TLS.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures::Stream;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::secret::check_private_file;

/// Paths of a CA bundle, a certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse PEM certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} contains no PEM certificate", path.display());
    }
    Ok(certs)
}

/// Loads a private key, refusing a key file readable by group or others.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    check_private_file(path)?;
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parse PEM private key in {}", path.display()))?
        .with_context(|| format!("{} contains no PEM private key", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server TLS for the coordinator: client certificates from `files.ca` are required.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&files.ca)? {
        roots
            .add(ca)
            .with_context(|| format!("add CA certificate from {}", files.ca.display()))?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context("build client certificate verifier")?;
    let verifier = Arc::new(LoggingClientVerifier { inner });
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} and {} do not form a usable certificate and key pair",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Wraps webpki's verifier to log every refusal with the identity the peer presented.
struct LoggingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for LoggingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoggingClientVerifier")
    }
}

impl ClientCertVerifier for LoggingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .and_then(|ok| {
                // webpki accepts a certificate without any EKU extension; lifeboat requires
                // client certificates to say they are for client authentication.
                if has_client_auth_eku(end_entity) {
                    Ok(ok)
                } else {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::InvalidPurpose,
                    ))
                }
            })
            .inspect_err(|e| {
                tracing::warn!(
                    presented = %crate::identity::describe_der(end_entity),
                    "refused client certificate: {e}"
                );
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether the certificate carries an extended key usage extension that includes clientAuth.
fn has_client_auth_eku(der: &CertificateDer<'_>) -> bool {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.extended_key_usage()
                .ok()
                .flatten()
                .map(|e| e.value.client_auth)
        })
        .unwrap_or(false)
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes TLS handshakes concurrently (a slow or hostile client
/// never blocks the accept loop). Ends when `shutdown` is cancelled.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("failed to accept connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A gRPC channel to the coordinator with our client certificate.
///
/// `url` is `https://HOST:PORT`; `server_name`, when set, overrides the name checked against
/// the coordinator's certificate.
pub fn client_endpoint(
    url: &str,
    files: &TlsFiles,
    server_name: Option<&str>,
) -> Result<tonic::transport::Endpoint> {
    if !url.starts_with("https://") {
        bail!(
            "coordinator URL {url:?} must start with https:// (every connection uses mutual TLS)"
        );
    }
    let ca = std::fs::read(&files.ca).with_context(|| format!("read {}", files.ca.display()))?;
    load_certs(&files.ca)?;
    let cert =
        std::fs::read(&files.cert).with_context(|| format!("read {}", files.cert.display()))?;
    load_certs(&files.cert)?;
    load_key(&files.key)?;
    let key = std::fs::read(&files.key).with_context(|| format!("read {}", files.key.display()))?;
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .identity(tonic::transport::Identity::from_pem(cert, key));
    if let Some(name) = server_name {
        tls = tls.domain_name(name);
    }
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid coordinator URL {url:?}"))?
        .tls_config(tls)
        .context("configure TLS")?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_need_the_client_auth_eku() {
        let ca = crate::pki::Ca::generate("t").expect("ca");
        let agent = ca.issue(&crate::pki::LeafSpec::agent("a")).expect("agent");
        let server = ca
            .issue(&crate::pki::LeafSpec::coordinator(
                "c",
                vec!["localhost".into()],
            ))
            .expect("server");
        let der = |pem: &str| CertificateDer::from(crate::pki::pem_to_der(pem).expect("der"));
        assert!(has_client_auth_eku(&der(&agent.cert_pem)));
        assert!(!has_client_auth_eku(&der(&server.cert_pem)));
        assert!(!has_client_auth_eku(&CertificateDer::from(vec![1, 2, 3])));
    }
}
