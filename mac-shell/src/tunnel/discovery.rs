//! Finding the remote relay: its discovery file, read over an exec channel
//! of the SSH link.
//!
//! Port and token travel inside the SSH channel only; the user configures
//! no port. The file is the same one the relay writes for local clients.

use std::time::Duration;

use loopchat_proto::Discovery;
use russh::ChannelMsg;

use super::TunnelError;
use super::link::Link;

/// Where the relay's discovery file is by default; `~` is expanded by the
/// remote shell, so it is the remote user's home.
pub use loopchat_proto::home::DEFAULT_REMOTE_DISCOVERY;

/// A discovery file is a few hundred bytes; anything much larger is not one.
const MAX_FILE: usize = 64 * 1024;
const EXEC_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads and parses the discovery file, then checks that the relay's port
/// accepts a connection on the remote side (a relay that died without
/// cleaning up leaves a stale file behind).
pub(crate) async fn locate_relay(link: &Link, path: &str) -> Result<Discovery, TunnelError> {
    let host = link.label().to_owned();
    let discovery = read_discovery(link, path).await?;
    match link
        .target()
        .channel_open_direct_tcpip("127.0.0.1", u32::from(discovery.port), "127.0.0.1", 0)
        .await
    {
        Ok(channel) => {
            let _ = channel.close().await;
            Ok(discovery)
        }
        Err(e) => Err(TunnelError::RelayStale {
            host,
            path: path.to_owned(),
            port: discovery.port,
            reason: e.to_string(),
        }),
    }
}

/// What a command run over an exec channel printed, and how it ended.
pub(crate) struct ExecOutput {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Why it failed, from its stderr or its exit status.
    pub fn failure(&self) -> String {
        let err = String::from_utf8_lossy(&self.stderr).trim().to_owned();
        match (self.status, err.is_empty()) {
            (_, false) => err,
            (Some(code), true) => format!("exit status {code}"),
            (None, true) => "the command ended without an exit status".to_owned(),
        }
    }
}

/// Runs `command` through the remote user's shell on an exec channel of
/// the link; stdout beyond `max_stdout` bytes is an error, stderr is kept
/// up to 4 KiB (enough to explain a failure).
pub(crate) async fn exec(
    link: &Link,
    command: &str,
    max_stdout: usize,
) -> Result<ExecOutput, String> {
    let mut channel = link
        .target()
        .channel_open_session()
        .await
        .map_err(|e| format!("cannot open an exec channel: {e}"))?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| format!("exec refused: {e}"))?;

    let mut out = ExecOutput {
        status: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let collect = async {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if out.stdout.len() + data.len() > max_stdout {
                        return Err("the command printed more than expected".to_owned());
                    }
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, .. } if out.stderr.len() < 4096 => {
                    out.stderr.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err("the server refused to run the command".to_owned());
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(())
    };
    match tokio::time::timeout(EXEC_TIMEOUT, collect).await {
        Err(_) => return Err(format!("no answer within {EXEC_TIMEOUT:?}")),
        Ok(Err(reason)) => return Err(reason),
        Ok(Ok(())) => {}
    }
    let _ = channel.close().await;
    Ok(out)
}

async fn read_discovery(link: &Link, path: &str) -> Result<Discovery, TunnelError> {
    let host = link.label().to_owned();
    let missing = |reason: String| TunnelError::DiscoveryMissing {
        host: host.clone(),
        path: path.to_owned(),
        reason,
    };
    let out = exec(link, &cat_command(path), MAX_FILE)
        .await
        .map_err(|reason| {
            missing(if reason.contains("more than expected") {
                "the file is too large to be a discovery file".to_owned()
            } else {
                reason
            })
        })?;
    if out.status != Some(0) {
        return Err(missing(out.failure()));
    }
    Discovery::parse(&out.stdout).map_err(|e| TunnelError::DiscoveryInvalid {
        host,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `cat -- PATH` for a POSIX shell. The path is single-quoted so spaces and
/// shell characters are taken literally; a leading `~/` stays outside the
/// quotes so that the remote shell expands it to the remote home.
pub(crate) fn cat_command(path: &str) -> String {
    format!("cat -- {}", shell_path(path))
}

/// A path as a POSIX shell word: single-quoted, except a leading `~` or
/// `~/`, which stays outside the quotes for the shell to expand.
pub(crate) fn shell_path(path: &str) -> String {
    if path == "~" {
        return "~".to_owned();
    }
    match path.strip_prefix("~/") {
        Some(rest) => format!("~/{}", shell_quote(rest)),
        None => shell_quote(path),
    }
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            cat_command("~/.loopchat/relay.json"),
            "cat -- ~/'.loopchat/relay.json'"
        );
        assert_eq!(
            cat_command("/tmp/a b/relay.json"),
            "cat -- '/tmp/a b/relay.json'"
        );
        assert_eq!(
            cat_command("/x/it's;rm -rf ~"),
            r"cat -- '/x/it'\''s;rm -rf ~'"
        );
        assert_eq!(cat_command("$HOME/x"), "cat -- '$HOME/x'");
        assert_eq!(cat_command("~"), "cat -- ~");
    }
}
