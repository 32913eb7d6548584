//! Finding a relay and asking it who it is.
//!
//! The local relay is found through its discovery file (`relay.json` in the
//! loopchat home); a remote one through the same file read over SSH (see
//! [`crate::tunnel`]). Either way the shell then calls `GET /webchat/info`
//! with the token, which proves the relay is alive, the token is right and
//! the session exists, before any page is shown.
//!
//! Nothing here knows about SSH or windows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use loopchat_proto::{Discovery, DiscoveryError, InfoResponse, home};

use crate::Step;

/// `$LOOPCHAT_HOME`, else `~/.loopchat`.
pub fn default_home() -> PathBuf {
    home::locate(None)
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The discovery file names no live relay (the reader and its errors
    /// are the relay's own, in `proto`).
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("could not reach the relay at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the relay at {url} refused /webchat/info: HTTP {status}: {body}")]
    InfoRefused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the relay at {url} answered /webchat/info with something unexpected: {reason}")]
    InfoInvalid { url: String, reason: String },
}

impl RelayError {
    /// Which step failed, for the error page.
    pub fn step(&self) -> Step {
        match self {
            RelayError::Discovery(_) => Step::Discovery,
            RelayError::Unreachable { .. }
            | RelayError::InfoRefused { .. }
            | RelayError::InfoInvalid { .. } => Step::RelayInfo,
        }
    }
}

/// Reads `home/relay.json` and checks that the relay it names is alive:
/// its pid exists and its port accepts a connection. Either failing means a
/// relay that died without cleaning up.
pub fn discover_local(home: &Path) -> Result<Discovery, RelayError> {
    Ok(Discovery::read_live(
        &home.join(home::DISCOVERY_FILE),
        Duration::from_secs(2),
    )?)
}

/// `GET {base_url}info[?session=K]` with the bearer token.
///
/// `base_url` ends with `/webchat/`. The token goes in a header, never in
/// the URL, so that nothing that logs URLs can leak it.
pub async fn fetch_info(
    base_url: &str,
    token: &str,
    session: Option<&str>,
) -> Result<InfoResponse, RelayError> {
    let mut url = format!("{}info?limit=1", ensure_slash(base_url));
    if let Some(session) = session {
        url.push_str("&session=");
        url.push_str(session);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        // Loopback or our own tunnel: a proxy from the environment would
        // only be in the way (and could see the token).
        .no_proxy()
        .build()
        .map_err(|e| RelayError::Unreachable {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
    let response = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| RelayError::Unreachable {
            url: base_url.to_owned(),
            reason: error_chain(&e),
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| RelayError::Unreachable {
            url: base_url.to_owned(),
            reason: error_chain(&e),
        })?;
    if !status.is_success() {
        let body = String::from_utf8_lossy(&body);
        return Err(RelayError::InfoRefused {
            url: base_url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    let info: InfoResponse =
        serde_json::from_slice(&body).map_err(|e| RelayError::InfoInvalid {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
    if !info.ok {
        return Err(RelayError::InfoInvalid {
            url: base_url.to_owned(),
            reason: "\"ok\" is false".into(),
        });
    }
    Ok(info)
}

/// The URL the window opens first. The token rides in the fragment, which
/// is never sent to a server; the page moves it into its own origin's
/// storage and takes it out of the address bar.
pub fn login_url(base_url: &str, token: &str, session: Option<&str>) -> String {
    let mut url = ensure_slash(base_url);
    if let Some(session) = session {
        url.push_str("?session=");
        url.push_str(session);
    }
    url.push_str("#token=");
    url.push_str(token);
    url
}

/// The welcome tour in the shell (`welcome.html`, desktop steps on), with
/// the token once in the fragment like [`login_url`]. It carries what the
/// page cannot know: the versions completion is recorded for and the test
/// alert's tag.
pub fn welcome_url(
    base_url: &str,
    token: &str,
    session: Option<&str>,
    relay_version: &str,
) -> String {
    let mut url = format!(
        "{}welcome.html?desktop=1&v={}&relay={}&testTag={}",
        ensure_slash(base_url),
        loopchat_proto::WELCOME_VERSION,
        query_value(relay_version),
        query_value(loopchat_proto::TEST_ALERT_TAG),
    );
    if let Some(session) = session {
        url.push_str("&session=");
        url.push_str(session);
    }
    url.push_str("#token=");
    url.push_str(token);
    url
}

/// Percent-encodes all but unreserved characters (a version is the
/// relay's word; it must stay one query value).
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of a session page once logged in (no token).
pub fn session_url(base_url: &str, session: &str) -> String {
    format!("{}?session={}", ensure_slash(base_url), session)
}

fn ensure_slash(base_url: &str) -> String {
    if base_url.ends_with('/') {
        base_url.to_owned()
    } else {
        format!("{base_url}/")
    }
}

pub use loopchat_proto::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    fn write_discovery(dir: &Path, pid: u32, port: u16) {
        let d = Discovery {
            version: 1,
            pid,
            port,
            base_url: format!("http://127.0.0.1:{port}/webchat/"),
            token: "secret".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            store: "x".into(),
        };
        std::fs::write(
            dir.join(home::DISCOVERY_FILE),
            serde_json::to_vec(&d).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn missing_file_says_how_to_start_a_relay() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover_local(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            RelayError::Discovery(DiscoveryError::Missing { .. })
        ));
        assert!(err.to_string().contains("loopchat serve"), "{err}");
        assert_eq!(err.step(), Step::Discovery);
    }

    #[test]
    fn dead_pid_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is far below this on Linux.
        write_discovery(dir.path(), 999_999_999, 1);
        let err = discover_local(dir.path()).unwrap_err();
        assert!(
            matches!(err, RelayError::Discovery(DiscoveryError::Stale { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("loopchat serve"));
    }

    #[test]
    fn refusing_port_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        write_discovery(dir.path(), std::process::id(), port);
        let err = discover_local(dir.path()).unwrap_err();
        assert!(err.to_string().contains("refuses"), "{err}");
    }

    #[test]
    fn live_relay_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        write_discovery(dir.path(), std::process::id(), port);
        let d = discover_local(dir.path()).unwrap();
        assert_eq!(d.port, port);
    }

    #[test]
    fn urls() {
        assert_eq!(
            login_url("http://127.0.0.1:1/webchat/", "t", Some("k")),
            "http://127.0.0.1:1/webchat/?session=k#token=t"
        );
        assert_eq!(
            login_url("http://127.0.0.1:1/webchat", "t", None),
            "http://127.0.0.1:1/webchat/#token=t"
        );
        assert_eq!(
            session_url("http://127.0.0.1:1/webchat/", "k"),
            "http://127.0.0.1:1/webchat/?session=k"
        );
    }
}
