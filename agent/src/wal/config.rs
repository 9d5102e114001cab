//! The `[wal]` section of the agent's config: where the WAL socket is and who may use it.

use std::{collections::BTreeSet, path::PathBuf};

use serde::Deserialize;

/// Where `lifeboat-agent wal-push`/`wal-fetch` find the agent unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lifeboat-agent/wal.sock";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWal {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    allowed_users: Option<Vec<String>>,
    client: Option<PathBuf>,
}

/// The WAL socket's settings, validated (user and group names resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// The Unix socket `archive_command`/`restore_command` talk to.
    pub socket: PathBuf,
    /// The group the socket belongs to (mode 0660); `None`: the agent's own group, mode 0600.
    pub socket_group: Option<(String, u32)>,
    /// The user ids whose connections are served (besides the agent's own user): the server's
    /// OS user, and whoever runs a recovered cluster's `restore_command`.
    pub allowed_uids: BTreeSet<u32>,
    /// The names `allowed_uids` came from, for messages.
    pub allowed_users: Vec<String>,
    /// The `lifeboat-agent` a restored cluster's `restore_command` runs (`client`; default:
    /// this agent's own executable).
    pub client: PathBuf,
}

impl FileWal {
    /// Validates the section; the error is `(key, message)`.
    pub(crate) fn validate(
        self,
        resolve: impl Fn(&std::path::Path) -> PathBuf,
    ) -> Result<WalConfig, (String, String)> {
        let socket = match self.socket {
            Some(p) if !p.is_absolute() => {
                return Err((
                    "wal.socket".into(),
                    format!(
                        "{} must be an absolute path (archive_command runs in the data directory)",
                        p.display()
                    ),
                ));
            }
            Some(p) => resolve(&p),
            None => PathBuf::from(DEFAULT_SOCKET),
        };
        let socket_group = match self.socket_group {
            None => None,
            Some(name) => {
                let group = nix::unistd::Group::from_name(&name)
                    .map_err(|e| {
                        (
                            "wal.socket_group".to_owned(),
                            format!("look up group {name:?}: {e}"),
                        )
                    })?
                    .ok_or_else(|| {
                        (
                            "wal.socket_group".to_owned(),
                            format!(
                                "there is no group {name:?} on this host; create it or fix the name"
                            ),
                        )
                    })?;
                Some((name, group.gid.as_raw()))
            }
        };
        let allowed_users = self
            .allowed_users
            .unwrap_or_else(|| vec!["postgres".into()]);
        let mut allowed_uids = BTreeSet::new();
        for name in &allowed_users {
            let user = nix::unistd::User::from_name(name).map_err(|e| {
                (
                    "wal.allowed_users".to_owned(),
                    format!("look up user {name:?}: {e}"),
                )
            })?;
            match user {
                Some(u) => {
                    allowed_uids.insert(u.uid.as_raw());
                }
                // The default names the usual server user; a host without it simply has no
                // such client.
                None if name == "postgres" => {}
                None => {
                    return Err((
                        "wal.allowed_users".into(),
                        format!(
                            "there is no user {name:?} on this host; list the OS users PostgreSQL runs as"
                        ),
                    ));
                }
            }
        }
        let client = match self.client {
            Some(p) if !p.is_absolute() => {
                return Err((
                    "wal.client".into(),
                    format!(
                        "{} must be an absolute path (restore_command runs in the restored data directory)",
                        p.display()
                    ),
                ));
            }
            Some(p) => p,
            None => std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/lifeboat-agent")),
        };
        Ok(WalConfig {
            socket,
            socket_group,
            allowed_uids,
            allowed_users,
            client,
        })
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        FileWal::default()
            .validate(|p| p.to_owned())
            .expect("the default [wal] section is valid")
    }
}
