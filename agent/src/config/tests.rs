use super::*;
use std::os::unix::fs::PermissionsExt;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["ca.pem", "a.pem"] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        for f in ["a.key", "pw"] {
            let p = dir.path().join(f);
            std::fs::write(&p, "secret").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        Self { dir }
    }

    fn parse(&self, extra_top: &str, target: &str) -> Result<Config> {
        self.parse_with_url(extra_top, "postgres://backup@127.0.0.1:5432/orders", target)
    }

    fn parse_with_url(&self, extra_top: &str, url: &str, target: &str) -> Result<Config> {
        self.parse_engine(extra_top, "postgres", url, target)
    }

    fn parse_engine(
        &self,
        extra_top: &str,
        engine: &str,
        url: &str,
        target: &str,
    ) -> Result<Config> {
        let text = format!(
            r#"name = "a"
environment = "dev"
coordinator = "https://127.0.0.1:7443"
state_dir = "state"
{extra_top}
[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"

[[repository]]
name = "local"
kind = "fs"
path = "repo"

[[target]]
name = "orders"
engine = "{engine}"
repository = "local"
url = "{url}"
password_file = "pw"
{target}
"#
        );
        parse(&self.dir.path().join("agent.toml"), &text)
    }
}

#[test]
fn valid_config() {
    let f = Fixture::new();
    let c = f.parse("", "").expect("valid");
    let t = &c.targets["orders"];
    assert_eq!(t.database, "orders");
    assert_eq!(t.compression_level, 3);
    assert!(t.compression_auto, "adaptive by default");
    assert_eq!(t.row_counts, RowCounts::Exact);
    assert!(!t.allow_clean_restore, "replacing databases must be opt-in");
    assert_eq!(t.replaceable_databases, ["orders"], "only its own database");
    assert_eq!(c.max_concurrent_jobs, 2);
    assert_eq!(c.state_dir, f.dir.path().join("state"));
    assert_eq!(t.password().expect("pw").expect("some").expose(), "secret");
}

#[test]
fn replaceable_databases_need_clean_restores_allowed() {
    let f = Fixture::new();
    let c = f
        .parse(
            "",
            "allow_clean_restore = true\nreplaceable_databases = [\"orders\", \"orders_staging\"]",
        )
        .expect("valid");
    assert_eq!(
        c.targets["orders"].replaceable_databases,
        ["orders", "orders_staging"]
    );
    refused(
        "",
        "replaceable_databases = [\"orders\"]",
        "has no effect without allow_clean_restore",
    );
    refused(
        "",
        "allow_clean_restore = true\nreplaceable_databases = [\"bad;name\"]",
        "replaceable_databases",
    );
}

fn refused(extra_top: &str, target: &str, needle: &str) {
    let f = Fixture::new();
    let e = format!(
        "{:#}",
        f.parse(extra_top, target).expect_err("bad config accepted")
    );
    assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
    assert!(e.contains("agent.toml"), "{e:?} does not name the file");
}

/// An extra `[[repository]]` of kind s3 with `body` (appended after the target).
fn s3_repo(f: &Fixture, body: &str) -> Result<Config> {
    let secret = f.dir.path().join("s3.secret");
    if !secret.exists() {
        std::fs::write(&secret, "s3-secret").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(f.dir.path().join("s3.id"), "AKIDEXAMPLE").expect("write");
    }
    f.parse(
        "",
        &format!("\n[[repository]]\nname = \"offsite\"\nkind = \"s3\"\n{body}\n"),
    )
}

const S3_OK: &str = "bucket = \"acme-backups\"\nprefix = \"/lifeboat/\"\naccess_key_id_file = \"s3.id\"\nsecret_access_key_file = \"s3.secret\"";

