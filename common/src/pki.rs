//! A small development PKI: a CA and the three kinds of leaf certificates lifeboat uses.
//! Production may bring its own CA; only the SAN URI convention matters then.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::identity::Identity;

/// A CA that can issue certificates: its certificate and key as PEM.
pub struct Ca {
    pub cert_pem: String,
    key_pem: crate::secret::Secret<String>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// What kind of leaf to issue.
#[derive(Debug, Clone)]
pub enum LeafKind {
    /// A coordinator server certificate for these DNS names and IP addresses.
    Coordinator {
        names: Vec<String>,
    },
    Agent,
    Operator,
}

#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub name: String,
    pub kind: LeafKind,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    fn new(name: &str, kind: LeafKind) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            name: name.to_owned(),
            kind,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(365),
        }
    }
    pub fn agent(name: &str) -> Self {
        Self::new(name, LeafKind::Agent)
    }
    pub fn operator(name: &str) -> Self {
        Self::new(name, LeafKind::Operator)
    }
    pub fn coordinator(name: &str, names: Vec<String>) -> Self {
        Self::new(name, LeafKind::Coordinator { names })
    }
    pub fn valid_days(mut self, days: i64) -> Self {
        self.not_after = self.not_before + Duration::days(days);
        self
    }
}

/// An issued certificate and its private key, PEM encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: crate::secret::Secret<String>,
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "lifeboat");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Ca {
    /// A new self-signed CA valid for ten years.
    pub fn generate(name: &str) -> Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("lifeboat CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate().context("generate CA key")?;
        let cert = params
            .self_signed(&key)
            .context("self-sign CA certificate")?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: crate::secret::Secret::new(key.serialize_pem()),
        })
    }

    /// A CA loaded from its PEM certificate and key.
    pub fn from_pem(cert_pem: String, key_pem: crate::secret::Secret<String>) -> Result<Self> {
        // Parse once now so a broken pair fails here, not at first issue.
        let key = KeyPair::from_pem(key_pem.expose()).context("parse CA key")?;
        Issuer::from_ca_cert_pem(&cert_pem, key).context("parse CA certificate")?;
        Ok(Self { cert_pem, key_pem })
    }

    pub fn key_pem(&self) -> &crate::secret::Secret<String> {
        &self.key_pem
    }

    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued> {
        crate::names::validate_simple("certificate name", &spec.name)?;
        let mut params = CertificateParams::default();
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        match &spec.kind {
            LeafKind::Coordinator { names } => {
                if names.is_empty() {
                    bail!("a coordinator certificate needs at least one DNS name or IP address");
                }
                params.distinguished_name = dn(&format!("lifeboat coordinator {}", spec.name));
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                for n in names {
                    let san = match n.parse::<IpAddr>() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) => SanType::DnsName(
                            n.clone()
                                .try_into()
                                .with_context(|| format!("invalid DNS name {n:?}"))?,
                        ),
                    };
                    params.subject_alt_names.push(san);
                }
            }
            LeafKind::Agent | LeafKind::Operator => {
                let identity = match spec.kind {
                    LeafKind::Agent => Identity::Agent(spec.name.clone()),
                    _ => Identity::Operator(spec.name.clone()),
                };
                params.distinguished_name = dn(&identity.uri());
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                params.subject_alt_names = vec![SanType::URI(
                    identity.uri().try_into().context("identity URI")?,
                )];
            }
        }
        let ca_key = KeyPair::from_pem(self.key_pem.expose()).context("parse CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).context("load CA")?;
        let key = KeyPair::generate().context("generate key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .context("sign certificate")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: crate::secret::Secret::new(key.serialize_pem()),
        })
    }
}

/// The DER bytes of the first certificate in a PEM string.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .context("no certificate in PEM")?
        .context("parse PEM certificate")?;
    Ok(cert.to_vec())
}

/// A certificate revoked by a CRL: its serial number and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub serial: Vec<u8>,
    pub at: OffsetDateTime,
}

/// The serial number of the first certificate in a PEM string.
pub fn serial_of(cert_pem: &str) -> Result<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| anyhow::anyhow!("parse certificate: {e}"))?;
    Ok(cert.raw_serial().to_vec())
}

/// The certificates a PEM CRL revokes.
pub fn revoked_in(crl_pem: &str) -> Result<Vec<Revoked>> {
    use x509_parser::prelude::FromDer;
    let crls = rustls_pemfile::crls(&mut crl_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parse CRL PEM")?;
    let mut out = Vec::new();
    for der in &crls {
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
            .map_err(|e| anyhow::anyhow!("parse CRL: {e}"))?;
        for r in crl.iter_revoked_certificates() {
            out.push(Revoked {
                serial: r.raw_serial().to_vec(),
                at: OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                    .context("revocation time")?,
            });
        }
    }
    Ok(out)
}

impl Ca {
    /// A CRL signed by this CA that revokes `revoked`, valid for a year; `number` must grow
    /// with each CRL the CA issues.
    pub fn crl(&self, revoked: &[Revoked], number: u64) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(365),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&r.serial),
                    revocation_time: r.at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let ca_key = KeyPair::from_pem(self.key_pem.expose()).context("parse CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).context("load CA")?;
        let crl = params.signed_by(&issuer).context("sign CRL")?;
        crl.pem().context("encode CRL")
    }
}
