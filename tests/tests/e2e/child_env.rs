//! Database tools run with an allow-listed environment: a cloud credential, a token or a
//! redirecting `PG*` variable in the agent's environment never reaches pg_dump or pg_restore;
//! the passfile lifeboat writes does.

use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{PgBinDir, Sandbox, SandboxTarget, TestDir, assert_same_data};

#[test]
fn database_tools_get_only_allow_listed_variables() {
    let dir = TestDir::new("child-env");
    let bin = PgBinDir::new(&dir.path().join("bin"));
    for tool in ["pg_dump", "pg_restore"] {
        bin.wrap(
            tool,
            &format!("env > \"$HERE/{tool}.env.$$\"\nexec \"$REAL\" \"$@\""),
        );
    }
    let s = Sandbox::builder("child-env")
        .dir(dir)
        .agent_env("AWS_SECRET_ACCESS_KEY", "canary-aws-secret-1")
        .agent_env("GITHUB_TOKEN", "canary-token-2")
        .agent_env("PGSERVICE", "canary-service-3")
        .agent_env("LANG", "C.UTF-8")
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .build();
    s.pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g;",
    );
    let id = find_str(&s.backup_ok("app"), "backup_id").expect("backup id");
    s.restore(&id, "app_copy", &[]).assert_ok();
    assert_same_data(&s.pg, "app", "app_copy", s.dir.path());

    let envs: Vec<(String, String)> = std::fs::read_dir(bin.path())
        .expect("read bin dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".env."))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).expect("read env"),
            )
        })
        .collect();
    for tool in ["pg_dump", "pg_restore"] {
        assert!(
            envs.iter().any(|(n, _)| n.starts_with(tool)),
            "{tool} never ran through the wrapper: {envs:?}"
        );
    }
    for (name, env) in &envs {
        assert!(!env.contains("canary"), "{name} inherited a secret: {env}");
        assert!(env.contains("PGPASSFILE="), "{name}: {env}");
        assert!(env.contains("PATH="), "{name}: {env}");
        assert!(env.contains("LANG=C.UTF-8"), "{name}: {env}");
    }
}
