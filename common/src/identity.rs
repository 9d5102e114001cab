//! Who a peer is, read from its certificate: the SAN URI `lifeboat://agent/NAME` or
//! `lifeboat://operator/NAME`. Never from a request field.

use std::fmt;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::names::validate_simple;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Agent(String),
    Operator(String),
}

impl Identity {
    pub fn uri(&self) -> String {
        match self {
            Identity::Agent(n) => format!("lifeboat://agent/{n}"),
            Identity::Operator(n) => format!("lifeboat://operator/{n}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Identity::Agent(n) | Identity::Operator(n) => n,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate presented")]
    NoCertificate,
    #[error("client certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("client certificate has no lifeboat:// URI in its subject alternative names")]
    NoLifeboatUri,
    #[error("client certificate has more than one lifeboat:// URI")]
    Ambiguous,
    #[error(
        "client certificate URI {0:?} is not lifeboat://agent/NAME or lifeboat://operator/NAME"
    )]
    BadUri(String),
}

/// Parses one `lifeboat://KIND/NAME` URI.
pub fn parse_uri(uri: &str) -> Result<Identity, IdentityError> {
    let bad = || IdentityError::BadUri(uri.chars().take(120).collect());
    let rest = uri.strip_prefix("lifeboat://").ok_or_else(bad)?;
    let (kind, name) = rest.split_once('/').ok_or_else(bad)?;
    validate_simple("identity name", name).map_err(|_| bad())?;
    match kind {
        "agent" => Ok(Identity::Agent(name.to_owned())),
        "operator" => Ok(Identity::Operator(name.to_owned())),
        _ => Err(bad()),
    }
}

/// The identity in a DER certificate (the leaf of the presented chain).
pub fn from_der(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?
        .ok_or(IdentityError::NoLifeboatUri)?;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && uri.starts_with("lifeboat://")
        {
            if found.is_some() {
                return Err(IdentityError::Ambiguous);
            }
            found = Some(parse_uri(uri)?);
        }
    }
    found.ok_or(IdentityError::NoLifeboatUri)
}

/// Best-effort description of a certificate for logs: its lifeboat identity if any, else its
/// subject. Used when a handshake is refused, so operators see who tried.
pub fn describe_der(der: &[u8]) -> String {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => {
            let id = from_der(der)
                .map(|i| i.uri())
                .unwrap_or_else(|_| "no lifeboat identity".into());
            format!(
                "{id} (subject {:?}, issuer {:?}, serial {})",
                cert.subject().to_string(),
                cert.issuer().to_string(),
                cert.raw_serial_as_string()
            )
        }
        Err(_) => "unparsable certificate".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("lifeboat://agent/prod-1"),
            Ok(Identity::Agent("prod-1".into()))
        );
        assert_eq!(
            parse_uri("lifeboat://operator/alice"),
            Ok(Identity::Operator("alice".into()))
        );
        for bad in [
            "lifeboat://admin/alice",
            "lifeboat://agent/",
            "lifeboat://agent/../x",
            "lifeboat://agent/a/b",
            "https://agent/x",
            "lifeboat://agent/Alice",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn from_generated_certificate() {
        let ca = crate::pki::Ca::generate("test").expect("ca");
        let leaf = ca
            .issue(&crate::pki::LeafSpec::agent("prod-1"))
            .expect("issue");
        let der = crate::pki::pem_to_der(&leaf.cert_pem).expect("der");
        assert_eq!(from_der(&der), Ok(Identity::Agent("prod-1".into())));
        assert!(describe_der(&der).contains("lifeboat://agent/prod-1"));
        let server = ca
            .issue(&crate::pki::LeafSpec::coordinator(
                "coord",
                vec!["localhost".into()],
            ))
            .expect("issue");
        let der = crate::pki::pem_to_der(&server.cert_pem).expect("der");
        assert_eq!(from_der(&der), Err(IdentityError::NoLifeboatUri));
    }
}
