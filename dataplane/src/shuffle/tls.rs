//! Mutual TLS 1.3 for the shuffle: one certificate authority per cluster, one certificate per
//! executor, ring as the only crypto provider.
//!
//! The scheduler creates a [`ClusterCa`] when the cluster starts (and persists its PEM so a
//! failed-over scheduler keeps issuing certificates peers trust), and issues every executor an
//! [`ExecutorCredentials`] naming it. Both ends of a shuffle connection present their
//! certificate and verify the peer's chain against the cluster CA; the dialing side also checks
//! that the server is the executor it meant to reach.
//!
//! Executor ids are free-form Mesos strings, so a certificate names its executor twice: as the
//! subject common name (for humans) and as a DNS SAN that encodes the id injectively in hex
//! (see [`server_name_for`]), which is what TLS name checks compare.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// ALPN protocol id of the shuffle; a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"mesoflow-shuffle/1";
const SAN_SUFFIX: &str = "executor.mesoflow";
const MAX_EXECUTOR_ID_BYTES: usize = 100;

/// Errors creating or loading certificates and TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("executor id must be 1 to {MAX_EXECUTOR_ID_BYTES} bytes, got {0} bytes")]
    BadExecutorId(usize),
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC does not accept this TLS configuration: {0}")]
    Quic(String),
    #[error("PEM input has no {what}")]
    MissingPem { what: &'static str },
    #[error("PEM input is not valid: {0}")]
    Pem(String),
}

/// The DNS name under which an executor's certificate is issued and checked.
///
/// The id is hex-encoded (so any string maps to a valid, distinct name) and split into labels of
/// at most 60 characters.
pub fn server_name_for(executor_id: &str) -> Result<String, TlsError> {
    if executor_id.is_empty() || executor_id.len() > MAX_EXECUTOR_ID_BYTES {
        return Err(TlsError::BadExecutorId(executor_id.len()));
    }
    let hex: String = executor_id.bytes().map(|b| format!("{b:02x}")).collect();
    let mut labels: Vec<&str> = Vec::new();
    let mut rest = hex.as_str();
    while !rest.is_empty() {
        let (label, tail) = rest.split_at(rest.len().min(60));
        labels.push(label);
        rest = tail;
    }
    Ok(format!("x{}.{SAN_SUFFIX}", labels.join(".x")))
}

/// Inverse of [`server_name_for`]: the executor id a certificate's DNS SAN names, if any.
pub fn executor_id_from_server_name(name: &str) -> Option<String> {
    let encoded = name.strip_suffix(SAN_SUFFIX)?.strip_suffix('.')?;
    let mut bytes = Vec::new();
    for label in encoded.split('.') {
        let hex = label.strip_prefix('x')?;
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        for pair in hex.as_bytes().chunks(2) {
            let text = std::str::from_utf8(pair).ok()?;
            bytes.push(u8::from_str_radix(text, 16).ok()?);
        }
    }
    String::from_utf8(bytes).ok()
}

/// The executor id in a peer's end-entity certificate (already verified by TLS).
pub fn executor_id_of_certificate(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    parsed
        .valid_dns_names()
        .find_map(executor_id_from_server_name)
}

/// The current calendar year (approximately; certificates are valid from the start of the
/// previous year, so a few days of error or clock skew do not matter).
fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

/// The per-cluster certificate authority.
pub struct ClusterCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    fn params(cluster_name: &str) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("mesoflow cluster CA {cluster_name}"),
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_before = rcgen::date_time_ymd(current_year() - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(current_year() + 10, 1, 1);
        params
    }

    /// Creates a fresh CA (ECDSA P-256, valid for ten years) for the named cluster.
    pub fn generate(cluster_name: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let params = Self::params(cluster_name);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_der,
            cert_pem,
        })
    }

    /// Loads a CA persisted with [`ClusterCa::to_pem`] (e.g. after a scheduler failover).
    /// `cluster_name` must be the one it was generated with: issued certificates name their
    /// issuer by it.
    pub fn from_pem(cluster_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::from_pem(key_pem)?;
        let cert_der = first_certificate(cert_pem)?;
        let issuer = rcgen::Issuer::new(Self::params(cluster_name), key);
        Ok(Self {
            issuer,
            cert_der,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// `(certificate PEM, private key PEM)`. The key is the cluster's root secret: store it
    /// where only the scheduler can read it.
    pub fn to_pem(&self) -> (String, String) {
        (self.cert_pem.clone(), self.issuer.key().serialize_pem())
    }

    /// The CA certificate, which every executor trusts.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues the certificate an executor presents, valid as both TLS client and server.
    pub fn issue(&self, executor_id: &str) -> Result<ExecutorCredentials, TlsError> {
        let name = server_name_for(executor_id)?;
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![name])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, executor_id);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = rcgen::date_time_ymd(current_year() - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(current_year() + 2, 1, 1);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ExecutorCredentials {
            executor_id: executor_id.to_owned(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            ca_der: self.cert_der.clone(),
            pem: (cert.pem(), key.serialize_pem(), self.cert_pem.clone()),
        })
    }
}

fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or(TlsError::MissingPem {
            what: "CERTIFICATE block",
        })?
        .map_err(|err| TlsError::Pem(err.to_string()))
}

