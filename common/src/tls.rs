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
    Ok(ServerTls::load(files, None)?.config)
}

/// The coordinator's TLS material, reloadable without a restart: the certificate and key it
/// serves, the CA bundle client certificates must chain to, and an optional CRL. New handshakes
/// use what was loaded last; connections already open are not touched.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    files: TlsFiles,
    crl: Option<PathBuf>,
    verifier: Arc<LoggingClientVerifier>,
    resolver: Arc<ReloadableCert>,
    revocations: Revocations,
}

/// The serials the CRL in use revokes, for checks beyond the handshake: a connection opened
/// before a revocation carries on at the TLS level, so the services check each call (and end
/// long-lived sessions) against this set, which every reload replaces.
#[derive(Debug, Clone)]
pub struct Revocations {
    serials: Arc<std::sync::RwLock<Arc<std::collections::HashSet<Vec<u8>>>>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            serials: Arc::default(),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Revocations {
    /// Whether the certificate (DER) has a serial the CRL revokes. An unparsable certificate
    /// is not revoked here (the handshake already accepted it).
    pub fn is_revoked(&self, cert_der: &[u8]) -> bool {
        // Checked on every call: without revocations (the usual case) no certificate is parsed.
        if self
            .serials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return false;
        }
        serial_of_der(cert_der).is_some_and(|s| self.is_revoked_serial(&s))
    }

    pub fn is_revoked_serial(&self, serial: &[u8]) -> bool {
        self.serials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(serial)
    }

    /// Changes whenever a reload replaces the set.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn replace(&self, serials: std::collections::HashSet<Vec<u8>>) {
        *self.serials.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(serials);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The serial number of a DER certificate.
pub fn serial_of_der(cert_der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
    Some(cert.raw_serial().to_vec())
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("crl", &self.crl)
            .finish_non_exhaustive()
    }
}

/// What one load of the files gives.
struct Material {
    verifier: Arc<dyn ClientCertVerifier>,
    key: Arc<rustls::sign::CertifiedKey>,
    revoked: std::collections::HashSet<Vec<u8>>,
}

fn load_material(files: &TlsFiles, crl: Option<&Path>) -> Result<Material> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&files.ca)? {
        roots
            .add(ca)
            .with_context(|| format!("add CA certificate from {}", files.ca.display()))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let mut revoked = std::collections::HashSet::new();
    if let Some(path) = crl {
        let pem = std::fs::read(path).with_context(|| format!("read CRL {}", path.display()))?;
        let crls = rustls_pemfile::crls(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parse CRL {}", path.display()))?;
        if crls.is_empty() {
            bail!(
                "{} holds no PEM CRL (-----BEGIN X509 CRL-----); write it with `lifeboat pki revoke`",
                path.display()
            );
        }
        for c in &crls {
            use x509_parser::prelude::FromDer;
            let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(c)
                .map_err(|e| anyhow::anyhow!("parse CRL {}: {e}", path.display()))?;
            revoked.extend(
                parsed
                    .iter_revoked_certificates()
                    .map(|r| r.raw_serial().to_vec()),
            );
        }
        builder = builder
            .with_crls(crls)
            // Leaves only (the CA is the trust anchor), and certificates of another CA in the
            // bundle that this CRL does not cover are still accepted.
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let verifier = builder
        .build()
        .context("build client certificate verifier (is the CRL signed by the CA?)")?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let key = rustls::sign::CertifiedKey::from_der(certs, key, &provider()).with_context(|| {
        format!(
            "{} and {} do not form a usable certificate and key pair",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(Material {
        verifier,
        key: Arc::new(key),
        revoked,
    })
}

/// Size and modification time of each file, to notice a change.
fn fingerprint(paths: &[&Path]) -> Vec<Option<(u64, std::time::SystemTime)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

impl ServerTls {
    /// Loads the files; `crl`, when set, is a PEM CRL (several may be concatenated).
    pub fn load(files: &TlsFiles, crl: Option<&Path>) -> Result<Self> {
        let m = load_material(files, crl)?;
        let revocations = Revocations::default();
        revocations.replace(m.revoked);
        let verifier = Arc::new(LoggingClientVerifier {
            inner: std::sync::RwLock::new(m.verifier),
        });
        let resolver = Arc::new(ReloadableCert {
            key: std::sync::RwLock::new(m.key),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            files: files.clone(),
            crl: crl.map(Path::to_owned),
            verifier,
            resolver,
            revocations,
        })
    }

    /// The revoked serials of the CRL in use, updated by every reload.
    pub fn revocations(&self) -> Revocations {
        self.revocations.clone()
    }

    /// Loads the files again. On any error the material in use stays as it was.
    pub fn reload(&self) -> Result<()> {
        let m = load_material(&self.files, self.crl.as_deref())?;
        *self
            .verifier
            .inner
            .write()
            .unwrap_or_else(|p| p.into_inner()) = m.verifier;
        *self.resolver.key.write().unwrap_or_else(|p| p.into_inner()) = m.key;
        let revoked = m.revoked.len();
        self.revocations.replace(m.revoked);
        tracing::info!(
            cert = %self.files.cert.display(),
            ca = %self.files.ca.display(),
            crl = ?self.crl,
            revoked,
            "reloaded the TLS certificate, key, CA bundle and CRL; new connections use them"
        );
        Ok(())
    }

    /// Reloads when a file changes (checked every `every`) or on SIGHUP, until `shutdown`.
    pub fn watch(&self, every: Duration, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let paths = |t: &ServerTls| {
                let mut v = vec![
                    t.files.ca.clone(),
                    t.files.cert.clone(),
                    t.files.key.clone(),
                ];
                v.extend(t.crl.clone());
                v
            };
            let list = paths(&this);
            let refs: Vec<&Path> = list.iter().map(PathBuf::as_path).collect();
            let mut seen = fingerprint(&refs);
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let forced = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => false,
                    () = hangup => true,
                };
                let now = fingerprint(&refs);
                if !forced && now == seen {
                    continue;
                }
                seen = now;
                if let Err(e) = this.reload() {
                    tracing::error!(
                        "the TLS files changed but could not be loaded; still serving the previous certificate, CA bundle and CRL: {e:#}"
                    );
                }
            }
        });
    }
}

/// The certificate and key served, swapped by [`ServerTls::reload`].
#[derive(Debug)]
struct ReloadableCert {
    key: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Wraps webpki's verifier to log every refusal with the identity the peer presented.
struct LoggingClientVerifier {
    inner: std::sync::RwLock<Arc<dyn ClientCertVerifier>>,
}

impl LoggingClientVerifier {
    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl fmt::Debug for LoggingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoggingClientVerifier")
    }
}

impl ClientCertVerifier for LoggingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The CA bundle can be reloaded, so no borrowed hints; clients send their one
        // certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()
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
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
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

/// Bounds on TLS handshakes in progress: a flood of connections that never finish their
/// handshake (or never start one) costs at most this many tasks and sockets, and one source
/// address cannot take all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Handshakes in progress at once, from all addresses.
    pub global: usize,
    /// Handshakes in progress at once from one IP address.
    pub per_ip: usize,
    pub timeout: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            global: 256,
            per_ip: 32,
            timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// Handshakes in progress per source address; an entry goes when its count reaches zero.
#[derive(Debug, Default)]
struct PerIp {
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<PerIpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerIpSlot {
            map: self.clone(),
            ip,
        })
    }
}

