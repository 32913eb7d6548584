//! The SSH tunnel to a remote relay, in process (russh), usable without any
//! window: `loopchat-shell tunnel` is this module plus a JSON line.
//!
//! Pieces, in the order a connection goes through them:
//! [`target`] (destination + ssh config → hops), [`link`] (TCP/ProxyJump,
//! host key via [`known_hosts`], login via [`auth`]), [`discovery`] (the
//! remote `relay.json` over an exec channel), [`forward`] (the local
//! listener and its `direct-tcpip` channels) and [`supervisor`] (keepalives,
//! reconnect with backoff, rediscovery).
//!
//! Nothing here knows about windows: questions for the user (an unknown
//! host key, a passphrase) go through the [`Prompter`] trait.

mod auth;
mod discovery;
mod error;
mod forward;
mod known_hosts;
mod link;
mod remote_start;
mod supervisor;
mod target;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use loopchat_proto::Discovery;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use auth::PASSPHRASE_ENV;
pub use discovery::DEFAULT_REMOTE_DISCOVERY;
pub use error::{ChangedHostKey, TunnelError};
pub use remote_start::{INSTALL_COMMAND, RelayStartQuestion};
pub use target::Destination;

use crate::Step;
use supervisor::{ActiveLink, LinkState, Supervisor};

/// What to do with a host that is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse (headless default: nobody is there to check a fingerprint).
    Strict,
    /// Trust it and record it (`--accept-new`).
    AcceptNew,
    /// Ask the [`Prompter`] (the window shows the fingerprint).
    Ask,
}

/// An unknown host key, as shown to the user.
#[derive(Debug, Clone)]
pub struct HostKeyQuestion {
    /// `host` or `[host]:port`, as known_hosts names it.
    pub host: String,
    pub key_type: String,
    /// `SHA256:…`
    pub fingerprint: String,
    pub known_hosts: PathBuf,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Questions the tunnel may need to ask a person. The window answers with
/// a page; the headless `tunnel` command with the terminal.
pub trait Prompter: Send + Sync + 'static {
    /// Trust this unknown host key? Only asked under [`HostKeyPolicy::Ask`].
    fn confirm_host_key(&self, question: HostKeyQuestion) -> BoxFuture<bool>;
    /// The passphrase of an encrypted identity file, or `None` to skip it.
    fn passphrase(&self, key: PathBuf) -> BoxFuture<Option<String>>;
    /// Whether [`Prompter::offer_relay_start`] may be asked at all. When
    /// false, a host without a relay is an error, without looking further.
    fn offers_relay_start(&self) -> bool {
        false
    }
    /// No relay runs on the host: start one there (the command shown)?
    fn offer_relay_start(&self, _question: RelayStartQuestion) -> BoxFuture<bool> {
        Box::pin(async { false })
    }
}

/// Headless prompter: passphrases are read from the terminal (when there is
/// one); unknown hosts are never confirmed here (use `--accept-new`).
pub struct TerminalPrompter;

impl Prompter for TerminalPrompter {
    fn confirm_host_key(&self, _question: HostKeyQuestion) -> BoxFuture<bool> {
        Box::pin(async { false })
    }

    fn passphrase(&self, key: PathBuf) -> BoxFuture<Option<String>> {
        Box::pin(async move {
            let prompt = format!("Enter passphrase for {}: ", key.display());
            // rpassword reads /dev/tty with echo off; without a terminal
            // (CI, a service) it fails and the key is skipped.
            tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt).ok())
                .await
                .ok()
                .flatten()
        })
    }
}

/// Everything that says which remote relay to reach and how.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    /// `[user@]host[:port]`; `host` may be an alias of the ssh config.
    pub destination: String,
    /// `--ssh-config`; default `~/.ssh/config` (if present).
    pub ssh_config: Option<PathBuf>,
    /// `--identity`, tried before the config's and the default ones.
    pub identities: Vec<PathBuf>,
    /// `--known-hosts`; default `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Path of the remote discovery file; `~` is the remote home.
    pub remote_discovery: String,
    pub host_key_policy: HostKeyPolicy,
    /// The local port to listen on if it is free (the one remembered for
    /// this host); another one is taken when it is not, or when `None`.
    pub local_port: Option<u16>,
}

