//! SIP over TLS: the listener's certificate (reloaded on SIGHUP) and the client side towards
//! agency targets (their certificate checked against a CA file, the system's CAs or a SHA-256
//! pin; our certificate presented for mutual TLS). rustls with the ring provider.
//!
//! The listener asks for a client certificate but does not require one: a peer that sends one
//! can later claim, with `;alias` in its Via (RFC 5923 §5), to be a TLS target, and that claim
//! is held against the target's own checks; without one, TLS aliases are not honoured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use siaga_engine::dialplan::{CertPin, Dialplan, TargetTls};

/// Where Debian (and most distributions) keep the system's CA certificates.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// ring: builds with a C compiler alone (aws-lc-rs, rustls' default, is a large C/asm
/// build). rustls marks it deprecated because it lacks the post-quantum key exchange; the SIP
/// peers of a 112 centre (SBCs, Kamailio/OpenSSL 3.0) negotiate X25519 or P-256 anyway.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 of a certificate (DER), as a pin is written.
pub fn fingerprint(cert: &CertificateDer<'_>) -> CertPin {
    let digest = sha2::Sha256::digest(cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    CertPin(out)
}

/// A PEM certificate chain (at least one); errors name the file.
pub(crate) fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: not a readable PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("{}: holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// A PEM private key; errors name the file.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// Why a certificate and key could not make a server configuration, naming both files.
pub(crate) fn key_mismatch(cert: &Path, key: &Path) -> String {
    format!(
        "{} and {}: the key does not fit the certificate, or is of a kind TLS cannot use",
        cert.display(),
        key.display()
    )
}

/// The listener's certificate and key, swapped as a whole on SIGHUP: connections already up
/// keep the session they have; new ones get the new certificate.
pub struct TlsServer {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let config = Self::read(cert, key)?;
        Ok(TlsServer {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: RwLock::new(config.0),
        })
    }

    fn read(cert: &Path, key: &Path) -> anyhow::Result<(Arc<ServerConfig>, CertPin)> {
        let chain = read_certs(cert)?;
        let pin = chain.first().map(fingerprint).context("no certificate")?;
        let private = read_key(key)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_client_cert_verifier(Arc::new(OptionalClientCert {
                provider: provider(),
            }))
            .with_single_cert(chain, private)
            .with_context(|| key_mismatch(cert, key))?;
        Ok((Arc::new(config), pin))
    }

    /// Reads the files again; on success new connections use them. Returns the new
    /// certificate's SHA-256, or why the old one stays.
    pub fn reload(&self) -> anyhow::Result<CertPin> {
        let (config, pin) = Self::read(&self.cert, &self.key)?;
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(pin)
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// The certificate in force's SHA-256 (printed at start-up, for peers that pin it).
    pub fn fingerprint(&self) -> Option<CertPin> {
        read_certs(&self.cert).ok()?.first().map(fingerprint)
    }
}

/// How to reach one TLS target: the checks on its certificate, our certificate, the name.
#[derive(Clone)]
pub struct TlsPeer {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// For log lines: the target as written in the plan.
    pub target: String,
    verifier: Arc<TargetVerifier>,
}

impl TlsPeer {
    /// Whether a certificate chain a peer presented on a connection it opened passes this
    /// target's checks (pin, CA and name): only then may that connection carry our requests to
    /// the target (RFC 5923 §5).
    pub fn vouches_for(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or("the peer presented no certificate")?;
        self.verifier
            .check(end_entity, intermediates, &self.name, UnixTime::now())
            .map_err(|e| describe(&e))
    }
}

/// The TLS settings of every TLS target in a plan, by resolved address.
pub type TlsPeers = HashMap<SocketAddr, TlsPeer>;

/// Builds the client side for every TLS target of `plan` resolved in `hops` (target URI key →
/// address). A file that cannot be read, or two targets on one address with different
/// settings, rejects the plan.
pub fn peers_for(
    plan: &Dialplan,
    resolved: &HashMap<String, SocketAddr>,
) -> Result<TlsPeers, String> {
    let mut peers: TlsPeers = HashMap::new();
    let mut settings_of: HashMap<SocketAddr, (TargetTls, String)> = HashMap::new();
    let mut errors = Vec::new();
    for target in plan.targets() {
        let Some(tls) = &target.tls else { continue };
        let Some(key) = siaga_engine::Directory::key_of(target.uri.as_str()) else {
            continue;
        };
        let Some(&remote) = resolved.get(&key) else {
            continue;
        };
        if let Some((first, uri)) = settings_of.get(&remote) {
            if first != tls {
                errors.push(format!(
                    "targets {uri} and {} are both {remote} but have different tls_* settings: \
                     one connection serves both, so give them the same",
                    target.uri
                ));
            }
            continue;
        }
        settings_of.insert(remote, (tls.clone(), target.uri.to_string()));
        match client_for(tls, target.uri.host(), target.uri.as_str()) {
            Ok(peer) => {
                peers.insert(remote, peer);
            }
            Err(e) => errors.push(format!("target {}: {e:#}", target.uri)),
        }
    }
    if errors.is_empty() {
        Ok(peers)
    } else {
        Err(errors.join("\n"))
    }
}

fn client_for(tls: &TargetTls, host: &str, uri: &str) -> anyhow::Result<TlsPeer> {
    let name_text = tls.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name_text.to_owned()).map_err(|_| {
        anyhow::anyhow!("tls_server_name {name_text:?} is not a DNS name or address")
    })?;
    let provider = provider();
    let chain_check = match (&tls.ca_file, tls.pin) {
        (Some(ca), _) => Some(webpki_verifier(&read_certs(ca)?, &provider)?),
        // A pin alone decides: the self-signed certificate of an SBC is the usual case.
        (None, Some(_)) => None,
        (None, None) => {
            let system = read_certs(Path::new(SYSTEM_CA_BUNDLE)).context(
                "no tls_ca or tls_pin is given, so the system's CAs are used, and they cannot be read",
            )?;
            Some(webpki_verifier(&system, &provider)?)
        }
    };
    let verifier = Arc::new(TargetVerifier {
        chain_check,
        pin: tls.pin,
        target: uri.to_owned(),
        provider: provider.clone(),
    });
    let verifier_for_alias = verifier.clone();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .with_context(|| {
                format!(
                    "tls_cert {} and tls_key {} do not fit together",
                    cert.display(),
                    key.display()
                )
            })?,
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsPeer {
        config: Arc::new(config),
        name,
        target: uri.to_owned(),
        verifier: verifier_for_alias,
    })
}

