//! Certificates per test, made with the real `lifeboat pki` commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_common::pki::{Ca, LeafSpec};
use lifeboat_common::secret::Secret;

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A development CA in its own directory.
pub struct Pki {
    dir: PathBuf,
}

fn run_pki(args: &[&str]) {
    let out = Command::new(crate::bin("lifeboat"))
        .args(args)
        .output()
        .expect("run lifeboat pki");
    assert!(
        out.status.success(),
        "lifeboat {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// `lifeboat pki init --dir DIR` (`DIR` need not exist; its parent is created).
    pub fn init(dir: &Path) -> Pki {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).expect("create pki dir parent");
        }
        run_pki(&["pki", "init", "--dir", dir.to_str().expect("utf-8 path")]);
        let pki = Pki {
            dir: dir.to_owned(),
        };
        assert!(
            pki.ca().is_file(),
            "lifeboat pki init wrote no {}",
            pki.ca().display()
        );
        pki
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    fn pair(&self, name: &str) -> CertPair {
        CertPair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// `lifeboat pki issue --dir DIR --kind KIND --name NAME [--san S ...]`.
    pub fn issue(&self, kind: &str, name: &str, sans: &[&str]) -> CertPair {
        let mut args = vec![
            "pki",
            "issue",
            "--dir",
            self.dir.to_str().expect("utf-8 path"),
            "--kind",
            kind,
            "--name",
            name,
        ];
        for s in sans {
            args.push("--san");
            args.push(s);
        }
        run_pki(&args);
        let pair = self.pair(name);
        assert!(
            pair.cert.is_file() && pair.key.is_file(),
            "lifeboat pki issue wrote no {} / {}",
            pair.cert.display(),
            pair.key.display()
        );
        pair
    }

    /// A coordinator server certificate for 127.0.0.1 and localhost.
    pub fn coordinator(&self, name: &str) -> CertPair {
        self.issue("coordinator", name, &["127.0.0.1", "localhost"])
    }

    pub fn agent(&self, name: &str) -> CertPair {
        self.issue("agent", name, &[])
    }

    pub fn operator(&self, name: &str) -> CertPair {
        self.issue("operator", name, &[])
    }

    fn load_ca(&self) -> Ca {
        let cert = std::fs::read_to_string(self.ca()).expect("read CA certificate");
        let key = std::fs::read_to_string(self.ca_key()).expect("read CA key");
        Ca::from_pem(cert, Secret::new(key)).expect("load CA")
    }

    /// An operator certificate from this CA that expired yesterday (X33), written as
    /// `<file_stem>.pem`/`.key`.
    pub fn expired_operator(&self, name: &str, file_stem: &str) -> CertPair {
        let mut spec = LeafSpec::operator(name);
        spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let issued = self
            .load_ca()
            .issue(&spec)
            .expect("issue expired certificate");
        self.write_pair(file_stem, &issued.cert_pem, issued.key_pem.expose())
    }

    /// An operator certificate with the right shape from a different, unrelated CA (X33).
    pub fn foreign_operator(&self, name: &str, file_stem: &str) -> CertPair {
        let ca = Ca::generate("foreign").expect("generate foreign CA");
        let issued = ca
            .issue(&LeafSpec::operator(name))
            .expect("issue foreign certificate");
        self.write_pair(file_stem, &issued.cert_pem, issued.key_pem.expose())
    }

    fn write_pair(&self, stem: &str, cert: &str, key: &str) -> CertPair {
        let pair = self.pair(stem);
        std::fs::write(&pair.cert, cert).expect("write certificate");
        crate::pg::write_private(&pair.key, key);
        pair
    }
}