#[test]
fn s3_repository_defaults() {
    let f = Fixture::new();
    let c = s3_repo(&f, S3_OK).expect("valid");
    let RepositoryConfig::S3(s3) = &c.repositories["offsite"] else {
        panic!("not s3");
    };
    assert_eq!(s3.prefix, "lifeboat/");
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.part_size, 16 * 1024 * 1024);
    assert_eq!(s3.parts_in_flight, 4);
    assert_eq!(
        s3.stale_upload_age,
        std::time::Duration::from_secs(24 * 3600)
    );
    // The secret is not in the Debug output.
    assert!(!format!("{c:?}").contains("s3-secret"));
    let c = s3_repo(&f, "bucket = \"b-1.x\"\ncredentials = \"chain\"\nendpoint = \"http://127.0.0.1:9000/\"\npath_style = true\nstorage_class = \"STANDARD_IA\"\nsse = \"aws:kms\"\nsse_kms_key_id = \"alias/backups\"\npart_size_mib = 64\nstale_upload_age = \"2h\"").expect("valid");
    let RepositoryConfig::S3(s3) = &c.repositories["offsite"] else {
        panic!("not s3");
    };
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.part_size, 64 * 1024 * 1024);
}

#[test]
fn bad_s3_repositories_are_refused_with_the_key() {
    let cases: &[(&str, &str)] = &[
        ("bucket = \"Bad_Bucket\"\ncredentials = \"env\"", "bucket"),
        ("bucket = \"b12\"", "credentials"),
        ("bucket = \"b12\"\ncredentials = \"magic\"", "credentials"),
        (
            "bucket = \"b12\"\naccess_key_id_file = \"s3.id\"",
            "secret_access_key_file",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nsecret_access_key_file = \"s3.secret\"",
            "credentials",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"http://s3.example.com\"",
            "unencrypted",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"https://k:s@s3.example.com\"",
            "credentials",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nendpoint = \"https://s3.example.com/bucket\"",
            "without a path",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nstorage_class = \"DEEP_ARCHIVE\"",
            "GLACIER_IR",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nsse = \"rot13\"",
            "sse",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nsse_kms_key_id = \"k\"",
            "aws:kms",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\npart_size_mib = 1",
            "part_size_mib",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nparts_in_flight = 0",
            "parts_in_flight",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nstale_upload_age = \"soon\"",
            "stale_upload_age",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nprefix = \"a/../b\"",
            "prefix",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\npath = \"/x\"",
            "path",
        ),
        (
            "bucket = \"b12\"\ncredentials = \"env\"\nbucketz = 1",
            "bucketz",
        ),
    ];
    for (body, needle) in cases {
        let f = Fixture::new();
        let e = format!("{:#}", s3_repo(&f, body).expect_err(body));
        assert!(
            e.contains(needle),
            "{body}: {e:?} does not mention {needle:?}"
        );
        assert!(
            e.contains("repository[1]"),
            "{body}: {e:?} does not name the table"
        );
    }
    // A world-readable secret is refused.
    let f = Fixture::new();
    s3_repo(&f, S3_OK).expect("valid");
    std::fs::set_permissions(
        f.dir.path().join("s3.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = format!(
        "{:#}",
        s3_repo(&f, S3_OK).expect_err("world-readable secret")
    );
    assert!(e.contains("secret_access_key_file"), "{e}");
    // fs repositories take only a path.
    let f = Fixture::new();
    let e = format!(
        "{:#}",
        f.parse(
            "",
            "\n[[repository]]\nname = \"x\"\nkind = \"fs\"\npath = \"/x\"\nbucket = \"b\"\n"
        )
        .expect_err("fs with a bucket")
    );
    assert!(e.contains("bucket"), "{e}");
}

#[test]
fn compression_level_auto_adapts_and_keeps_level_3_for_wal_and_globals() {
    let f = Fixture::new();
    let c = f.parse("", "compression_level = \"auto\"").expect("valid");
    let t = &c.targets["orders"];
    assert!(t.compression_auto);
    assert_eq!(t.compression_level, 3);
    let c = f.parse("", "compression_level = 7").expect("valid");
    assert!(!c.targets["orders"].compression_auto);
    assert_eq!(c.targets["orders"].compression_level, 7);
}

#[test]
fn bad_configs_are_refused_with_file_and_key() {
    refused("bogus = 1", "", "bogus");
    refused("max_concurrent_jobs = 0", "", "max_concurrent_jobs");
    refused("", "compression_level = 0", "compression_level");
    refused("", "compression_level = 23", "compression_level");
    refused(
        "",
        "compression_level = \"fast\"",
        "\"fast\" is not a level",
    );
    refused("", "compression_level = 3.5", "compression_level");
    refused("", "row_counts = \"maybe\"", "row_counts");
    refused("", "pg_bin_dir = \"/usr/../bin\"", "'..'");
    refused("", "engine2 = \"x\"", "engine2");
}

#[test]
fn password_in_url_is_refused_without_echoing_it() {
    let f = Fixture::new();
    let r = f.parse_with_url(
        "",
        "postgres://backup:SENTINEL-9f2c@127.0.0.1:5432/orders",
        "",
    );
    let e = format!("{:#}", r.expect_err("accepted"));
    assert!(e.contains("password"), "{e}");
    assert!(!e.contains("SENTINEL-9f2c"), "secret echoed: {e}");
}

#[test]
fn url_parameters_that_redirect_the_connection_are_refused() {
    let f = Fixture::new();
    for (param, ok) in [
        ("sslmode=require", true),
        ("dbname=other", false),
        ("host=elsewhere", false),
        ("sslpassword=x", false),
    ] {
        let url = format!("postgres://backup@127.0.0.1:5432/orders?{param}");
        let r = f.parse_with_url("", &url, "");
        assert_eq!(r.is_ok(), ok, "{param}: {r:?}");
    }
}

#[test]
fn world_readable_password_file_is_refused() {
    let f = Fixture::new();
    std::fs::set_permissions(
        f.dir.path().join("pw"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = format!("{:#}", f.parse("", "").expect_err("accepted"));
    assert!(
        e.contains("password_file") && e.contains("chmod 600"),
        "{e}"
    );
}

#[test]
fn example_config_shape_parses() {
    // deploy/agent.example.toml, with paths pointed at the fixture.
    let f = Fixture::new();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/agent.example.toml"
    ))
    .expect("read example");
    let text = example
        .replace("/etc/lifeboat/ca.pem", "ca.pem")
        .replace("/etc/lifeboat/prod-1.pem", "a.pem")
        .replace("/etc/lifeboat/prod-1.key", "a.key")
        .replace("/etc/lifeboat/orders.pass", "pw");
    let c = parse(&f.dir.path().join("agent.toml"), &text).expect("example parses");
    assert_eq!(c.name, "prod-1");
    assert!(c.targets.contains_key("orders"));
}

fn refusal(r: Result<Config>) -> String {
    format!("{:#}", r.expect_err("accepted"))
}

#[test]
fn mysql_targets() {
    let f = Fixture::new();
    let c = f
        .parse_engine(
            "",
            "mysql",
            "mysql://backup@127.0.0.1:3306/shop",
            "provider = \"mariadb\"",
        )
        .expect("valid");
    let t = &c.targets["orders"];
    assert_eq!(t.engine, Engine::Mysql);
    assert_eq!(t.profile, crate::provider::Provider::Mariadb);
    assert_eq!(t.database, "shop");
    assert_eq!(t.mysql.as_ref().expect("params").port, 3306);
    // The default profile of the engine.
    let c = f
        .parse_engine("", "mysql", "mysql://backup@db/shop", "")
        .expect("valid");
    assert_eq!(c.targets["orders"].provider, "mysql");
    std::fs::create_dir(f.dir.path().join("mybin")).expect("mkdir");
    let c = f
        .parse_engine(
            "",
            "mysql",
            "mysql://backup@db/shop",
            "mysql_bin_dir = \"mybin\"",
        )
        .expect("valid");
    assert!(c.targets["orders"].mysql_bin_dir.is_some());
}

#[test]
fn engine_provider_and_url_refusals() {
    let f = Fixture::new();
    let e = refusal(f.parse_engine("", "oracle", "postgres://u@h/db", ""));
    assert!(e.contains("engine") && e.contains("\"mysql\""), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/db", "provider = \"supabase\""));
    assert!(
        e.contains("provider") && e.contains("postgres engine"),
        "{e}"
    );
    let e = refusal(f.parse_engine(
        "",
        "postgres",
        "postgres://u@h/db",
        "provider = \"planetscale\"",
    ));
    assert!(e.contains("mysql engine"), "{e}");
    let e = refusal(f.parse_engine("", "postgres", "postgres://u@h/db", "provider = \"oracle\""));
    assert!(e.contains("unknown provider"), "{e}");
    // A postgres URL on a mysql target and back.
    let e = refusal(f.parse_engine("", "mysql", "postgres://u@h/db", ""));
    assert!(e.contains("mysql://"), "{e}");
    let e = refusal(f.parse_engine("", "postgres", "mysql://u@h/db", ""));
    assert!(e.contains("postgres://"), "{e}");
    // Secrets and unknown parameters in a MySQL URL.
    let e = refusal(f.parse_engine("", "mysql", "mysql://u:hunter2@h/db", ""));
    assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/db?host=evil", ""));
    assert!(e.contains("not supported"), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/mysql", ""));
    assert!(e.contains("system database"), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://h/db", ""));
    assert!(e.contains("no user"), "{e}");
    // Options of the other engine.
    let e = refusal(f.parse_engine(
        "",
        "postgres",
        "postgres://u@h/db",
        "mysql_bin_dir = \"/usr/bin\"",
    ));
    assert!(e.contains("mysql_bin_dir"), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/db", "pg_bin_dir = \"/usr/bin\""));
    assert!(e.contains("pg_bin_dir"), "{e}");
    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/db", "mysql_bin_dir = \"nope\""));
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn provider_checks_run_when_the_config_is_loaded() {
    let f = Fixture::new();
    let e = refusal(f.parse_engine(
        "",
        "postgres",
        "postgres://postgres.abc@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        "provider = \"supabase\"",
    ));
    assert!(
        e.contains("transaction pooler") && e.contains("5432"),
        "{e}"
    );
    let e = refusal(f.parse_engine(
        "",
        "postgres",
        "postgres://u@ep-cool-123-pooler.eu-central-1.aws.neon.tech/db?sslmode=require",
        "provider = \"neon\"",
    ));
    assert!(e.contains("-pooler"), "{e}");
    let e = refusal(f.parse_engine(
        "",
        "postgres",
        "postgres://u@ep-cool-123.eu-central-1.aws.neon.tech/db?sslmode=prefer",
        "provider = \"neon\"",
    ));
    assert!(e.contains("TLS"), "{e}");
    let e = refusal(f.parse_engine(
        "",
        "mysql",
        "mysql://u@aws.connect.psdb.cloud/db?ssl-mode=disabled",
        "provider = \"planetscale\"",
    ));
    assert!(e.contains("TLS"), "{e}");
    f.parse_engine(
        "",
        "postgres",
        "postgres://postgres@db.abc.supabase.co:5432/postgres?sslmode=require",
        "provider = \"supabase\"",
    )
    .expect("the direct connection is fine");
    f.parse_engine(
        "",
        "mysql",
        "mysql://u@aws.connect.psdb.cloud/db?ssl-mode=verify_identity",
        "provider = \"planetscale\"",
    )
    .expect("planetscale over TLS is fine");
}