struct PerIpSlot {
    map: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut counts = self.map.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Logs at most one line per reason per interval, with how many were left out: a flood of
/// refused connections cannot flood the log.
#[derive(Debug)]
struct RateLimitedLog {
    every: Duration,
    state: std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether to log this event of `reason` now, and how many of its kind were suppressed
    /// since the last line.
    fn admit(&self, reason: &'static str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.get_mut(reason) {
            Some((last, suppressed)) if now.duration_since(*last) < self.every => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                state.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

/// How often each kind of refused connection is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes TLS handshakes concurrently (a slow or hostile client
/// never blocks the accept loop), within `limits`: over the global or the per-address bound a
/// new connection is closed at once. Ends when `shutdown` is cancelled.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: HandshakeLimits,
    shutdown: CancellationToken,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let global = Arc::new(tokio::sync::Semaphore::new(limits.global));
    let per_ip = Arc::new(PerIp::default());
    let log = Arc::new(RateLimitedLog::new(REFUSAL_LOG_EVERY));
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
            let Ok(permit) = global.clone().try_acquire_owned() else {
                if let Some(suppressed) = log.admit("global") {
                    tracing::warn!(
                        %peer,
                        suppressed,
                        "closed a connection: {} TLS handshakes are already in progress (a connection flood?)",
                        limits.global
                    );
                }
                drop(tcp);
                continue;
            };
            let Some(slot) = per_ip.try_take(peer.ip(), limits.per_ip) else {
                if let Some(suppressed) = log.admit("per_ip") {
                    tracing::warn!(
                        %peer,
                        suppressed,
                        "closed a connection: {} TLS handshakes from this address are already in progress",
                        limits.per_ip
                    );
                }
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let result = tokio::time::timeout(limits.timeout, acceptor.accept(tcp)).await;
                drop(slot);
                drop(permit);
                match result {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        if let Some(suppressed) = log.admit("refused") {
                            tracing::info!(%peer, suppressed, "TLS handshake refused: {e}");
                        }
                    }
                    Err(_) => {
                        if let Some(suppressed) = log.admit("timeout") {
                            tracing::info!(%peer, suppressed, "TLS handshake timed out");
                        }
                    }
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
