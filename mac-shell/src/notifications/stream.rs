//! The relay side: `GET /webchat/notifications` (catching up) and the
//! `/webchat/socket` WebSocket (live), with the bearer token in a header —
//! never in a URL.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use loopchat_proto::{Event, EventBody, Notification, NotificationsResponse};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::relay::error_chain;

/// Where the relay is right now.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:PORT/webchat/` (the tunnel's local URL in remote
    /// mode).
    pub base_url: String,
    pub token: String,
}

impl std::fmt::Debug for Endpoint {
    // The token stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The kept notifications after `since` (oldest first), at most `limit`;
/// without `since`, the newest `limit`.
pub async fn list(
    client: &reqwest::Client,
    ep: &Endpoint,
    since: Option<u64>,
    limit: usize,
) -> Result<Vec<Notification>, String> {
    let mut url = format!("{}notifications?limit={limit}", slash(&ep.base_url));
    if let Some(since) = since {
        url.push_str(&format!("&since={since}"));
    }
    let response = client
        .get(&url)
        .bearer_auth(&ep.token)
        .send()
        .await
        .map_err(|e| {
            format!(
                "GET {}notifications: {}",
                slash(&ep.base_url),
                error_chain(&e)
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "GET {}notifications: HTTP {}: {}",
            slash(&ep.base_url),
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        ));
    }
    let body: NotificationsResponse = response.json().await.map_err(|e| {
        format!(
            "GET {}notifications: {}",
            slash(&ep.base_url),
            error_chain(&e)
        )
    })?;
    Ok(body.notifications)
}

/// An alert's image (`GET notifications/<id>/image`), written to
/// `dir/<image id>` (0600) for the popup's `image-path` hint. Files there
/// older than a day are removed first, so the directory does not grow.
pub async fn fetch_image(
    client: &reqwest::Client,
    ep: &Endpoint,
    n: &Notification,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, String> {
    let image = n.image.as_deref().ok_or("no image")?;
    // The relay names images `<sha256 hex>.<ext>`; nothing else becomes a path.
    if !image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        || image.starts_with('.')
    {
        return Err(format!("odd image id {image:?}"));
    }
    let url = format!("{}notifications/{}/image", slash(&ep.base_url), n.id);
    let response = client
        .get(&url)
        .bearer_auth(&ep.token)
        .send()
        .await
        .map_err(|e| format!("GET …/image: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET …/image: HTTP {}", response.status().as_u16()));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("GET …/image: {}", error_chain(&e)))?;
    let dir = dir.to_owned();
    let path = dir.join(image);
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let day = Duration::from_secs(24 * 3600);
        for e in std::fs::read_dir(&dir)?.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&target)?;
        std::io::Write::write_all(&mut f, &bytes)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot keep the alert image: {e}"))?;
    Ok(path)
}

/// The HTTP client for the relay: loopback or our own tunnel, so no proxy
/// from the environment (it could see the token).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// What the socket delivered.
#[derive(Debug)]
pub enum Incoming {
    Notification(Box<Notification>),
    /// Nothing within the time asked for (pings were answered meanwhile).
    Quiet,
    /// The relay closed the stream (it is shutting down).
    Closed,
}

/// `/webchat/socket?notifySince=N` without a session: notifications only.
pub struct AlertSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AlertSocket {
    /// Opens the stream; the relay first replays the kept notifications
    /// with seq > `notify_since`, then goes live.
    pub async fn open(ep: &Endpoint, notify_since: u64) -> Result<Self, String> {
        let base = slash(&ep.base_url);
        let ws_base = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            return Err(format!("not an http URL: {base}"));
        };
        let url = format!("{ws_base}socket?notifySince={notify_since}");
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{url}: {e}"))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", ep.token))
            .map_err(|_| "the relay token is not a valid header value".to_owned())?;
        request.headers_mut().insert(header::AUTHORIZATION, auth);
        // Counted as the shell's in the relay's `/webchat/status`.
        request.headers_mut().insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("loopchat-shell/", env!("CARGO_PKG_VERSION"))),
        );
        let connect = tokio_tungstenite::connect_async(request);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(15), connect)
            .await
            .map_err(|_| format!("{ws_base}socket: no answer within 15 s"))?
            .map_err(|e| format!("{ws_base}socket: {}", error_chain(&e)))?;
        Ok(Self { ws })
    }

    /// The next notification, answering the relay's pings on the way.
    /// `Quiet` after `wait` without one; an error when the connection
    /// broke, or when nothing at all (not even a ping) came for `idle`.
    pub async fn next(&mut self, wait: Duration, idle: Duration) -> Result<Incoming, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Incoming::Quiet);
            }
            let limit = (deadline - now).min(idle);
            let message = match tokio::time::timeout(limit, self.ws.next()).await {
                Err(_) if limit < idle => return Ok(Incoming::Quiet),
                Err(_) => {
                    return Err(format!(
                        "nothing from the relay for {} s (not even a ping)",
                        idle.as_secs()
                    ));
                }
                Ok(None) => return Ok(Incoming::Closed),
                Ok(Some(Err(e))) => return Err(error_chain(&e)),
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(text) => match parse(text.as_str()) {
                    Parsed::Ping => {
                        self.ws
                            .send(Message::Text(r#"{"type":"pong"}"#.into()))
                            .await
                            .map_err(|e| format!("answering a ping: {}", error_chain(&e)))?;
                        tracing::trace!("answered the relay's ping");
                    }
                    Parsed::Notification(n) => return Ok(Incoming::Notification(n)),
                    Parsed::Other => {}
                },
                Message::Close(_) => return Ok(Incoming::Closed),
                // Protocol-level pings are answered by tungstenite itself.
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

#[derive(Debug)]
enum Parsed {
    Ping,
    Notification(Box<Notification>),
    Other,
}

fn parse(text: &str) -> Parsed {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    match serde_json::from_str::<Typed>(text).map(|t| t.kind) {
        Ok("ping") => Parsed::Ping,
        Ok("notification") => match serde_json::from_str::<Event>(text) {
            Ok(Event {
                body: EventBody::Notification { notification },
                ..
            }) => Parsed::Notification(Box::new(notification)),
            Ok(_) => Parsed::Other,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a notification event that does not parse");
                Parsed::Other
            }
        },
        _ => Parsed::Other,
    }
}

fn slash(base_url: &str) -> String {
    if base_url.ends_with('/') {
        base_url.to_owned()
    } else {
        format!("{base_url}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_relays_messages() {
        assert!(matches!(parse(r#"{"type":"ping"}"#), Parsed::Ping));
        let text = r#"{"type":"notification","seq":4,"notification":{"id":"n1","seq":4,"title":"T","body":"B","priority":4,"tags":["x"],"click":null,"session":"main","timestamp":"2025-01-01T00:00:00Z"}}"#;
        let Parsed::Notification(n) = parse(text) else {
            panic!("not a notification")
        };
        assert_eq!(
            (n.id.as_str(), n.seq, n.priority, n.session.as_deref()),
            ("n1", 4, 4, Some("main"))
        );
        assert!(matches!(
            parse(r#"{"type":"delta","seq":1,"runId":"r","text":"x"}"#),
            Parsed::Other
        ));
        assert!(matches!(parse("not json"), Parsed::Other));
    }

    #[test]
    fn endpoint_debug_hides_the_token() {
        let ep = Endpoint {
            base_url: "http://127.0.0.1:1/webchat/".into(),
            token: "sekrit".into(),
        };
        assert!(!format!("{ep:?}").contains("sekrit"));
    }
}