fn webpki_verifier(
    roots: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<WebPkiServerVerifier>> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        anyhow::bail!("no usable CA certificate in the file");
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .context("building the certificate check")
}

/// The target's certificate must chain to its CAs (when any are in force) and match its pin
/// (when one is given). A mismatch is an error with the reason, which ends the attempt.
#[derive(Debug)]
struct TargetVerifier {
    chain_check: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<CertPin>,
    target: String,
    provider: Arc<CryptoProvider>,
}

/// A rustls error in words: its own Display shows our pin mismatch in Debug form.
fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            format!("invalid peer certificate: {}", other.0)
        }
        other => other.to_string(),
    }
}

/// Why a TLS handshake (as tokio-rustls reports it) failed.
pub fn handshake_error(e: &std::io::Error) -> String {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or_else(|| e.to_string(), describe)
}

/// The handshake signature checks both verifiers share: the provider's algorithms, on a
/// `provider` field.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.provider.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.provider.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// The certificate presented is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the certificate's SHA-256 is {got}, not the tls_pin {want}")]
struct PinMismatch {
    got: CertPin,
    want: CertPin,
}

impl TargetVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if let Some(chain) = &self.chain_check {
            chain.verify_server_cert(end_entity, intermediates, server_name, &[], now)?;
        }
        if let Some(want) = self.pin {
            let got = fingerprint(end_entity);
            if got != want {
                let mismatch = PinMismatch { got, want };
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))),
                ));
            }
        }
        Ok(())
    }
}

impl ServerCertVerifier for TargetVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, server_name, now)
            .inspect_err(|e| {
                let why = describe(e);
                tracing::warn!(target_uri = %self.target, "agency TLS certificate refused: {why}");
            })?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// The listener's client certificates: asked for, never required, and accepted as presented
/// (the handshake still proves the peer holds the key). A certificate stands for nothing by
/// itself; it is checked against a target's pin or CA only when the peer claims to be that
/// target (an RFC 5923 alias).
#[derive(Debug)]
struct OptionalClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signature_checks!();
}
