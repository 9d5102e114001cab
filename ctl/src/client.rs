//! The connection to the coordinator's Control service.

use std::{future::Future, time::Duration};

use anyhow::{Context, Result};
use lifeboat_common::tls::{TlsFiles, client_endpoint};
use lifeboat_proto::control_client::ControlClient;
use tonic::transport::Channel;

use crate::{
    cli::GlobalArgs,
    error::{self, usage},
};

/// A connected Control client and what is needed to explain its failures.
#[derive(Debug, Clone)]
pub struct Conn {
    client: ControlClient<Channel>,
    url: String,
    timeout: Duration,
    /// The URLs given after the one connected to, for calls a standby refuses.
    others: Vec<(String, tonic::transport::Endpoint)>,
}

/// The connection options, each with its flag and environment variable, for messages.
const OPTIONS: [(&str, &str); 4] = [
    ("--coordinator URL", "LIFEBOAT_COORDINATOR"),
    ("--ca FILE", "LIFEBOAT_CA"),
    ("--cert FILE", "LIFEBOAT_CERT"),
    ("--key FILE", "LIFEBOAT_KEY"),
];

/// The URL and TLS files, or a usage error naming every missing option.
pub fn settings(global: &GlobalArgs) -> Result<(String, TlsFiles)> {
    let present = [
        global.coordinator.is_some(),
        global.ca.is_some(),
        global.cert.is_some(),
        global.key.is_some(),
    ];
    if let (Some(url), Some(ca), Some(cert), Some(key)) = (
        global.coordinator.clone(),
        global.ca.clone(),
        global.cert.clone(),
        global.key.clone(),
    ) {
        return Ok((url, TlsFiles { ca, cert, key }));
    }
    let missing: Vec<String> = OPTIONS
        .iter()
        .zip(present)
        .filter(|(_, p)| !p)
        .map(|((flag, env), _)| format!("{flag} (or {env})"))
        .collect();
    Err(error::usage_msg(format!(
        "missing connection options: {}; this command talks to the coordinator, so give its \
         URL, the CA that signed its certificate and your operator certificate and key",
        missing.join(", ")
    )))
}

