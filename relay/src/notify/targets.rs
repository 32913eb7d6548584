//! Delivery targets: the places besides the chat windows that a reply can
//! be sent to with rpc `to` — a webhook (ntfy, Gotify, a chat bot…) or a
//! local command (`notify-send`, `mail`…), configured under `[targets.NAME]`.
//!
//! A delivery is made after the turn has been acknowledged, so a slow or
//! dead target never holds up the chat. Each attempt is bounded by the
//! target's timeout; a transient failure (no connection, a timeout, a 5xx,
//! 408 or 429, a command that failed) is tried again after 1, 5, 25… s, up
//! to `retries` times. What still fails is reported back as an alert in the
//! chat windows, since the user asked for the reply somewhere they will not
//! otherwise look. Every attempt carries the same `id`, so a receiver that
//! saw an attempt it could not answer in time can drop the repeat.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::draft::Draft;
use crate::config::{RETRY_WAITS, TargetConfig};
use crate::diagnostics::{error_chain, read_start, read_tail};

/// The webhook client cannot be built (no TLS roots, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for webhooks: {0}")]
pub struct SetupError(reqwest::Error);

/// Bytes of a failing target's answer (or stderr) kept for the alert.
const DETAIL_KEEP: usize = 300;

/// Bytes of a refusing webhook's answer, or of a failing command's stderr,
/// held at most.
const ANSWER_KEEP: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("the webhook could not be reached: {0}")]
    Unreachable(String),
    #[error("the webhook answered {status}{detail}")]
    Refused { status: u16, detail: String },
    #[error("the command could not be started: {0}")]
    Spawn(std::io::Error),
    #[error("the command failed ({status}){detail}")]
    CommandFailed { status: String, detail: String },
}

impl DeliveryError {
    /// Whether trying again later could succeed. A webhook's 4xx (other than
    /// 408 and 429) and a command that cannot start will fail the same way.
    fn is_transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Unreachable(_) | Self::CommandFailed { .. } => true,
            Self::Refused { status, .. } => matches!(status, 408 | 429 | 500..),
            Self::Spawn(_) => false,
        }
    }
}

/// A delivery that did not get through: the last error, after `attempts`.
#[derive(Debug)]
pub struct Undelivered {
    pub attempts: usize,
    pub error: DeliveryError,
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.attempts {
            1 => write!(f, "{}", self.error),
            n => write!(f, "{} (after {n} attempts)", self.error),
        }
    }
}

/// What a target receives: the notification the windows would have shown,
/// plus the whole reply (a notification body is cut to its first lines).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery<'a> {
    pub target: &'a str,
    pub id: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub priority: u8,
    pub tags: &'a [String],
    pub click: Option<&'a str>,
    pub session: Option<&'a str>,
    pub text: &'a str,
    pub timestamp: String,
}

impl<'a> Delivery<'a> {
    pub fn new(target: &'a str, draft: &'a Draft, text: &'a str, timestamp: String) -> Self {
        Self {
            target,
            id: draft.id.as_deref().unwrap_or_default(),
            title: &draft.title,
            body: &draft.body,
            priority: draft.priority,
            tags: &draft.tags,
            click: draft.click.as_deref(),
            session: draft.session.as_deref(),
            text,
            timestamp,
        }
    }
}

/// The configured targets, checked at start-up.
#[derive(Default)]
pub struct DeliveryTargets {
    targets: BTreeMap<String, TargetConfig>,
    http: reqwest::Client,
}

