//! `lifeboat pki init|issue`: a development CA and the certificates lifeboat's programs use.
//! Never overwrites a file, writes keys with mode 0600, and never prints a key.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use lifeboat_common::{
    identity::Identity,
    pki::{Ca, LeafSpec},
    secret::{read_secret_file, write_private_file},
};
use serde::Serialize;

use crate::{
    cli::{CertKind, OutputFormat, PkiCommand, PkiInitArgs, PkiIssueArgs, PkiRevokeArgs},
    error::{usage, usage_msg},
    output::{self, Render, key_values},
};

pub fn run(cmd: PkiCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    match cmd {
        PkiCommand::Init(args) => output::emit(out, format, &init(&args)?),
        PkiCommand::Issue(args) => output::emit(out, format, &issue(&args)?),
        PkiCommand::Revoke(args) => output::emit(out, format, &revoke(&args)?),
    }
}

#[derive(Debug, Serialize)]
pub struct RevokeReport {
    pub name: String,
    pub certificate: PathBuf,
    /// The revoked certificate's serial number, hex.
    pub serial: String,
    pub crl: PathBuf,
    /// Certificates the list now revokes (this one included).
    pub revoked: usize,
    /// False when the certificate was already on the list.
    pub added: bool,
}

impl Render for RevokeReport {
    fn table(&self) -> String {
        let mut s = key_values(&[
            ("certificate", self.certificate.display().to_string()),
            ("serial", self.serial.clone()),
            ("crl", self.crl.display().to_string()),
            ("revoked", self.revoked.to_string()),
        ]);
        s.push_str(&format!(
            "\n{} {}. The coordinator checks {} on every new connection once its config has \
             tls.crl = \"{}\" (copy the file there if the coordinator runs elsewhere); it \
             reloads the list within seconds, or at once on SIGHUP. Connections already open \
             stay until they reconnect: restart the revoked agent's connection by restarting the \
             coordinator if it must go now.\n",
            if self.added {
                "revoked"
            } else {
                "already revoked:"
            },
            self.name,
            self.crl.display(),
            self.crl.display()
        ));
        s
    }
}

/// Adds a certificate to DIR/crl.pem (keeping what it revoked before), signed by the CA, and
/// replaces the file atomically.
pub fn revoke(args: &PkiRevokeArgs) -> Result<RevokeReport> {
    let ca = load_ca(&args.dir)?;
    let certificate = args
        .cert
        .clone()
        .unwrap_or_else(|| args.dir.join(format!("{}.pem", args.name)));
    let pem = std::fs::read_to_string(&certificate)
        .with_context(|| {
            format!(
                "read {} (the certificate of {}; pass --cert FILE if it is elsewhere)",
                certificate.display(),
                args.name
            )
        })
        .map_err(usage)?;
    let serial = lifeboat_common::pki::serial_of(&pem)
        .with_context(|| format!("{} is not a PEM certificate", certificate.display()))
        .map_err(usage)?;
    let crl = args.dir.join("crl.pem");
    let mut revoked = match std::fs::read_to_string(&crl) {
        Ok(text) => lifeboat_common::pki::revoked_in(&text)
            .with_context(|| {
                format!(
                    "{} is not a readable CRL; move it away to start a new list",
                    crl.display()
                )
            })
            .map_err(usage)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(usage(
                anyhow::Error::new(e).context(format!("read {}", crl.display())),
            ));
        }
    };
    let added = !revoked.iter().any(|r| r.serial == serial);
    if added {
        revoked.push(lifeboat_common::pki::Revoked {
            serial: serial.clone(),
            at: time::OffsetDateTime::now_utc(),
        });
    }
    // Grows with every list written: seconds since the epoch.
    let number = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(1);
    let text = ca
        .crl(&revoked, number)
        .context("sign the revocation list")?;
    let tmp = args.dir.join(".crl.pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_public_file(&tmp, text.as_bytes()).map_err(usage)?;
    std::fs::rename(&tmp, &crl)
        .with_context(|| format!("replace {}", crl.display()))
        .map_err(usage)?;
    Ok(RevokeReport {
        name: args.name.clone(),
        certificate,
        serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        crl,
        revoked: revoked.len(),
        added,
    })
}

