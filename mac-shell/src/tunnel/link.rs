//! One SSH link: TCP to the first hop, an SSH session per hop (each next
//! hop carried in a `direct-tcpip` channel of the previous one, which is
//! what ProxyJump means), host keys checked against known_hosts, and the
//! user logged in at every hop.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::auth::Authenticator;
use super::error::ChangedHostKey;
use super::known_hosts::{self, KnownHosts, Verdict};
use super::target::{Hop, Route};
use super::{HostKeyPolicy, HostKeyQuestion, Prompter, TunnelError};

/// Keepalive period: with [`KEEPALIVE_MAX`] unanswered, a dead link (network
/// gone, laptop slept, server vanished) is noticed within 45 s even when no
/// data flows.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const KEEPALIVE_MAX: usize = 3;

/// Why a handshake stopped: a transport problem, or our own refusal of the
/// host key (which carries the details for the user).
#[derive(Debug)]
pub(crate) enum LinkFailure {
    Ssh(russh::Error),
    Refused(Box<TunnelError>),
}

impl From<russh::Error> for LinkFailure {
    fn from(e: russh::Error) -> Self {
        LinkFailure::Ssh(e)
    }
}

/// russh's per-session callbacks: host key verification, and a sender that
/// is dropped when the session ends so the supervisor hears of it.
pub(crate) struct LinkHandler {
    host: String,
    port: u16,
    known_hosts: KnownHosts,
    policy: HostKeyPolicy,
    prompter: Arc<dyn Prompter>,
    _alive: oneshot::Sender<()>,
}

impl client::Handler for LinkHandler {
    type Error = LinkFailure;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = server_public_key.public_key();
        let label = known_hosts::host_label(&self.host, self.port);
        let offered = known_hosts::fingerprint(&key);
        let refuse = |e: TunnelError| Err(LinkFailure::Refused(Box::new(e)));
        let verdict = match self.known_hosts.check(&self.host, self.port, &key) {
            Ok(v) => v,
            Err(e) => {
                return refuse(TunnelError::KnownHosts {
                    path: self.known_hosts.path().to_path_buf(),
                    reason: format!("cannot read it: {e}"),
                });
            }
        };
        match verdict {
            Verdict::Known => {
                tracing::debug!(host = %label, fingerprint = %offered, "host key matches known_hosts");
                Ok(true)
            }
            Verdict::Changed(entry) => {
                refuse(TunnelError::HostKeyChanged(Box::new(ChangedHostKey {
                    host: label,
                    expected: entry.fingerprint,
                    offered,
                    known_hosts: self.known_hosts.path().to_path_buf(),
                    line: entry.line,
                    line_text: entry.text,
                })))
            }
            Verdict::Revoked(entry) => refuse(TunnelError::KnownHosts {
                path: self.known_hosts.path().to_path_buf(),
                reason: format!(
                    "the key offered by {label} ({offered}) is marked @revoked at line {}",
                    entry.line
                ),
            }),
            Verdict::Unknown => {
                let accept = match self.policy {
                    HostKeyPolicy::Strict => false,
                    HostKeyPolicy::AcceptNew => true,
                    HostKeyPolicy::Ask => {
                        self.prompter
                            .confirm_host_key(HostKeyQuestion {
                                host: label.clone(),
                                key_type: key.algorithm().to_string(),
                                fingerprint: offered.clone(),
                                known_hosts: self.known_hosts.path().to_path_buf(),
                            })
                            .await
                    }
                };
                if !accept {
                    return refuse(match self.policy {
                        HostKeyPolicy::Ask => TunnelError::HostKeyRejected {
                            host: label,
                            fingerprint: offered,
                        },
                        _ => TunnelError::HostKeyUnknown {
                            host: label,
                            key_type: key.algorithm().to_string(),
                            short_type: short_key_type(&key.algorithm()),
                            fingerprint: offered,
                            known_hosts: self.known_hosts.path().to_path_buf(),
                        },
                    });
                }
                if let Err(e) = self.known_hosts.append(&self.host, self.port, &key) {
                    // Trusted for this connection anyway: the user (or
                    // --accept-new) said so; only the memory of it is lost.
                    tracing::warn!(path = %self.known_hosts.path().display(), error = %e, "could not record the host key");
                } else {
                    tracing::info!(host = %label, fingerprint = %offered, path = %self.known_hosts.path().display(), "new host key recorded in known_hosts");
                }
                Ok(true)
            }
        }
    }
}

fn short_key_type(alg: &Algorithm) -> String {
    match alg {
        Algorithm::Ed25519 => "ed25519".into(),
        Algorithm::Ecdsa { .. } => "ecdsa".into(),
        Algorithm::Rsa { .. } => "rsa".into(),
        other => other.to_string(),
    }
}