#[test]
fn physical_mode_is_for_self_hosted_postgres_only() {
    let f = Fixture::new();
    let c = f.parse("", "").expect("valid");
    assert_eq!(c.targets["orders"].mode, BackupMode::Logical, "default");
    let c = f.parse("", "mode = \"physical\"").expect("valid");
    assert_eq!(c.targets["orders"].mode, BackupMode::Physical);
    let c = f.parse("", "mode = \"logical\"").expect("valid");
    assert_eq!(c.targets["orders"].mode, BackupMode::Logical);
    refused("", "mode = \"incremental\"", "target[0].mode");

    let e = refusal(f.parse_engine("", "mysql", "mysql://u@h/db", "mode = \"physical\""));
    assert!(
        e.contains("target[0].mode") && e.contains("engine = \"postgres\" targets only"),
        "{e}"
    );
    for (provider, url) in [
        (
            "supabase",
            "postgres://u@db.abc.supabase.co:5432/db?sslmode=require",
        ),
        (
            "neon",
            "postgres://u@ep-x.eu-central-1.aws.neon.tech/db?sslmode=require",
        ),
        (
            "railway",
            "postgres://u@x.proxy.rlwy.net:5432/db?sslmode=require",
        ),
    ] {
        let e = refusal(f.parse_engine(
            "",
            "postgres",
            url,
            &format!("provider = \"{provider}\"\nmode = \"physical\""),
        ));
        assert!(
            e.contains("target[0].mode")
                && e.contains("replication connection")
                && e.contains(&format!("provider {provider}"))
                && e.contains("logical"),
            "{provider}: {e}"
        );
    }
}

