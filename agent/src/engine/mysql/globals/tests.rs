use super::*;

/// What MariaDB 10.11 prints, as a capture stores it (passwords left out).
const OBJECT: &str = r#"-- lifeboat: accounts and grants (MariaDB 10.11.19), without passwords
CREATE ROLE `readers`;
GRANT USAGE ON *.* TO `readers`;
GRANT SELECT ON `shop`.* TO `readers`;
CREATE USER `app`@`%` /* lifeboat: password left out */ ACCOUNT LOCK;
GRANT USAGE ON *.* TO `app`@`%`;
GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%` WITH GRANT OPTION;
GRANT SELECT, INSERT ON `shop`.`t` TO `app`@`%`;
CREATE USER `rep`@`10.0.0.%`;
GRANT `readers` TO `rep`@`10.0.0.%`;
GRANT USAGE ON *.* TO `rep`@`10.0.0.%`;
GRANT SELECT (`id`, `name`) ON `other`.`t2` TO `rep`@`10.0.0.%`;
SET DEFAULT ROLE `readers` FOR `rep`@`10.0.0.%`;
CREATE USER `adm`@`localhost` IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO `adm`@`localhost` WITH GRANT OPTION;
CREATE USER `we;ird``name`@`%`;
GRANT EXECUTE ON PROCEDURE `shop`.`p1` TO `we;ird``name`@`%`;
CREATE USER `root`@`127.0.0.1`;
"#;

fn server(accounts: &[Account]) -> Server {
    Server {
        provider: Some(Provider::Mariadb),
        accounts: accounts.iter().cloned().collect(),
        objects: [("shop", "t"), ("shop", "p1")]
            .iter()
            .map(|(d, n)| ((*d).to_owned(), (*n).to_owned()))
            .collect(),
        allow_superuser: false,
        deferred_database: None,
    }
}

fn fate<'a>(p: &'a Plan, a: &Account) -> Option<&'a Fate> {
    p.accounts.iter().find(|x| &x.account == a).map(|x| &x.fate)
}

#[test]
fn statements_are_split_with_quotes_respected() {
    let s = split(OBJECT);
    assert_eq!(s.len(), 17, "{s:#?}");
    assert_eq!(s[14], "CREATE USER `we;ird``name`@`%`;");
    assert_eq!(
        split("SELECT 'a;b'; -- c;\n/* d; */ SELECT \"e;\""),
        ["SELECT 'a;b';", "/* d; */ SELECT \"e;\""]
    );
}

#[test]
fn statements_are_classified() {
    let stmts = parse(OBJECT);
    assert_eq!(
        stmts[0],
        Stmt::CreateRole {
            account: Account::role("readers"),
            text: "CREATE ROLE `readers`;".into()
        }
    );
    assert!(matches!(
        &stmts[3],
        Stmt::CreateUser { account, password: false, password_left_out: true, .. }
            if *account == Account::user("app", "%")
    ));
    let Stmt::Grant(g) = &stmts[6] else {
        panic!("{:?}", stmts[6])
    };
    assert_eq!(g.grantee, Account::user("app", "%"));
    assert_eq!(g.database(), Some("shop"));
    assert!(matches!(&g.on, GrantOn::Object { name, .. } if name == "t"));
    assert_eq!(
        g.for_database("shop_copy"),
        "GRANT SELECT, INSERT ON `shop_copy`.`t` TO `app`@`%`;"
    );
    let Stmt::Grant(g) = &stmts[8] else {
        panic!("{:?}", stmts[8])
    };
    assert_eq!(g.on, GrantOn::Role(Account::role("readers")));
    assert!(matches!(
        &stmts[10],
        Stmt::Grant(Grant { on: GrantOn::Object { database, name, .. }, admin: None, .. })
            if database == "other" && name == "t2"
    ));
    assert!(matches!(
        &stmts[11],
        Stmt::DefaultRole { account, role, .. }
            if *account == Account::user("rep", "10.0.0.%") && *role == Account::role("readers")
    ));
    assert!(matches!(
        &stmts[13],
        Stmt::Grant(Grant { admin: Some(why), .. }) if why == "ALL PRIVILEGES, WITH GRANT OPTION ON *.*"
    ));
    assert!(matches!(
        &stmts[15],
        Stmt::Grant(Grant { grantee, on: GrantOn::Object { .. }, .. })
            if *grantee == Account::user("we;ird`name", "%")
    ));
    assert_eq!(counts(&stmts), (6, 1));
}