/// A live SSH link: the sessions of every hop, target last. Dropping it
/// closes them all.
pub(crate) struct Link {
    sessions: Vec<Handle<LinkHandler>>,
    label: String,
}

impl Link {
    /// The session on the target host, where channels are opened.
    pub fn target(&self) -> &Handle<LinkHandler> {
        // `connect` never builds a Link without sessions.
        &self.sessions[self.sessions.len() - 1]
    }

    /// `user@host:port` of the target.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Says goodbye politely (a killed tunnel is fine too: the server just
    /// sees the connection drop).
    pub async fn close(&self) {
        for session in self.sessions.iter().rev() {
            let _ = session
                .disconnect(russh::Disconnect::ByApplication, "bye", "en")
                .await;
        }
    }
}

/// Everything needed to (re)build a link; kept by the supervisor.
pub(crate) struct Connector {
    pub route: Route,
    pub known_hosts: KnownHosts,
    pub policy: HostKeyPolicy,
    pub prompter: Arc<dyn Prompter>,
    pub auth: Authenticator,
}

impl Connector {
    /// Connects and logs in through every hop. The receiver completes (with
    /// an error) when the target session ends, for whatever reason.
    pub async fn connect(&self) -> Result<(Link, oneshot::Receiver<()>), TunnelError> {
        let mut sessions: Vec<Handle<LinkHandler>> = Vec::new();
        let mut closed = None;
        for hop in &self.route.hops {
            let (session, alive) = match sessions.last() {
                None => {
                    let stream = tokio::time::timeout(
                        hop.connect_timeout,
                        TcpStream::connect((hop.host_name.as_str(), hop.port)),
                    )
                    .await
                    .map_err(|_| TunnelError::Connect {
                        target: hop.endpoint(),
                        via: None,
                        reason: format!("timed out after {:?}", hop.connect_timeout),
                    })?
                    .map_err(|e| TunnelError::Connect {
                        target: hop.endpoint(),
                        via: None,
                        reason: e.to_string(),
                    })?;
                    // Interactive traffic (a chat, small requests): no Nagle.
                    let _ = stream.set_nodelay(true);
                    self.handshake(stream, hop).await?
                }
                Some(previous) => {
                    let via = self.route.hops.get(sessions.len() - 1).map(Hop::label);
                    let channel = previous
                        .channel_open_direct_tcpip(
                            hop.host_name.clone(),
                            u32::from(hop.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| TunnelError::Connect {
                            target: hop.endpoint(),
                            via: via.clone(),
                            reason: e.to_string(),
                        })?;
                    self.handshake(channel.into_stream(), hop).await?
                }
            };
            tracing::info!(hop = %hop.label(), "SSH session established");
            sessions.push(session);
            closed = Some(alive);
        }
        let Some(closed) = closed else {
            return Err(TunnelError::Destination {
                destination: String::new(),
                reason: "no host to connect to".into(),
            });
        };
        Ok((
            Link {
                sessions,
                label: self.route.target().label(),
            },
            closed,
        ))
    }

    async fn handshake<S>(
        &self,
        stream: S,
        hop: &Hop,
    ) -> Result<(Handle<LinkHandler>, oneshot::Receiver<()>), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (alive_tx, alive_rx) = oneshot::channel();
        let handler = LinkHandler {
            host: hop.host_name.clone(),
            port: hop.port,
            known_hosts: self.known_hosts.clone(),
            policy: self.policy,
            prompter: self.prompter.clone(),
            _alive: alive_tx,
        };
        let config = self.ssh_config(hop);
        let mut session = client::connect_stream(config, stream, handler)
            .await
            .map_err(|e| match e {
                LinkFailure::Refused(e) => *e,
                LinkFailure::Ssh(e) => TunnelError::Handshake {
                    target: hop.endpoint(),
                    reason: e.to_string(),
                },
            })?;
        self.auth.authenticate(&mut session, hop).await?;
        Ok((session, alive_rx))
    }

    fn ssh_config(&self, hop: &Hop) -> Arc<client::Config> {
        let defaults = russh::Preferred::default();
        // Ask first for the kinds of host key we already know for this host,
        // so a server with several keys shows one we can check (ssh does the
        // same) instead of one that would look "changed".
        let known = self.known_hosts.known_algorithms(&hop.host_name, hop.port);
        let mut keys: Vec<Algorithm> = defaults
            .key
            .iter()
            .filter(|a| known.iter().any(|k| same_kind(k, a)))
            .cloned()
            .collect();
        keys.extend(
            defaults
                .key
                .iter()
                .filter(|a| !known.iter().any(|k| same_kind(k, a)))
                .cloned(),
        );
        Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            preferred: russh::Preferred {
                key: Cow::Owned(keys),
                ..defaults
            },
            ..Default::default()
        })
    }
}

/// RSA keys are one kind whatever hash signs them.
fn same_kind(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}