#[test]
fn restore_data_dirs_are_absolute_directories() {
    let f = Fixture::new();
    let c = f.parse("", "").expect("valid");
    assert!(
        c.targets["orders"].restore_data_dirs.is_empty(),
        "none by default"
    );
    let c = f
        .parse(
            "",
            "restore_data_dirs = [\"/srv/pg\", \"/var/lib/postgresql/restored\"]",
        )
        .expect("valid");
    assert_eq!(
        c.targets["orders"].restore_data_dirs,
        [
            std::path::PathBuf::from("/srv/pg"),
            "/var/lib/postgresql/restored".into()
        ]
    );
    refused("", "restore_data_dirs = [\"srv/pg\"]", "absolute");
    refused("", "restore_data_dirs = [\"/srv/../etc\"]", "..");
    refused("", "restore_data_dirs = [\"/\"]", "write anywhere");
    let e = refusal(f.parse_engine(
        "",
        "mysql",
        "mysql://u@h/db",
        "restore_data_dirs = [\"/srv\"]",
    ));
    assert!(e.contains("target[0].restore_data_dirs"), "{e}");
}

#[test]
fn drill_checks_are_read_and_empty_ones_refused() {
    let f = Fixture::new();
    let c = f
        .parse(
            "",
            "drill_checks = [\"SELECT count(*) > 0 FROM orders\", \"SELECT true\"]",
        )
        .expect("valid");
    assert_eq!(
        c.targets["orders"].drill_checks,
        ["SELECT count(*) > 0 FROM orders", "SELECT true"]
    );
    assert!(
        f.parse("", "").expect("valid").targets["orders"]
            .drill_checks
            .is_empty()
    );
    refused(
        "",
        "drill_checks = [\"SELECT true\", \"  \"]",
        "entry 2 is empty",
    );
}

