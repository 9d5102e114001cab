use std::os::unix::fs::PermissionsExt;

use lifeboat_common::{
    identity::{Identity, from_der},
    pki::pem_to_der,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::*;
use crate::error::Outcome;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn init_args(dir: &Path) -> PkiInitArgs {
    PkiInitArgs {
        dir: dir.to_owned(),
        name: "test".into(),
    }
}

fn issue_args(dir: &Path, kind: CertKind, name: &str) -> PkiIssueArgs {
    PkiIssueArgs {
        dir: dir.to_owned(),
        kind,
        name: name.into(),
        sans: Vec::new(),
        days: 30,
        out_dir: None,
    }
}

fn cert_der(path: &Path) -> Vec<u8> {
    pem_to_der(&std::fs::read_to_string(path).expect("read cert")).expect("pem")
}

#[test]
fn init_creates_a_private_ca_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki/ca");
    let report = init(&init_args(&dir)).expect("init");
    assert_eq!(report.certificate, dir.join("ca.pem"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    let der = cert_der(&dir.join("ca.pem"));
    let (_, cert) = X509Certificate::from_der(&der).expect("parse CA");
    assert!(cert.is_ca());
    assert!(
        cert.subject().to_string().contains("lifeboat CA test"),
        "{}",
        cert.subject()
    );

    let key_before = std::fs::read(dir.join("ca.key")).expect("read key");
    let e = init(&init_args(&dir)).expect_err("overwrote an existing CA");
    assert_eq!(Outcome::of(&e), Outcome::Usage);
    assert!(format!("{e:#}").contains("refusing to overwrite"), "{e:#}");
    assert_eq!(
        std::fs::read(dir.join("ca.key")).expect("read key"),
        key_before
    );

    // A half-present CA is refused too.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("ca.key"), "x").expect("write");
    assert!(init(&init_args(&other)).is_err());
}

#[test]
fn operator_and_agent_certificates_carry_their_identity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    init(&init_args(dir)).expect("init");

    let report = issue(&issue_args(dir, CertKind::Operator, "alice")).expect("issue");
    assert_eq!(
        report.identity.as_deref(),
        Some("lifeboat://operator/alice")
    );
    assert_eq!(report.certificate, dir.join("alice.pem"));
    assert_eq!(mode(&dir.join("alice.key")), 0o600);
    assert_eq!(
        from_der(&cert_der(&dir.join("alice.pem"))),
        Ok(Identity::Operator("alice".into()))
    );

    let out = tmp.path().join("agents");
    let mut args = issue_args(dir, CertKind::Agent, "prod-1");
    args.out_dir = Some(out.clone());
    let report = issue(&args).expect("issue");
    assert_eq!(report.key, out.join("prod-1.key"));
    assert_eq!(mode(&out.join("prod-1.key")), 0o600);
    assert_eq!(
        from_der(&cert_der(&out.join("prod-1.pem"))),
        Ok(Identity::Agent("prod-1".into()))
    );
    // Signed by the CA, valid for the requested days.
    let ca_der = cert_der(&dir.join("ca.pem"));
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
    let leaf_der = cert_der(&out.join("prod-1.pem"));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf");
    assert_eq!(leaf.issuer(), ca.subject());
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30);

    // Nothing secret in what is printed.
    let key_pem = std::fs::read_to_string(out.join("prod-1.key")).expect("key");
    let text = report.table();
    let json = serde_json::to_string(&report).expect("json");
    assert!(text.contains("lifeboat://agent/prod-1"), "{text}");
    for printed in [&text, &json] {
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains(key_pem.lines().nth(1).expect("key line")));
    }
}

#[test]
fn issue_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    init(&init_args(dir)).expect("init");
    issue(&issue_args(dir, CertKind::Operator, "bob")).expect("issue");
    let before = std::fs::read(dir.join("bob.key")).expect("read");
    let e = issue(&issue_args(dir, CertKind::Operator, "bob")).expect_err("overwrote");
    assert_eq!(Outcome::of(&e), Outcome::Usage);
    assert_eq!(std::fs::read(dir.join("bob.key")).expect("read"), before);
    // Only the key left over from an earlier attempt: still refused.
    std::fs::remove_file(dir.join("bob.pem")).expect("rm");
    assert!(issue(&issue_args(dir, CertKind::Operator, "bob")).is_err());
    assert!(!dir.join("bob.pem").exists());
    // The CA's own files cannot be clobbered through --name ca.
    assert!(issue(&issue_args(dir, CertKind::Agent, "ca")).is_err());
}

fn sans_of(path: &Path) -> (Vec<String>, Vec<String>) {
    let der = cert_der(path);
    let (_, cert) = X509Certificate::from_der(&der).expect("parse");
    let san = cert
        .subject_alternative_name()
        .expect("san ext")
        .expect("has san");
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            GeneralName::IPAddress(b) => ips.push(match b.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).expect("v4")).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).expect("v6")).to_string(),
            }),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

#[test]
fn coordinator_certificates_have_dns_and_ip_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    init(&init_args(dir)).expect("init");

    let report = issue(&issue_args(dir, CertKind::Coordinator, "coord")).expect("issue");
    assert_eq!(report.identity, None);
    assert_eq!(report.sans, ["localhost", "127.0.0.1"]);
    assert_eq!(
        sans_of(&dir.join("coord.pem")),
        (vec!["localhost".into()], vec!["127.0.0.1".into()])
    );
    assert!(from_der(&cert_der(&dir.join("coord.pem"))).is_err());

    let mut args = issue_args(dir, CertKind::Coordinator, "coord2");
    args.sans = vec!["coord.example".into(), "10.1.2.3".into(), "::1".into()];
    issue(&args).expect("issue");
    assert_eq!(
        sans_of(&dir.join("coord2.pem")),
        (
            vec!["coord.example".into()],
            vec!["10.1.2.3".into(), "::1".into()]
        )
    );
}

#[test]
fn sans_only_for_coordinators() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(&init_args(tmp.path())).expect("init");
    let mut args = issue_args(tmp.path(), CertKind::Agent, "a1");
    args.sans = vec!["localhost".into()];
    let e = issue(&args).expect_err("san on an agent accepted");
    assert_eq!(Outcome::of(&e), Outcome::Usage);
    assert!(!tmp.path().join("a1.key").exists());
}

#[test]
fn missing_or_exposed_ca_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = issue(&issue_args(tmp.path(), CertKind::Operator, "x")).expect_err("no CA");
    assert_eq!(Outcome::of(&e), Outcome::Usage);
    assert!(format!("{e:#}").contains("lifeboat pki init"), "{e:#}");

    init(&init_args(tmp.path())).expect("init");
    std::fs::set_permissions(
        tmp.path().join("ca.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = issue(&issue_args(tmp.path(), CertKind::Operator, "x")).expect_err("exposed key");
    assert_eq!(Outcome::of(&e), Outcome::Usage);
    assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
}