/// What the tunnel is doing, for logs and the window.
#[derive(Debug, Clone)]
pub enum TunnelStatus {
    Up { remote_port: u16 },
    Reconnecting { attempt: u32, error: Option<String> },
    Failed { step: Step, error: String },
    Closed,
}

/// A running tunnel. The local listener stays bound for as long as this
/// value lives, whatever happens to the SSH link; dropping it stops the
/// tunnel (and never touches the remote relay).
pub struct Tunnel {
    local_addr: SocketAddr,
    target: String,
    state: watch::Receiver<LinkState>,
    shutdown: watch::Sender<bool>,
}

impl Tunnel {
    /// Connects, logs in, finds the remote relay, binds the local listener
    /// and starts supervising. The first connection is not retried: its
    /// error says what to fix. Later drops are retried by the supervisor.
    pub async fn open(spec: TunnelSpec, prompter: Arc<dyn Prompter>) -> Result<Self, TunnelError> {
        let destination = Destination::parse(&spec.destination)?;
        let config = target::load_config(spec.ssh_config.as_deref())?;
        let route = target::resolve(&destination, &config, &spec.identities)?;
        let known_hosts = known_hosts::KnownHosts::new(
            spec.known_hosts
                .clone()
                .unwrap_or_else(known_hosts::KnownHosts::default_path),
        );
        let target = route.target().label();
        tracing::info!(
            target = %target,
            hops = route.hops.len(),
            discovery = %spec.remote_discovery,
            "opening tunnel"
        );
        let connector = link::Connector {
            route,
            known_hosts,
            policy: spec.host_key_policy,
            prompter: prompter.clone(),
            auth: auth::Authenticator::new(prompter.clone()),
        };

        // Bound before connecting so the port is ours whatever happens next.
        let listener = bind_local(spec.local_port).await?;
        let local_addr = listener.local_addr().map_err(TunnelError::Listen)?;

        // The first time only, a host without a relay may get one started
        // (if the user says so); reconnects just look for it again.
        let (link, closed) = connector.connect().await?;
        let relay =
            match remote_start::locate_or_start(&link, &spec.remote_discovery, prompter.as_ref())
                .await
            {
                Ok(relay) => relay,
                Err(e) => {
                    link.close().await;
                    return Err(e);
                }
            };
        let link = Arc::new(link);
        tracing::info!(
            target = %target,
            local = %local_addr,
            remote_port = relay.port,
            "tunnel up: 127.0.0.1:{} -> {}:127.0.0.1:{}",
            local_addr.port(),
            target,
            relay.port
        );
        let active = Arc::new(ActiveLink {
            link,
            relay,
            generation: 0,
        });
        let (state_tx, state_rx) = watch::channel(LinkState::Up(active.clone()));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (rediscover_tx, rediscover_rx) = mpsc::channel(16);
        tokio::spawn(forward::serve(
            listener,
            state_rx.clone(),
            rediscover_tx,
            shutdown_rx.clone(),
        ));
        let supervisor = Supervisor {
            connector,
            discovery_path: spec.remote_discovery,
            state: state_tx,
            rediscover: rediscover_rx,
            shutdown: shutdown_rx,
        };
        tokio::spawn(supervisor.run(active, closed));
        Ok(Self {
            local_addr,
            target,
            state: state_rx,
            shutdown: shutdown_tx,
        })
    }

    /// `127.0.0.1:PORT` of the local listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:PORT/webchat/` (the relay's base path, served
    /// through the tunnel).
    pub fn local_url(&self) -> String {
        let path = self
            .relay()
            .and_then(|d| base_path(&d.base_url))
            .unwrap_or_else(|| "/webchat/".to_owned());
        format!("http://127.0.0.1:{}{}", self.local_addr.port(), path)
    }

    /// `user@host:port` of the SSH target.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The remote relay as last discovered (None while the link is down).
    pub fn relay(&self) -> Option<Discovery> {
        match &*self.state.borrow() {
            LinkState::Up(active) => Some(active.relay.clone()),
            _ => None,
        }
    }

    pub fn status(&self) -> TunnelStatus {
        status_of(&self.state.borrow())
    }

