//! Where the relay whose alerts are followed is: found again before every
//! connection, locally or through the shell's tunnel.

use std::path::PathBuf;

use super::stream::Endpoint;
use crate::tunnel::TunnelView;

/// The record's name for the local relay of a home.
pub fn local_relay_key() -> String {
    "local".to_owned()
}

/// The record's name for a remote relay: the SSH target as resolved (so an
/// alias and its host name are one relay) and its discovery file.
pub fn remote_relay_key(target: &str, remote_discovery: &str) -> String {
    format!("ssh:{target}:{remote_discovery}")
}

/// How to find the relay, asked again before every connection (a local
/// relay may have restarted on another port, a tunnel may be down).
#[derive(Clone)]
pub enum Locator {
    /// The discovery file of this loopchat home.
    Local {
        home: PathBuf,
    },
    /// Through a tunnel (its local URL; the remote relay's token).
    Tunnel(TunnelView),
    Fixed(Endpoint),
}

impl Locator {
    pub async fn locate(&self) -> Result<Endpoint, String> {
        match self {
            Locator::Local { home } => {
                let home = home.clone();
                let d = tokio::task::spawn_blocking(move || crate::relay::discover_local(&home))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(Endpoint {
                    base_url: d.base_url,
                    token: d.token,
                })
            }
            Locator::Tunnel(view) => {
                let relay = view
                    .relay()
                    .ok_or_else(|| format!("the SSH tunnel to {} is down", view.target()))?;
                Ok(Endpoint {
                    base_url: view.local_url(),
                    token: relay.token,
                })
            }
            Locator::Fixed(ep) => Ok(ep.clone()),
        }
    }
}
