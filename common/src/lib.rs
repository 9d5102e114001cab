//! Code that more than one lifeboat program needs: TLS loading and the coordinator's TLS
//! acceptor, certificate identities, names and ids, age keys (ids, key files), secrets, config error reporting, logging
//! set-up, the clock and RFC 3339 times, and the development PKI.

pub mod config;
pub mod duration;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod logging;
pub mod names;
pub mod pki;
pub mod secret;
pub mod time;
pub mod tls;