#[test]
fn admin_privileges_are_recognised() {
    let admin = |g: &str| match classify(g) {
        Stmt::Grant(g) => g.admin,
        other => panic!("{other:?}"),
    };
    assert!(admin("GRANT SUPER ON *.* TO `a`@`%`").is_some());
    assert!(admin("GRANT SELECT, CREATE USER ON *.* TO `a`@`%`").is_some());
    assert!(admin("GRANT BINLOG ADMIN ON *.* TO `a`@`%`").is_some());
    assert!(admin("GRANT SELECT ON *.* TO `a`@`%` WITH GRANT OPTION").is_some());
    assert!(admin("GRANT PROXY ON ''@'%' TO 'a'@'%'").is_some());
    assert!(admin("GRANT INSERT ON `mysql`.* TO `a`@`%`").is_some());
    assert!(admin("GRANT UPDATE ON `mysql`.`user` TO `a`@`%`").is_some());
    assert!(admin("GRANT SELECT ON `mysql`.* TO `a`@`%`").is_none());
    assert!(admin("GRANT SELECT, INSERT ON *.* TO `a`@`%`").is_none());
    assert!(admin("GRANT ALL PRIVILEGES ON `shop`.* TO `a`@`%` WITH GRANT OPTION").is_none());
    assert!(admin("GRANT USAGE ON *.* TO `a`@`%` REQUIRE SSL").is_none());
}

#[test]
fn password_hashes_are_left_out_and_the_account_locked() {
    let s = |t: &str| strip_credentials(t);
    assert_eq!(
        s("CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*AF99DA81645D234DCA7024A11769858735F77B80'")
            .as_deref(),
        Some("CREATE USER `app`@`%` /* lifeboat: password left out */ ACCOUNT LOCK")
    );
    assert_eq!(
        s("CREATE USER `lim`@`%` IDENTIFIED BY PASSWORD '*B690' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10 PASSWORD EXPIRE INTERVAL 30 DAY")
            .as_deref(),
        Some("CREATE USER `lim`@`%` /* lifeboat: password left out */ REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10 ACCOUNT LOCK PASSWORD EXPIRE INTERVAL 30 DAY")
    );
    // Another way in is kept: then the account is not locked.
    assert_eq!(
        s("CREATE USER `r`@`localhost` IDENTIFIED VIA mysql_native_password USING '*ABC' OR unix_socket")
            .as_deref(),
        Some("CREATE USER `r`@`localhost` IDENTIFIED unix_socket /* lifeboat: password left out */")
    );
    assert_eq!(
        s("CREATE USER `e`@`%` IDENTIFIED VIA ed25519 USING 'dTXqC6u2' ACCOUNT LOCK").as_deref(),
        Some("CREATE USER `e`@`%` /* lifeboat: password left out */ ACCOUNT LOCK")
    );
    // MySQL 8 spells it out, unlock included.
    assert_eq!(
        s("CREATE USER `m`@`%` IDENTIFIED WITH 'caching_sha2_password' AS 0x2441243030352453 REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK PASSWORD HISTORY DEFAULT")
            .as_deref(),
        Some("CREATE USER `m`@`%` /* lifeboat: password left out */ REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT LOCK PASSWORD HISTORY DEFAULT")
    );
    // Nothing secret: nothing changes.
    assert_eq!(s("CREATE USER `rep`@`10.0.0.%`"), None);
    assert_eq!(
        s("CREATE USER `adm`@`localhost` IDENTIFIED VIA unix_socket"),
        None
    );
    assert_eq!(
        s("CREATE USER `p`@`%` IDENTIFIED VIA pam USING 'mariadb'"),
        None
    );
    let stripped = s("CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*AF99'").unwrap_or_default();
    assert!(matches!(
        classify(&stripped),
        Stmt::CreateUser {
            password: false,
            password_left_out: true,
            ..
        }
    ));
    assert!(matches!(
        classify("CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*AF99'"),
        Stmt::CreateUser {
            password: true,
            password_left_out: false,
            ..
        }
    ));
}

#[test]
fn grants_lose_their_identified_clause() {
    assert_eq!(
        strip_grant_identified(
            "GRANT USAGE ON *.* TO `lim`@`%` IDENTIFIED BY PASSWORD '*B690' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10"
        ),
        "GRANT USAGE ON *.* TO `lim`@`%` REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10"
    );
    assert_eq!(
        strip_grant_identified(
            "GRANT ALL PRIVILEGES ON *.* TO `a`@`l` IDENTIFIED VIA unix_socket WITH GRANT OPTION"
        ),
        "GRANT ALL PRIVILEGES ON *.* TO `a`@`l` WITH GRANT OPTION"
    );
    assert_eq!(
        strip_grant_identified("GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*X'"),
        "GRANT USAGE ON *.* TO `a`@`%`"
    );
    assert_eq!(
        strip_grant_identified("GRANT SELECT ON `d`.* TO `a`@`%`"),
        "GRANT SELECT ON `d`.* TO `a`@`%`"
    );
}