    /// A cloneable view of where the relay is, for code that must follow
    /// the tunnel without owning it (desktop notifications). It does not
    /// keep the tunnel up: once the tunnel is dropped it reports no relay.
    pub fn view(&self) -> TunnelView {
        TunnelView {
            local_addr: self.local_addr,
            target: self.target.clone(),
            state: self.state.clone(),
        }
    }

    /// A receiver of status changes (for the window and the CLI).
    pub fn watch(&self) -> TunnelWatch {
        TunnelWatch {
            state: self.state.clone(),
        }
    }

    /// Stops the tunnel: closes the SSH link politely and the listener.
    pub async fn close(self) {
        let _ = self.shutdown.send(true);
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while !matches!(
                &*state.borrow_and_update(),
                LinkState::Closed | LinkState::Failed(_)
            ) {
                if state.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// See [`Tunnel::view`].
#[derive(Clone)]
pub struct TunnelView {
    local_addr: SocketAddr,
    target: String,
    state: watch::Receiver<LinkState>,
}

impl TunnelView {
    /// The remote relay as last discovered (None while the link is down or
    /// once the tunnel is gone).
    pub fn relay(&self) -> Option<Discovery> {
        match &*self.state.borrow() {
            LinkState::Up(active) => Some(active.relay.clone()),
            _ => None,
        }
    }

    /// Where `loopchat` is on the remote host's PATH (`command -v`, in the
    /// remote user's shell, over the tunnel's SSH link): `Ok(None)` when it
    /// is not there, `Err` when the host could not be asked (link down).
    pub async fn remote_cli(&self) -> Result<Option<String>, String> {
        let active = match &*self.state.borrow() {
            LinkState::Up(active) => active.clone(),
            _ => return Err("the SSH link is down".to_owned()),
        };
        remote_start::find_binary(&active.link).await
    }

    /// Same as [`Tunnel::local_url`].
    pub fn local_url(&self) -> String {
        let path = self
            .relay()
            .and_then(|d| base_path(&d.base_url))
            .unwrap_or_else(|| "/webchat/".to_owned());
        format!("http://127.0.0.1:{}{}", self.local_addr.port(), path)
    }

    /// `user@host:port` of the SSH target.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Follows a tunnel's status.
pub struct TunnelWatch {
    state: watch::Receiver<LinkState>,
}

impl TunnelWatch {
    /// Waits for the next change; `None` once the tunnel is gone.
    pub async fn next(&mut self) -> Option<TunnelStatus> {
        self.state.changed().await.ok()?;
        Some(status_of(&self.state.borrow_and_update()))
    }
}

fn status_of(state: &LinkState) -> TunnelStatus {
    match state {
        LinkState::Up(a) => TunnelStatus::Up {
            remote_port: a.relay.port,
        },
        LinkState::Down { attempt, error } => TunnelStatus::Reconnecting {
            attempt: *attempt,
            error: error.as_deref().map(str::to_owned),
        },
        LinkState::Failed(e) => TunnelStatus::Failed {
            step: e.step(),
            error: e.to_string(),
        },
        LinkState::Closed => TunnelStatus::Closed,
    }
}

/// The loopback listener: on `preferred` when it is free, so the page's
/// origin (and the credential and drafts its storage holds) survives a
/// restart; else on an ephemeral port, which never fights a local relay or
/// another shell's tunnel for theirs.
async fn bind_local(preferred: Option<u16>) -> Result<TcpListener, TunnelError> {
    if let Some(port) = preferred.filter(|p| *p != 0) {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => tracing::warn!(
                port,
                error = %e,
                "the remembered tunnel port is taken; using another one (the page's origin changes)"
            ),
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(TunnelError::Listen)
}

/// The path part of `http://host:port/path/`.
fn base_path(base_url: &str) -> Option<String> {
    let rest = base_url.split_once("://")?.1;
    let path = &rest[rest.find('/')?..];
    Some(if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(
            base_path("http://127.0.0.1:1/webchat/").as_deref(),
            Some("/webchat/")
        );
        assert_eq!(
            base_path("http://127.0.0.1:1/webchat").as_deref(),
            Some("/webchat/")
        );
        assert_eq!(base_path("http://127.0.0.1:1"), None);
    }
}