fn control_client(channel: Channel) -> ControlClient<Channel> {
    ControlClient::new(channel)
        .max_decoding_message_size(lifeboat_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(lifeboat_proto::MAX_MESSAGE_BYTES)
}

impl Conn {
    /// Checks the options and files, then connects (TCP, TLS, HTTP/2). `--coordinator` may
    /// list several URLs separated by commas (the coordinators sharing one catalog): they are
    /// tried in order and the first that answers is used.
    pub async fn connect(global: &GlobalArgs) -> Result<Self> {
        let (list, files) = settings(global)?;
        let urls: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(error::usage_msg(
                "--coordinator names no URL; give https://HOST:PORT (several separated by commas)",
            ));
        }
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
            return Err(error::usage_msg(format!(
                "--coordinator {bad:?} must be an https:// URL (every connection uses mutual TLS)"
            )));
        }
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in &urls {
            endpoints.push(
                client_endpoint(url, &files, global.server_name.as_deref())
                    .map_err(usage)
                    .context("set up the connection to the coordinator")?,
            );
        }
        let mut failures = Vec::new();
        let mut given: Vec<(String, tonic::transport::Endpoint)> = urls
            .iter()
            .map(|u| (*u).to_owned())
            .zip(endpoints)
            .collect();
        while !given.is_empty() {
            let (url, endpoint) = given.remove(0);
            match endpoint.connect().await {
                Ok(channel) => {
                    return Ok(Self {
                        client: control_client(channel),
                        url,
                        timeout: Duration::from_secs(global.timeout),
                        others: given,
                    });
                }
                Err(e) => failures.push(error::connect_error(&url, &e)),
            }
        }
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        let all: Vec<String> = failures.iter().map(|e| format!("{e:#}")).collect();
        Err(anyhow::anyhow!(
            "no coordinator answered ({} tried): {}",
            all.len(),
            all.join("; ")
        ))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A request carrying the `--timeout` deadline to the coordinator.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        req
    }

    /// Runs one unary call with the `--timeout` deadline; `what` names it in errors
    /// ("start backup").
    pub async fn unary<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        F: FnOnce(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, call(self.client.clone())).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(error::rpc_error(&self.url, what, &status)),
            Err(_) => Err(self.late(what, &self.url)),
        }
    }

    /// A call to `url` that got no answer within `--timeout`.
    fn late(&self, what: &str, url: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}: the coordinator at {url} did not answer within {}s (raise --timeout if it \
             is busy)",
            self.timeout.as_secs()
        )
    }

    /// [`Conn::unary`] for a call only the active coordinator of a catalog answers: refused
    /// by a standby (its answer is marked so), it is sent to the next URL given that
    /// connects. The refused call did nothing, so sending it again is safe.
    pub async fn unary_active<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        F: Fn(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut url = self.url.clone();
        let mut client = self.client.clone();
        let mut rest = self.others.iter();
        loop {
            let status = match tokio::time::timeout(self.timeout, call(client.clone())).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => return Err(self.late(what, &url)),
            };
            if !status
                .metadata()
                .contains_key(lifeboat_proto::STANDING_BY_KEY)
            {
                return Err(error::rpc_error(&url, what, &status));
            }
            let mut next = None;
            for (u, endpoint) in rest.by_ref() {
                if let Ok(channel) = endpoint.connect().await {
                    next = Some((u.clone(), control_client(channel)));
                    break;
                }
            }
            match next {
                Some((u, c)) => {
                    url = u;
                    client = c;
                }
                None => return Err(error::rpc_error(&url, what, &status)),
            }
        }
    }

    /// Opens the WatchJob stream. `--timeout` bounds only the wait for the stream to open: the
    /// stream itself lasts as long as the job, so no deadline travels with the request.
    pub async fn watch_job(
        &self,
        job_id: &str,
    ) -> Result<tonic::Streaming<lifeboat_proto::Job>, tonic::Status> {
        let req = tonic::Request::new(lifeboat_proto::GetJobRequest {
            job_id: job_id.to_owned(),
        });
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.watch_job(req)).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {}s",
                self.timeout.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Outcome;

    fn global() -> GlobalArgs {
        GlobalArgs {
            coordinator: None,
            ca: None,
            cert: None,
            key: None,
            server_name: None,
            output: crate::cli::OutputFormat::Table,
            timeout: 30,
        }
    }

    #[test]
    fn missing_options_are_listed() {
        let mut g = global();
        g.ca = Some("ca.pem".into());
        let e = settings(&g).expect_err("accepted without URL");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        let s = format!("{e:#}");
        assert!(
            s.contains("--coordinator URL (or LIFEBOAT_COORDINATOR)"),
            "{s}"
        );
        assert!(s.contains("--cert FILE (or LIFEBOAT_CERT)"), "{s}");
        assert!(s.contains("--key FILE (or LIFEBOAT_KEY)"), "{s}");
        assert!(!s.contains("LIFEBOAT_CA"), "{s}");
    }

    #[tokio::test]
    async fn bad_url_and_missing_files_are_usage_errors() {
        let mut g = global();
        g.coordinator = Some("http://c:7443".into());
        g.ca = Some("/nonexistent/ca.pem".into());
        g.cert = Some("/nonexistent/op.pem".into());
        g.key = Some("/nonexistent/op.key".into());
        let e = Conn::connect(&g).await.expect_err("http accepted");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        assert!(format!("{e:#}").contains("https://"), "{e:#}");
        g.coordinator = Some("https://c:7443".into());
        let e = Conn::connect(&g).await.expect_err("missing files accepted");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
        // Every URL of a list is checked before any is tried.
        g.coordinator = Some("https://a:7443, http://b:7443".into());
        let e = Conn::connect(&g)
            .await
            .expect_err("http in a list accepted");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        assert!(format!("{e:#}").contains("https://"), "{e:#}");
        g.coordinator = Some(" , ".into());
        let e = Conn::connect(&g).await.expect_err("an empty list accepted");
        assert_eq!(Outcome::of(&e), Outcome::Usage);
        assert!(format!("{e:#}").contains("names no URL"), "{e:#}");
    }
}