#[test]
fn existing_reserved_and_admin_accounts_are_not_created() {
    let stmts = parse(OBJECT);
    let p = plan(&stmts, &server(&[Account::user("rep", "10.0.0.%")]));
    assert_eq!(fate(&p, &Account::role("readers")), Some(&Fate::Create));
    assert_eq!(fate(&p, &Account::user("app", "%")), Some(&Fate::Create));
    assert_eq!(
        fate(&p, &Account::user("rep", "10.0.0.%")),
        Some(&Fate::Exists)
    );
    assert!(matches!(
        fate(&p, &Account::user("adm", "localhost")),
        Some(Fate::Refused(why)) if why.contains("--allow-superuser") && why.contains("ALL PRIVILEGES")
    ));
    assert!(matches!(
        fate(&p, &Account::user("root", "127.0.0.1")),
        Some(Fate::Refused(why)) if why.contains("system account")
    ));
    // Roles are created before users; an existing account gets nothing.
    let created: Vec<String> = p.creates.iter().map(|(a, _, _)| a.to_string()).collect();
    assert_eq!(created, ["readers", "'app'@'%'", "'we;ird`name'@'%'"]);
    assert!(p.grants.iter().all(|(a, _)| a.user != "rep"), "{p:?}");
    assert!(p.role_grants.is_empty());
    assert!(p.accounts[1].password_left_out);
    assert!(!p.passwords);

    let mut s = server(&[]);
    s.allow_superuser = true;
    let p = plan(&stmts, &s);
    assert_eq!(
        fate(&p, &Account::user("adm", "localhost")),
        Some(&Fate::Create)
    );
    s.provider = Some(Provider::Planetscale);
    let p = plan(&stmts, &s);
    assert!(p.creates.is_empty(), "{p:?}");
    assert!(matches!(
        fate(&p, &Account::user("app", "%")),
        Some(Fate::Refused(why)) if why.contains("PlanetScale")
    ));
}

#[test]
fn grants_follow_their_accounts_and_objects() {
    let stmts = parse(OBJECT);
    let p = plan(&stmts, &server(&[]));
    let grants: Vec<String> = p.grants.iter().map(|(_, g)| g.clone()).collect();
    assert!(grants.contains(&"GRANT `readers` TO `rep`@`10.0.0.%`;".to_owned()));
    assert_eq!(
        grants.last().map(String::as_str),
        Some("SET DEFAULT ROLE `readers` FOR `rep`@`10.0.0.%`;"),
        "default roles come after the role grants"
    );
    assert_eq!(
        p.role_grants,
        [(
            (Account::role("readers"), Account::user("rep", "10.0.0.%")),
            Fate::Create
        )]
    );
    // The column grant on a table that does not exist here waits.
    assert_eq!(
        p.missing_objects,
        [(Account::user("rep", "10.0.0.%"), "other.t2".to_owned())]
    );
    assert!(p.deferred.is_empty());

    // Restoring the database with its globals: its grants wait for it.
    let mut s = server(&[]);
    s.deferred_database = Some("shop".into());
    let p = plan(&stmts, &s);
    let deferred: Vec<String> = p.deferred.iter().map(|g| g.for_database("shop2")).collect();
    assert_eq!(
        deferred,
        [
            "GRANT SELECT ON `shop2`.* TO `readers`;",
            "GRANT ALL PRIVILEGES ON `shop2`.* TO `app`@`%` WITH GRANT OPTION;",
            "GRANT SELECT, INSERT ON `shop2`.`t` TO `app`@`%`;",
            "GRANT EXECUTE ON PROCEDURE `shop2`.`p1` TO `we;ird``name`@`%`;",
        ]
    );
    assert!(p.grants.iter().all(|(_, g)| !g.contains("`shop`")), "{p:?}");

    // A role that is not created: its grant is refused, and so is the default role.
    let p = plan(
        &parse(
            "CREATE USER `u`@`%`; GRANT `boss` TO `u`@`%`; SET DEFAULT ROLE `boss` FOR `u`@`%`;",
        ),
        &server(&[]),
    );
    assert!(matches!(&p.role_grants[0].1, Fate::Refused(why) if why.contains("boss")));
    assert!(p.grants.is_empty(), "{p:?}");
}

#[test]
fn with_passwords_the_hash_is_kept() {
    let p = plan(
        &parse("CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*AF99';"),
        &server(&[]),
    );
    assert!(p.passwords);
    assert_eq!(
        p.creates[0].2,
        "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*AF99';"
    );
}

#[test]
fn provider_accounts_are_reserved() {
    assert!(reserved_account("vt_app", Provider::Planetscale).is_some());
    assert!(reserved_account("vt_app", Provider::Mariadb).is_none());
    for u in [
        "root",
        "mariadb.sys",
        "mysql.sys",
        "mysql.session",
        "PUBLIC",
        "",
    ] {
        assert!(reserved_account(u, Provider::Mysql).is_some(), "{u}");
    }
    assert!(reserved_account("app", Provider::Mysql).is_none());
}
