//! Where a database server is, as far as TLS defaults care: this machine or another one, and
//! the CA bundle a verifying connection falls back to.

/// The CA bundle a verifying connection uses when the URL names none (Debian's
/// `ca-certificates`).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Whether a target host is this machine: a Unix socket (no host, or a path), `localhost`
/// or a loopback address. Only such connections may default to unverified TLS; the decision
/// is made on the URL's text, never on what a name resolves to.
pub fn is_local_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || h.starts_with('/') || h.to_ascii_lowercase().starts_with("%2f") {
        return true;
    }
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match h.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// What went wrong with TLS, judged from a driver's or client library's error text.
fn tls_failure(error: &str) -> Option<bool> {
    let e = error.to_ascii_lowercase();
    let no_tls = (e.contains("not support") || e.contains("does not support"))
        && (e.contains("tls") || e.contains("ssl"));
    let bad_cert = e.contains("certificate")
        || e.contains("unknownissuer")
        || e.contains("notvalidforname")
        || e.contains("unknown issuer");
    if no_tls {
        Some(true)
    } else if bad_cert {
        Some(false)
    } else {
        None
    }
}

/// What to do about a failed PostgreSQL connection whose cause is TLS, or `None` when the
/// cause is something else.
pub fn pg_tls_hint(error: &str) -> Option<&'static str> {
    tls_failure(error).map(|no_tls| {
        if no_tls {
            "the server offers no TLS and lifeboat verifies hosts other than this machine; enable ssl on the server, or add sslmode=prefer to the URL to allow plaintext"
        } else {
            "the server's certificate is not trusted for this host; name its CA with sslrootcert=/path/ca.pem in the URL, or add sslmode=require to skip the identity check"
        }
    })
}

/// [`pg_tls_hint`] for MySQL/MariaDB, with that engine's parameter names.
pub fn mysql_tls_hint(error: &str) -> Option<&'static str> {
    tls_failure(error).map(|no_tls| {
        if no_tls {
            "the server offers no TLS and lifeboat verifies hosts other than this machine; enable TLS on the server, or add ssl-mode=preferred to the URL to allow plaintext"
        } else {
            "the server's certificate is not trusted for this host; name its CA with ssl-ca=/path/ca.pem in the URL, or add ssl-mode=required to skip the identity check"
        }
    })
}
