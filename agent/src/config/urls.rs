//! Target URLs: what a PostgreSQL or MySQL/MariaDB connection URL may say (no secret, nothing
//! that would redirect the connection), and the database it names.

use lifeboat_common::names::validate_database;

/// A PostgreSQL target URL: `postgres://USER@HOST:PORT/DATABASE[?sslmode=…]`, no secret and
/// nothing that would redirect the connection.
pub(super) fn validate_pg_url(text: &str) -> Result<(url::Url, String), String> {
    let mut url = url::Url::parse(text)
        .map_err(|x| format!("not a valid URL ({x}); use postgres://USER@HOST:PORT/DATABASE"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("must start with postgres:// or postgresql:// (engine = \"postgres\")".into());
    }
    if url.password().is_some() {
        // Do not echo the URL: it holds a secret.
        return Err(
            "contains a password; remove it from the URL and put it in password_file (chmod 600)"
                .into(),
        );
    }
    if url.query_pairs().any(|(k, _)| k == "password") {
        return Err(
            "contains a password parameter; put the password in password_file (chmod 600)".into(),
        );
    }
    // Parameters that would override the host, user or database lifeboat connects to (the
    // restore targets a scratch database by name), or put a secret on a command line.
    const REFUSED_PARAMS: [&str; 8] = [
        "dbname",
        "host",
        "hostaddr",
        "port",
        "user",
        "service",
        "passfile",
        "sslpassword",
    ];
    if let Some((k, _)) = url
        .query_pairs()
        .find(|(k, _)| REFUSED_PARAMS.contains(&k.as_ref()))
    {
        return Err(format!(
            "the query parameter {k:?} is not allowed; put host, port, user and database in the URL itself (and passwords in password_file)"
        ));
    }
    let database = url.path().trim_start_matches('/').to_owned();
    if database.is_empty() {
        return Err("names no database; use postgres://USER@HOST:PORT/DATABASE".into());
    }
    validate_database(&database).map_err(|x| x.to_string())?;
    if url.username().is_empty() {
        return Err("names no user; use postgres://USER@HOST:PORT/DATABASE".into());
    }
    crate::provider::pg_tls_defaults(&mut url)?;
    Ok((url, database))
}

/// A MySQL/MariaDB target URL: `mysql://USER@HOST:PORT/DATABASE[?ssl-mode=…&ssl-ca=…]`.
pub(super) fn validate_mysql_url(
    text: &str,
) -> Result<(url::Url, crate::engine::mysql::ConnParams), String> {
    let url = url::Url::parse(text)
        .map_err(|x| format!("not a valid URL ({x}); use mysql://USER@HOST:PORT/DATABASE"))?;
    if !matches!(url.scheme(), "mysql" | "mariadb") {
        return Err("must start with mysql:// or mariadb:// (engine = \"mysql\")".into());
    }
    let params = crate::engine::mysql::ConnParams::from_url(&url).map_err(|x| format!("{x:#}"))?;
    validate_database(&params.database).map_err(|x| x.to_string())?;
    if crate::engine::mysql::SYSTEM_DATABASES
        .contains(&params.database.to_ascii_lowercase().as_str())
    {
        return Err(format!(
            "names the system database {}; name the application database to back up",
            params.database
        ));
    }
    Ok((url, params))
}