/// What an executor needs to join the shuffle: its own certificate and key, and the cluster CA.
#[derive(Clone)]
pub struct ExecutorCredentials {
    pub executor_id: String,
    pub cert_der: CertificateDer<'static>,
    /// PKCS#8 DER private key.
    pub key_der: Vec<u8>,
    pub ca_der: CertificateDer<'static>,
    /// The same three items as PEM: certificate, key, CA certificate.
    pem: (String, String, String),
}

impl std::fmt::Debug for ExecutorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorCredentials")
            .field("executor_id", &self.executor_id)
            .finish_non_exhaustive()
    }
}

impl ExecutorCredentials {
    /// `(certificate PEM, private key PEM, CA certificate PEM)`, for shipping to an executor.
    pub fn to_pem(&self) -> (String, String, String) {
        self.pem.clone()
    }

    /// Loads credentials shipped as PEM. The executor id is read from the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let cert_der = first_certificate(cert_pem)?;
        let ca_der = first_certificate(ca_pem)?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|err| TlsError::Pem(format!("private key: {err}")))?;
        let executor_id = executor_id_of_certificate(&cert_der).ok_or(TlsError::MissingPem {
            what: "mesoflow executor name in the certificate",
        })?;
        Ok(Self {
            executor_id,
            cert_der,
            key_der: key.secret_pkcs8_der().to_vec(),
            ca_der,
            pem: (cert_pem.to_owned(), key_pem.to_owned(), ca_pem.to_owned()),
        })
    }

    /// The same identity, trusting another CA instead (e.g. while rotating the cluster CA).
    pub fn trusting(&self, ca_pem: &str) -> Result<Self, TlsError> {
        let mut other = self.clone();
        other.ca_der = first_certificate(ca_pem)?;
        other.pem.2 = ca_pem.to_owned();
        Ok(other)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(roots))
    }

    /// The QUIC server side: TLS 1.3 only, client certificate required and checked against the CA.
    pub fn quic_server_config(&self) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert_der.clone()], self.key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|err| TlsError::Quic(err.to_string()))
    }

    /// The QUIC client side: TLS 1.3 only, presents this executor's certificate, trusts the CA.
    pub fn quic_client_config(&self) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert_der.clone()], self.key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|err| TlsError::Quic(err.to_string()))
    }

    /// The TLS server name to dial `executor_id` by.
    pub fn peer_server_name(executor_id: &str) -> Result<ServerName<'static>, TlsError> {
        let name = server_name_for(executor_id)?;
        ServerName::try_from(name).map_err(|err| TlsError::Pem(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn server_names_encode_any_id_and_decode_back() {
        for id in ["exec-1", "Mesos_Executor.ÄÖ/with spaces", &"z".repeat(100)] {
            let name = server_name_for(id).unwrap();
            assert!(
                name.split('.')
                    .all(|label| !label.is_empty() && label.len() <= 63),
                "{name}"
            );
            assert!(ServerName::try_from(name.clone()).is_ok(), "{name}");
            assert_eq!(executor_id_from_server_name(&name).as_deref(), Some(id));
        }
        assert_eq!(server_name_for("ab").unwrap(), "x6162.executor.mesoflow");
        assert!(server_name_for("").is_err());
        assert!(server_name_for(&"z".repeat(101)).is_err());
        assert_eq!(executor_id_from_server_name("x6g.executor.mesoflow"), None);
        assert_eq!(executor_id_from_server_name("example.com"), None);
    }

    #[test]
    fn issued_certificates_name_their_executor_and_survive_pem() {
        let ca = ClusterCa::generate("test").unwrap();
        let creds = ca.issue("executor-7").unwrap();
        assert_eq!(
            executor_id_of_certificate(&creds.cert_der).as_deref(),
            Some("executor-7")
        );
        let (cert, key, ca_pem) = creds.to_pem();
        let back = ExecutorCredentials::from_pem(&cert, &key, &ca_pem).unwrap();
        assert_eq!(back.executor_id, "executor-7");
        assert_eq!(back.cert_der, creds.cert_der);
        assert_eq!(back.key_der, creds.key_der);

        let (ca_cert, ca_key) = ca.to_pem();
        let reloaded = ClusterCa::from_pem("test", &ca_cert, &ca_key).unwrap();
        let again = reloaded.issue("executor-8").unwrap();
        assert_eq!(again.ca_der, creds.ca_der);
        // A certificate issued after the reload chains to the original CA certificate.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            creds.roots().unwrap(),
            provider,
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        let name = ExecutorCredentials::peer_server_name("executor-8").unwrap();
        verifier
            .verify_server_cert(&again.cert_der, &[], &name, &[], now)
            .unwrap();
        let wrong = ExecutorCredentials::peer_server_name("executor-7").unwrap();
        assert!(
            verifier
                .verify_server_cert(&again.cert_der, &[], &wrong, &[], now)
                .is_err()
        );
        let stranger = ClusterCa::generate("test")
            .unwrap()
            .issue("executor-8")
            .unwrap();
        assert!(
            verifier
                .verify_server_cert(&stranger.cert_der, &[], &name, &[], now)
                .is_err()
        );
        assert!(again.quic_server_config().is_ok());
        assert!(again.quic_client_config().is_ok());
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(ExecutorCredentials::from_pem("nope", "nope", "nope").is_err());
        assert!(
            ClusterCa::from_pem(
                "c",
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
                "x"
            )
            .is_err()
        );
    }
}
