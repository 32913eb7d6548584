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

async fn read_discovery(link: &Link, path: &str) -> Result<Discovery, TunnelError> {
    let host = link.label().to_owned();
    let missing = |reason: String| TunnelError::DiscoveryMissing {
        host: host.clone(),
        path: path.to_owned(),
        reason,
    };
    let mut channel = link
        .target()
        .channel_open_session()
        .await
        .map_err(|e| missing(format!("cannot open an exec channel: {e}")))?;
    channel
        .exec(true, cat_command(path))
        .await
        .map_err(|e| missing(format!("exec refused: {e}")))?;

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status = None;
    let collect = async {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if stdout.len() + data.len() > MAX_FILE {
                        return Err("the file is too large to be a discovery file".to_owned());
                    }
                    stdout.extend_from_slice(&data);
                }
                // Enough of stderr to explain a failure; the rest is noise.
                ChannelMsg::ExtendedData { data, .. } if stderr.len() < 4096 => {
                    stderr.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
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
        Err(_) => return Err(missing(format!("no answer within {EXEC_TIMEOUT:?}"))),
        Ok(Err(reason)) => return Err(missing(reason)),
        Ok(Ok(())) => {}
    }
    let _ = channel.close().await;
    if status != Some(0) {
        let err = String::from_utf8_lossy(&stderr).trim().to_owned();
        return Err(missing(match (status, err.is_empty()) {
            (_, false) => err,
            (Some(code), true) => format!("exit status {code}"),
            (None, true) => "the command ended without an exit status".to_owned(),
        }));
    }
    Discovery::parse(&stdout).map_err(|e| TunnelError::DiscoveryInvalid {
        host,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `cat -- PATH` for a POSIX shell. The path is single-quoted so spaces and
/// shell characters are taken literally; a leading `~/` stays outside the
/// quotes so that the remote shell expands it to the remote home.
pub(crate) fn cat_command(path: &str) -> String {
    if path == "~" {
        return "cat -- ~".to_owned();
    }
    match path.strip_prefix("~/") {
        Some(rest) => format!("cat -- ~/{}", shell_quote(rest)),
        None => format!("cat -- {}", shell_quote(path)),
    }
}

fn shell_quote(s: &str) -> String {
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
