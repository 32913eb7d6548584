//! A small HTTP client for the relay, used by the client commands.

use anyhow::{Context, anyhow};
use loopchat_proto::{Discovery, ErrorBody};
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;

use super::Target;
use crate::home::Home;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// e.g. `http://127.0.0.1:4000` (no trailing slash, no path).
    origin: String,
    token: String,
    /// The discovery file, when the relay was found through it.
    pub discovery: Option<Discovery>,
}

impl Client {
    /// `--url`/`--token` (or their env vars), else the discovery file after
    /// checking that its relay is alive.
    pub fn connect(target: &Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Tells `/webchat/status` that a stream is the CLI's.
            .user_agent(concat!("loopchat/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?;
        if let Some(url) = &target.url {
            let token = target
                .token
                .clone()
                .ok_or_else(|| anyhow!("--url needs --token (or LOOPCHAT_TOKEN) as well"))?;
            let parsed =
                reqwest::Url::parse(url).with_context(|| format!("invalid --url {url:?}"))?;
            let origin = parsed.origin().ascii_serialization();
            return Ok(Self {
                http,
                origin,
                token,
                discovery: None,
            });
        }
        let home = Home::at(Home::locate(target.home.as_deref()));
        crate::home::check_existing(home.root())?;
        let d = Discovery::read_live(&home.discovery_file(), crate::discovery::CONNECT_TIMEOUT)?;
        Ok(Self {
            http,
            origin: format!("http://127.0.0.1:{}", d.port),
            token: target.token.clone().unwrap_or_else(|| d.token.clone()),
            discovery: Some(d),
        })
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.origin))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.origin))
            .bearer_auth(&self.token)
    }
}

/// The relay answered with its JSON error: kept typed so that a command can
/// tell, say, a rate limit (try later) from a refusal (fix the request).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: ErrorBody,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.body.error,
            self.body.code.as_str(),
            self.status
        )
    }
}

impl std::error::Error for Refused {}

/// Sends and checks: a non-2xx answer becomes an error with the relay's own
/// sentence ([`Refused`] when it is the protocol's JSON error).
pub async fn send(request: RequestBuilder) -> anyhow::Result<Response> {
    let response = request
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the relay: {e}"))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => Err(Refused {
            status: status.as_u16(),
            body,
        }
        .into()),
        Err(_) => Err(anyhow!("the relay answered HTTP {status}: {text}")),
    }
}

pub async fn json<T: DeserializeOwned>(request: RequestBuilder) -> anyhow::Result<T> {
    send(request)
        .await?
        .json()
        .await
        .context("the relay's answer is not the expected JSON")
}
