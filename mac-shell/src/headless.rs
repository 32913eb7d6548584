//! The commands without a window, for people who prefer their own browser,
//! and for tests: `loopchat-shell tunnel` (the tunnel alone) and
//! `loopchat-shell alerts` (desktop notifications alone).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde::Serialize;

use crate::tunnel::{TerminalPrompter, Tunnel, TunnelSpec, TunnelStatus};

/// The one line printed on stdout once the tunnel is usable.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TunnelReady<'a> {
    local_url: &'a str,
    token: &'a str,
    remote_port: u16,
}

/// Opens the tunnel, prints where it is, and keeps it up until SIGINT or
/// SIGTERM — or until it fails for good (host key, auth), which is an error.
/// Its local port is the one remembered for the host in `home`'s settings
/// when free, so the browser's origin for it stays the same.
pub fn run_tunnel(mut spec: TunnelSpec, home: &Path, json: bool) -> anyhow::Result<()> {
    let destination = spec.destination.clone();
    spec.local_port = crate::settings::Settings::load(home).tunnel_port(&destination);
    crate::runtime()?.block_on(async move {
        let tunnel = Tunnel::open(spec, Arc::new(TerminalPrompter))
            .await
            .map_err(|e| anyhow!("{} failed: {e}", e.step()))?;
        crate::settings::remember_tunnel_port(home, &destination, tunnel.local_addr().port());
        let relay = tunnel
            .relay()
            .context("the tunnel went down before it could be reported")?;
        let local_url = tunnel.local_url();
        {
            let mut out = std::io::stdout().lock();
            if json {
                let line = serde_json::to_string(&TunnelReady {
                    local_url: &local_url,
                    token: &relay.token,
                    remote_port: relay.port,
                })?;
                writeln!(out, "{line}")?;
            } else {
                // The user's own browser needs the token once; it is printed
                // to the terminal, never logged.
                writeln!(
                    out,
                    "Tunnel to {} is up. Open in your browser:\n  {}#token={}\n(Ctrl-C to close; the remote relay keeps running.)",
                    tunnel.target(),
                    local_url,
                    relay.token
                )?;
            }
            out.flush()?;
        }
        tracing::info!(local_url = %local_url, target = %tunnel.target(), remote_port = relay.port, "tunnel ready");

        let mut watch = tunnel.watch();
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let outcome = loop {
            tokio::select! {
                status = watch.next() => match status {
                    Some(TunnelStatus::Failed { step, error }) => break Err(anyhow!("{step} failed: {error}")),
                    Some(TunnelStatus::Up { remote_port }) => tracing::info!(remote_port, "tunnel up"),
                    Some(TunnelStatus::Reconnecting { attempt, .. }) => tracing::debug!(attempt, "tunnel reconnecting"),
                    Some(TunnelStatus::Closed) | None => break Ok(()),
                },
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = terminate.recv() => break Ok(()),
            }
        };
        tunnel.close().await;
        outcome
    })
}

/// `loopchat-shell alerts`: desktop notifications without a window, for
/// people who chat in their own browser. Local relay of `home`, or a
/// remote one through a tunnel kept up meanwhile. Never focused, so every
/// alert not handled by another shell (and not paused) is raised; a click
/// opens its session or link in the browser.
pub fn run_alerts(home: std::path::PathBuf, remote: Option<TunnelSpec>) -> anyhow::Result<()> {
    use crate::notifications::{
        Click, Focus, Locator, Notifier, NotifierConfig, Opening, SystemNotifications,
        local_relay_key, remote_relay_key,
    };
    use crate::open::open_in_browser;
    crate::runtime()?.block_on(async move {
        let (tunnel, relay_key, locator) = match remote {
            None => (
                None,
                local_relay_key(),
                Locator::Local { home: home.clone() },
            ),
            Some(spec) => {
                let discovery = spec.remote_discovery.clone();
                let tunnel = Tunnel::open(spec, Arc::new(TerminalPrompter))
                    .await
                    .map_err(|e| anyhow!("{} failed: {e}", e.step()))?;
                let key = remote_relay_key(tunnel.target(), &discovery);
                let locator = Locator::Tunnel(tunnel.view());
                (Some(tunnel), key, locator)
            }
        };
        tracing::info!(relay = %relay_key, home = %home.display(), "desktop alerts on");
        let on_click = Arc::new(|click: Click| match click.target.resolve(&click.base_url) {
            Opening::InWindow(url) => open_in_browser(&url),
            Opening::FocusOnly => {}
        });
        let notifier = Notifier::spawn(
            NotifierConfig {
                home,
                relay_key,
                locator,
            },
            Arc::new(SystemNotifications),
            Focus::default(),
            on_click,
        );
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let outcome = match &tunnel {
            Some(t) => {
                let mut watch = t.watch();
                loop {
                    tokio::select! {
                        status = watch.next() => match status {
                            Some(TunnelStatus::Failed { step, error }) => break Err(anyhow!("{step} failed: {error}")),
                            Some(TunnelStatus::Closed) | None => break Ok(()),
                            Some(_) => {}
                        },
                        _ = tokio::signal::ctrl_c() => break Ok(()),
                        _ = terminate.recv() => break Ok(()),
                    }
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                Ok(())
            }
        };
        drop(notifier);
        if let Some(t) = tunnel {
            t.close().await;
        }
        outcome
    })
}
