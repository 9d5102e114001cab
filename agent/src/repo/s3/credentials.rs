//! Where the repository's credentials come from.

use super::*;

/// Static credentials from files, re-read when the SDK refreshes them (every five minutes)
/// so a rotated key takes effect without a restart. Never printed.
#[derive(Debug)]
pub(super) struct FileCredentials {
    pub(super) access_key_id: PathBuf,
    pub(super) secret_access_key: PathBuf,
    pub(super) session_token: Option<PathBuf>,
}

impl FileCredentials {
    pub(super) fn load(&self) -> Result<Credentials, CredentialsError> {
        let read_plain = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    CredentialsError::provider_error(anyhow!(
                        "read the access key id from {}: {e}",
                        p.display()
                    ))
                })
        };
        let read_secret = |p: &PathBuf| {
            lifeboat_common::secret::read_secret_file(p)
                .map(|s| s.expose().trim().to_owned())
                .map_err(|e| CredentialsError::provider_error(anyhow!("{e:#}")))
        };
        let id = read_plain(&self.access_key_id)?;
        let secret = read_secret(&self.secret_access_key)?;
        let token = self.session_token.as_ref().map(read_secret).transpose()?;
        Ok(Credentials::new(
            id,
            secret,
            token,
            Some(SystemTime::now() + Duration::from_secs(300)),
            "lifeboat-files",
        ))
    }
}

impl ProvideCredentials for FileCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.load())
    }
}

/// The standard AWS credential chain, built on first use (it needs the runtime).
pub(super) struct ChainCredentials {
    pub(super) region: Region,
    pub(super) http: aws_sdk_s3::config::SharedHttpClient,
    pub(super) chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
}

impl fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainCredentials")
    }
}

impl ProvideCredentials for ChainCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .configure(
                            aws_config::provider_config::ProviderConfig::default()
                                .with_http_client(self.http.clone())
                                .with_region(Some(self.region.clone())),
                        )
                        .region(self.region.clone())
                        .build()
                        .await
                })
                .await;
            chain.provide_credentials().await
        })
    }
}
