//! Starting a relay on the remote host when none runs there, over the SSH
//! link already built (no second connection, no `ssh` binary).
//!
//! Only with the user's yes (the [`Prompter`] asks), and only a `loopchat`
//! already on the remote PATH: nothing is ever copied or installed. When
//! there is none, the error names the command that installs one.
//!
//! The relay is started like the local shell starts its own: detached
//! (`setsid` where the host has it, and `nohup`), stdin from /dev/null,
//! output appended to `relay.log` in its home (umask 077), so that it
//! outlives the SSH session and the shell.

use std::time::{Duration, Instant};

use loopchat_proto::Discovery;

use super::discovery::{exec, locate_relay, shell_path};
use super::link::Link;
use super::{Prompter, TunnelError};
use loopchat_proto::home::{DISCOVERY_FILE, RELAY_LOG_FILE};

/// The relay's binary name on the remote PATH.
pub const REMOTE_BINARY: &str = "loopchat";
/// How to get one, in a clone of the loopchat source on the remote host.
pub use crate::start::INSTALL_COMMAND;
/// How long a relay started remotely may take to write its discovery file.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

/// "No relay runs on this host; start one?", as shown to the user.
#[derive(Debug, Clone)]
pub struct RelayStartQuestion {
    /// `user@host:port` of the SSH target.
    pub host: String,
    /// Why the relay was not found (missing or stale discovery file).
    pub reason: String,
    /// The command that will run there, verbatim.
    pub command: String,
}

/// Finds the relay behind `link`; when there is none and the prompter
/// offers to, starts one (after asking) and waits for it.
pub(crate) async fn locate_or_start(
    link: &Link,
    discovery_path: &str,
    prompter: &dyn Prompter,
) -> Result<Discovery, TunnelError> {
    let not_found = match locate_relay(link, discovery_path).await {
        Ok(relay) => return Ok(relay),
        Err(e @ (TunnelError::DiscoveryMissing { .. } | TunnelError::RelayStale { .. })) => e,
        Err(e) => return Err(e),
    };
    if !prompter.offers_relay_start() {
        return Err(not_found);
    }
    // The relay writes `relay.json` in its home, nowhere else: a custom
    // discovery path with another name cannot be served by a start here.
    let Some(home) = remote_home(discovery_path) else {
        return Err(not_found);
    };
    let host = link.label().to_owned();
    let bin = match find_binary(link).await {
        Ok(Some(bin)) => bin,
        Ok(None) => {
            return Err(TunnelError::NoRemoteBinary {
                host,
                reason: not_found.to_string(),
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for loopchat on the remote PATH");
            return Err(not_found);
        }
    };
    let command = start_command(&bin, home);
    let question = RelayStartQuestion {
        host: host.clone(),
        reason: not_found.to_string(),
        command: command.clone(),
    };
    if !prompter.offer_relay_start(question).await {
        tracing::info!(host = %host, "starting a remote relay declined");
        return Err(not_found);
    }
    tracing::info!(host = %host, bin = %bin, "starting the remote relay");
    let started = exec(link, &command, 4096)
        .await
        .map_err(|reason| TunnelError::RemoteStart {
            host: host.clone(),
            reason,
        })?;
    if started.status != Some(0) {
        return Err(TunnelError::RemoteStart {
            host,
            reason: started.failure(),
        });
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        tokio::time::sleep(POLL).await;
        match locate_relay(link, discovery_path).await {
            Ok(relay) => {
                tracing::info!(host = %host, remote_port = relay.port, pid = relay.pid, "remote relay started");
                return Ok(relay);
            }
            Err(TunnelError::DiscoveryMissing { .. } | TunnelError::RelayStale { .. })
                if Instant::now() < deadline => {}
            Err(e) => {
                let log = format!("{}/{RELAY_LOG_FILE}", home.trim_end_matches('/'));
                let tail = exec(
                    link,
                    &format!("tail -n 5 -- {}", shell_path(&log)),
                    16 * 1024,
                )
                .await
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
                return Err(TunnelError::RemoteStart {
                    host,
                    reason: format!(
                        "started `{bin} serve`, but no relay answered within {} s ({e}). \
                         Its log on the remote host, {log}:\n{tail}",
                        START_TIMEOUT.as_secs()
                    ),
                });
            }
        }
    }
}

/// The relay's home for a discovery path: its directory, when the file is
/// `relay.json`.
fn remote_home(discovery_path: &str) -> Option<&str> {
    let home = discovery_path.strip_suffix(DISCOVERY_FILE)?;
    let home = home.strip_suffix('/')?;
    (!home.is_empty()).then_some(home)
}

/// `command -v loopchat` in the remote user's shell: the absolute path of
/// the binary an SSH session would run, or `None`.
pub(crate) async fn find_binary(link: &Link) -> Result<Option<String>, String> {
    let out = exec(link, &format!("command -v {REMOTE_BINARY}"), 4096).await?;
    if out.status != Some(0) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text.trim();
    // An alias or a function is not something to start detached.
    Ok((path.starts_with('/') && !path.contains('\n')).then(|| path.to_owned()))
}

/// The detached start, for a POSIX shell. Every path is quoted; `~` stays
/// outside the quotes for the remote shell to expand.
fn start_command(bin: &str, home: &str) -> String {
    let bin = shell_path(bin);
    let log = shell_path(&format!("{home}/{RELAY_LOG_FILE}"));
    let home = shell_path(home);
    // Only the relay goes to the background, with every descriptor
    // redirected: anything else holding the channel's stdout would keep
    // the exec (and the SSH session) from ending.
    format!(
        "umask 077 && mkdir -p -- {home} && cd / && detach= && \
         if command -v setsid >/dev/null 2>&1; then detach=setsid; fi && \
         {{ $detach nohup {bin} serve --home {home} </dev/null >>{log} 2>&1 & }}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_of_discovery_paths() {
        assert_eq!(remote_home("~/.loopchat/relay.json"), Some("~/.loopchat"));
        assert_eq!(remote_home("/srv/lc/relay.json"), Some("/srv/lc"));
        assert_eq!(remote_home("/srv/lc/other.json"), None);
        assert_eq!(remote_home("/srv/lc/xrelay.json"), None);
        assert_eq!(remote_home("relay.json"), None);
        assert_eq!(remote_home("/relay.json"), None);
    }

    #[test]
    fn the_start_command_quotes_every_path() {
        let c = start_command("/opt/it's/loopchat", "~/.loopchat");
        assert!(
            c.contains(r"nohup '/opt/it'\''s/loopchat' serve --home ~/'.loopchat'"),
            "{c}"
        );
        assert!(c.ends_with(">>~/'.loopchat/relay.log' 2>&1 & }"), "{c}");
        assert!(
            c.starts_with("umask 077 && mkdir -p -- ~/'.loopchat'"),
            "{c}"
        );
        let c = start_command("/b/loopchat", "/h/$(rm -rf ~)");
        assert!(c.contains("--home '/h/$(rm -rf ~)'"), "{c}");
    }
}