#[derive(Debug, Serialize)]
pub struct InitReport {
    pub dir: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl Render for InitReport {
    fn table(&self) -> String {
        let mut s = key_values(&[
            ("certificate", self.certificate.display().to_string()),
            ("key", format!("{} (mode 0600)", self.key.display())),
        ]);
        s.push_str(&format!(
            "\ncreated a CA in {}; keep ca.key secret. next: lifeboat pki issue --dir {} \
             --kind coordinator|agent|operator --name NAME\n",
            self.dir.display(),
            self.dir.display()
        ));
        s
    }
}

#[derive(Debug, Serialize)]
pub struct IssueReport {
    pub kind: &'static str,
    pub name: String,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// `lifeboat://agent/NAME` or `lifeboat://operator/NAME`; `null` for a coordinator.
    pub identity: Option<String>,
    /// DNS names and IP addresses (coordinator only).
    pub sans: Vec<String>,
    pub not_before: Option<String>,
    pub not_before_ms: Option<i64>,
    pub not_after: Option<String>,
    pub not_after_ms: Option<i64>,
}

impl Render for IssueReport {
    fn table(&self) -> String {
        let mut pairs = vec![
            ("certificate", self.certificate.display().to_string()),
            ("key", format!("{} (mode 0600)", self.key.display())),
            ("kind", self.kind.to_owned()),
        ];
        match &self.identity {
            Some(uri) => pairs.push(("identity", uri.clone())),
            None => pairs.push(("names", self.sans.join(", "))),
        }
        pairs.push((
            "valid",
            format!(
                "{} to {}",
                output::rfc3339_text(self.not_before_ms.unwrap_or(0)),
                output::rfc3339_text(self.not_after_ms.unwrap_or(0))
            ),
        ));
        key_values(&pairs)
    }
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create directory {}", dir.display()))
}

/// Writes a public file (a certificate) with mode 0644, failing if it exists.
fn write_public_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

/// Refuses to go on if any of `paths` exists.
fn refuse_existing(paths: &[&Path], what: &str) -> Result<()> {
    for p in paths {
        if p.symlink_metadata().is_ok() {
            return Err(usage_msg(format!(
                "{} already exists; refusing to overwrite {what}: choose another directory or \
                 name, or move the old files away",
                p.display()
            )));
        }
    }
    Ok(())
}

pub fn init(args: &PkiInitArgs) -> Result<InitReport> {
    let certificate = args.dir.join("ca.pem");
    let key = args.dir.join("ca.key");
    refuse_existing(&[&certificate, &key], "an existing CA")?;
    create_private_dir(&args.dir).map_err(usage)?;
    let ca = Ca::generate(&args.name).context("generate the CA")?;
    write_private_file(&key, ca.key_pem().expose().as_bytes()).map_err(usage)?;
    write_public_file(&certificate, ca.cert_pem.as_bytes()).map_err(usage)?;
    Ok(InitReport {
        dir: args.dir.clone(),
        certificate,
        key,
    })
}

fn load_ca(dir: &Path) -> Result<Ca> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    for p in [&cert_path, &key_path] {
        if !p.exists() {
            return Err(usage_msg(format!(
                "no CA in {}: {} not found (create one with `lifeboat pki init --dir {}`)",
                dir.display(),
                p.display(),
                dir.display()
            )));
        }
    }
    let cert_pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("read {}", cert_path.display()))
        .map_err(usage)?;
    let key_pem = read_secret_file(&key_path).map_err(usage)?;
    Ca::from_pem(cert_pem, key_pem)
        .with_context(|| format!("load the CA in {}", dir.display()))
        .map_err(usage)
}

pub fn issue(args: &PkiIssueArgs) -> Result<IssueReport> {
    if args.kind != CertKind::Coordinator && !args.sans.is_empty() {
        return Err(usage_msg(
            "--san applies only to --kind coordinator; agent and operator certificates carry a \
             lifeboat:// identity instead",
        ));
    }
    let out_dir = args.out_dir.as_deref().unwrap_or(&args.dir);
    let certificate = out_dir.join(format!("{}.pem", args.name));
    let key = out_dir.join(format!("{}.key", args.name));
    refuse_existing(&[&certificate, &key], "a certificate or key")?;
    let ca = load_ca(&args.dir)?;

    let (spec, identity, sans) = match args.kind {
        CertKind::Coordinator => {
            let sans = if args.sans.is_empty() {
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
            } else {
                args.sans.clone()
            };
            (LeafSpec::coordinator(&args.name, sans.clone()), None, sans)
        }
        CertKind::Agent => (
            LeafSpec::agent(&args.name),
            Some(Identity::Agent(args.name.clone())),
            Vec::new(),
        ),
        CertKind::Operator => (
            LeafSpec::operator(&args.name),
            Some(Identity::Operator(args.name.clone())),
            Vec::new(),
        ),
    };
    let spec = spec.valid_days(i64::from(args.days));
    let issued = ca
        .issue(&spec)
        .with_context(|| format!("issue a certificate for {:?}", args.name))
        .map_err(usage)?;

    create_private_dir(out_dir).map_err(usage)?;
    write_private_file(&key, issued.key_pem.expose().as_bytes()).map_err(usage)?;
    write_public_file(&certificate, issued.cert_pem.as_bytes()).map_err(usage)?;

    let ms = |t: time::OffsetDateTime| {
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
    };
    let (not_before, not_before_ms) = output::json_time(ms(spec.not_before));
    let (not_after, not_after_ms) = output::json_time(ms(spec.not_after));
    Ok(IssueReport {
        kind: match args.kind {
            CertKind::Coordinator => "coordinator",
            CertKind::Agent => "agent",
            CertKind::Operator => "operator",
        },
        name: args.name.clone(),
        certificate,
        key,
        identity: identity.map(|i| i.uri()),
        sans,
        not_before,
        not_before_ms,
        not_after,
        not_after_ms,
    })
}

#[cfg(test)]
#[path = "pki_tests.rs"]
mod tests;