impl DeliveryTargets {
    pub fn new(targets: BTreeMap<String, TargetConfig>) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A webhook that redirects elsewhere is a misconfiguration to
            // report, not a hop to follow with the reply in hand.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SetupError)?;
        Ok(Self { targets, http })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.targets.contains_key(name)
    }

    /// The configured names, for an error that lists them.
    pub fn names(&self) -> Vec<&str> {
        self.targets.keys().map(String::as_str).collect()
    }

    /// Sends `delivery` to its target, trying again after a transient
    /// failure; `Ok` once the target took it.
    pub async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), Undelivered> {
        let Some(target) = self.targets.get(delivery.target) else {
            // Checked when the rpc arrived; only a config change could get here.
            let error = DeliveryError::Unreachable("no such target".into());
            return Err(Undelivered { attempts: 1, error });
        };
        let retries = (target.retries as usize).min(RETRY_WAITS.len());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.attempt(target, delivery).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if attempts > retries || !error.is_transient() {
                return Err(Undelivered { attempts, error });
            }
            tracing::info!(target = delivery.target, attempt = attempts, error = %error, "delivery failed; trying again");
            tokio::time::sleep(RETRY_WAITS[attempts - 1]).await;
        }
    }

    async fn attempt(
        &self,
        target: &TargetConfig,
        delivery: &Delivery<'_>,
    ) -> Result<(), DeliveryError> {
        let json = serde_json::to_vec(delivery).unwrap_or_default();
        let limit = Duration::from_secs(target.timeout_secs.max(1));
        let attempt = async {
            match (&target.webhook, &target.command) {
                (Some(url), _) => self.post(url, &target.headers, json).await,
                (None, Some(argv)) => run(argv, delivery, json).await,
                (None, None) => Ok(()),
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| DeliveryError::Timeout(limit.as_secs()))?
    }

    async fn post(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        json: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // Without the URL: a webhook URL often carries its secret.
        let response = request
            .send()
            .await
            .map_err(|e| DeliveryError::Unreachable(error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Only the start of the answer: a broken endpoint may send a lot.
        let body = read_start(&mut response.bytes_stream(), ANSWER_KEEP).await;
        Err(DeliveryError::Refused {
            status: status.as_u16(),
            detail: detail(&String::from_utf8_lossy(&body)),
        })
    }
}

/// Runs a command target: no shell, the delivery as JSON on stdin and its
/// main fields in the environment, so `notify-send "$LOOPCHAT_TITLE"
/// "$LOOPCHAT_BODY"` works from a `sh -c` wrapper.
async fn run(argv: &[String], d: &Delivery<'_>, json: Vec<u8>) -> Result<(), DeliveryError> {
    let Some((program, args)) = argv.split_first() else {
        // Refused by the config check; kept total rather than panicking.
        return Ok(());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("LOOPCHAT_TARGET", d.target)
        .env("LOOPCHAT_TITLE", d.title)
        .env("LOOPCHAT_BODY", d.body)
        .env("LOOPCHAT_SESSION", d.session.unwrap_or_default())
        .env("LOOPCHAT_CLICK", d.click.unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // The timeout drops this future: the command must not outlive it.
        .kill_on_drop(true)
        .spawn()
        .map_err(DeliveryError::Spawn)?;
    let stdin = child.stdin.take();
    let stderr_pipe = child.stderr.take();
    // Both at once: a command that writes a lot to stderr before it reads
    // its input must not deadlock against us.
    let feed = async {
        if let Some(mut stdin) = stdin {
            // A command that ignores its input closes the pipe early; that
            // is its choice, not a failure.
            let _ = stdin.write_all(&json).await;
        }
    };
    // Only the end of stderr is kept (that is where the reason usually is),
    // however much the command writes.
    let drain = async {
        match stderr_pipe {
            Some(pipe) => read_tail(pipe, ANSWER_KEEP).await,
            None => Vec::new(),
        }
    };
    let ((), stderr) = tokio::join!(feed, drain);
    let status = child.wait().await.map_err(DeliveryError::Spawn)?;
    if status.success() {
        return Ok(());
    }
    Err(DeliveryError::CommandFailed {
        status: status.to_string(),
        detail: detail(&String::from_utf8_lossy(&stderr)),
    })
}

/// The tail end of what a failing target said, as `: …` or nothing.
fn detail(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut start = text.len().saturating_sub(DETAIL_KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!(": {}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(detail("  \n"), "");
        assert_eq!(detail("boom\n"), ": boom");
        let long = format!("{}END", "é".repeat(400));
        let d = detail(&long);
        assert!(
            d.ends_with("END") && d.len() <= DETAIL_KEEP + 3,
            "{}",
            d.len()
        );
    }
}