#[test]
fn copy_to_names_other_repositories_once() {
    let f = Fixture::new();
    let offsite = "[[repository]]\nname = \"offsite\"\nkind = \"fs\"\npath = \"off\"\n";
    let c = f.parse(offsite, "copy_to = [\"offsite\"]").expect("valid");
    assert_eq!(c.targets["orders"].copy_to, ["offsite"]);
    assert!(
        f.parse("", "").expect("valid").targets["orders"]
            .copy_to
            .is_empty()
    );
    for (target, want) in [
        ("copy_to = [\"vault\"]", "no [[repository]] named \"vault\""),
        ("copy_to = [\"local\"]", "is the target's own repository"),
        ("copy_to = [\"offsite\", \"offsite\"]", "listed twice"),
        (
            "copy_to = [\"offsite\"]\nmode = \"physical\"",
            "copies of physical base backups",
        ),
    ] {
        let e = format!("{:#}", f.parse(offsite, target).expect_err(target));
        assert!(e.contains(want), "{want:?} not in: {e}");
        assert!(e.contains("copy_to"), "the key is named: {e}");
    }
}

#[test]
fn encryption_is_checked_at_start_up() {
    let f = Fixture::new();
    let ops = age::x25519::Identity::generate().to_public().to_string();
    let key = f.dir.path().join("restore.key");
    lifeboat_common::keys::generate_identity_file(&key).expect("key");
    // On the target, with an identity: both kept; the key id is the recipient's.
    let c = f
        .parse(
            "",
            &format!(
                "encryption = {{ recipients = [\"{ops}\"], identity_file = \"restore.key\" }}"
            ),
        )
        .expect("valid");
    let enc = c.targets["orders"].encryption.as_ref().expect("encrypted");
    assert_eq!(
        enc.recipients().expect("recipients").strings(),
        vec![ops.clone()]
    );
    assert_eq!(enc.identity_file.as_deref(), Some(key.as_path()));
    assert_eq!(
        crate::crypt::agent_identities(&c)
            .expect("identities")
            .len(),
        1
    );

    let refused = |target: &str, needle: &str| {
        let err = refusal(f.parse("", target));
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    };
    refused("encryption = { recipients = [] }", "no recipient");
    refused("encryption = { }", "no recipient");
    refused("encryption = { recipients = [\"age1nope\"] }", "age1nope");
    refused(
        &format!("encryption = {{ recipients = [\"{ops}\"], passphrase = \"x\" }}"),
        "passphrase",
    );
    refused(
        &format!("encryption = {{ recipients = [\"{ops}\"], identity_file = \"missing.key\" }}"),
        "missing.key",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    refused(
        &format!("encryption = {{ recipients = [\"{ops}\"], identity_file = \"restore.key\" }}"),
        "chmod 600",
    );
    std::fs::write(f.dir.path().join("empty.txt"), "# nobody\n").expect("write");
    refused(
        "encryption = { recipients_file = \"empty.txt\" }",
        "empty.txt is empty",
    );
    // A physical target encrypts its base backups and its WAL archive.
    let c = f
        .parse(
            "",
            &format!("mode = \"physical\"\nencryption = {{ recipients = [\"{ops}\"] }}"),
        )
        .expect("a physical target may be encrypted");
    assert!(c.targets["orders"].encryption.is_some());
}

#[test]
fn encrypted_repositories_pass_encryption_on_and_take_no_plaintext() {
    let f = Fixture::new();
    let ops = age::x25519::Identity::generate().to_public().to_string();
    let repo = |enc: &str| {
        format!("[[repository]]\nname = \"offsite\"\nkind = \"fs\"\npath = \"offsite\"\n{enc}\n")
    };
    // A plaintext target may not copy into an encrypted repository.
    let err = refusal(f.parse(
        &repo(&format!("encryption = {{ recipients = [\"{ops}\"] }}")),
        "copy_to = [\"offsite\"]",
    ));
    assert!(err.contains("never receives a plaintext backup"), "{err}");
    // An encrypted target may.
    let c = f
        .parse(
            &repo(&format!("encryption = {{ recipients = [\"{ops}\"] }}")),
            &format!("copy_to = [\"offsite\"]\nencryption = {{ recipients = [\"{ops}\"] }}"),
        )
        .expect("valid");
    assert!(c.repository_encryption.contains_key("offsite"));
    // A bad table on a repository names the repository's key.
    let err = refusal(f.parse(&repo("encryption = { recipients = [\"x\"] }"), ""));
    assert!(err.contains("repository[0].encryption.recipients"), "{err}");
}

#[test]
fn restore_jobs_are_bounded_and_for_logical_targets() {
    let f = Fixture::new();
    let c = f.parse("", "restore_jobs = 4").expect("four jobs");
    assert_eq!(c.targets["orders"].restore_jobs, 4);
    let c = f.parse("", "").expect("default");
    assert_eq!(c.targets["orders"].restore_jobs, 1, "streamed by default");
    refused("", "restore_jobs = 0", "out of range");
    refused("", "restore_jobs = 65", "out of range");
    refused(
        "",
        "mode = \"physical\"\nrestore_jobs = 2",
        "physical base backup",
    );
}

#[test]
fn several_coordinators_are_tried_in_turn() {
    let f = Fixture::new();
    let c = f.parse("", "").expect("valid");
    assert_eq!(c.coordinators, ["https://127.0.0.1:7443"]);
    let with = |list: &str| {
        parse(
            &f.dir.path().join("agent.toml"),
            &format!(
                "name = \"a\"\nenvironment = \"dev\"\ncoordinator = {list}\nstate_dir = \"state\"\n\
                 [tls]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n"
            ),
        )
    };
    let c = with("[\"https://coord-a:7443\", \"https://coord-b:7443\"]").expect("a list");
    assert_eq!(
        c.coordinators,
        ["https://coord-a:7443", "https://coord-b:7443"]
    );
    let e = refusal(with("[]"));
    assert!(
        e.contains("coordinator") && e.contains("lists no URL"),
        "{e}"
    );
    let e = refusal(with("[\"https://coord-a:7443\", \"http://coord-b:7443\"]"));
    assert!(
        e.contains("coordinator") && e.contains("http://coord-b"),
        "{e}"
    );
    let e = refusal(with("7443"));
    assert!(e.contains("coordinator"), "{e}");
}
