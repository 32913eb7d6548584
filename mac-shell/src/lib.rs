//! The loopchat desktop shell: a native window on a loopchat relay, local or
//! remote.
//!
//! Two binaries share this library. `loopchat-shell` (`main.rs`) is the
//! command line: it runs `tunnel` itself and hands window mode over to
//! `loopchat-shell-window` (`window_main.rs`), the only binary that links
//! GTK and WebKit — so the headless tunnel starts in milliseconds instead of
//! loading a browser engine it does not use.
//!
//! Code map (each module says what it does *not* depend on):
//!
//! - [`relay`] — finds the local relay through its discovery file and asks a
//!   relay (local, or remote through a tunnel) for `/webchat/info`. Knows
//!   nothing of SSH or windows.
//! - [`tunnel`] — russh: ssh config resolution, known_hosts, authentication,
//!   remote discovery over an exec channel, local port forwarding and the
//!   reconnect supervisor. No GUI code: `loopchat-shell tunnel` runs it
//!   headless ([`headless`]).
//! - [`start`] — starts `loopchat serve` detached (own session, output in
//!   `relay.log`) when local mode finds no relay, and waits for its
//!   discovery file; a relay that lost the home's lock to a concurrent
//!   shell's just means waiting for the winner's. "Stop relay" stops it
//!   again (SIGTERM to the live discovery file's pid, then waits).
//! - [`settings`] — `shell.json` in the loopchat home: window size, alerts
//!   pause, each remote host's tunnel port.
//! - [`notifications`] — desktop notifications: a subscriber task on the
//!   relay's WebSocket that raises its alerts through the freedesktop
//!   notification service (notify-rust), de-duplicated across shells by
//!   `shell-alerts.json`. No GUI code: the window only reports its focus
//!   and acts on clicks; `loopchat-shell alerts` runs it headless. One
//!   concept per module (locator, focus, click, notifier, record, stream);
//!   the platform's notifications in `desktop/` (freedesktop on Linux).
//! - [`open`] — a link in the user's browser (`xdg-open`, `open` on macOS).
//! - In the window binary only: `window/` (tao + wry + muda: the window, its
//!   menu and the shell's own pages; no SSH code — it receives `UiEvent`s
//!   and answers with `UiAction`s; `window/platform.rs` holds its only
//!   platform calls) and `gui.rs`, the glue that drives a
//!   tunnel or the local relay and tells the window what to show.
//!
//! Invariants: the token never reaches a log line; closing the shell never
//! stops a relay (the shell only reads discovery files and opens channels).
//! Only the menu's "Stop relay", confirmed on a page of the shell's own,
//! stops one, and only the local one ([`start::stop_local`]).

pub mod headless;
pub mod notifications;
pub mod open;
pub mod relay;
pub mod settings;
pub mod start;
pub mod tunnel;

use std::fmt;

/// The step of "getting a chat on screen" that failed, named the way the
/// error page and the CLI report it, so a user knows where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Finding the relay: the discovery file, locally or over SSH.
    Discovery,
    /// Reaching the SSH server (or a jump host), or the relay's port.
    Connect,
    /// Verifying the SSH server's host key.
    HostKey,
    /// SSH user authentication.
    Auth,
    /// `GET /webchat/info` on the relay.
    RelayInfo,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Discovery => "discovery",
            Step::Connect => "connect",
            Step::HostKey => "host key",
            Step::Auth => "auth",
            Step::RelayInfo => "relay info",
        })
    }
}

/// The crates whose logs are the shell's own (they never log a token,
/// passphrase or message text): a bare `RUST_LOG` level reaches them in
/// full and every other crate only up to `info` (`loopchat_proto::log_filter`,
/// the relay's rule too: tungstenite at debug would log the WebSocket
/// handshake, whose subprotocol carries the token).
// `loopchat_shell` also covers `loopchat_shell_window` (targets match by
// prefix); naming that one apart would make a bare level override a
// user's `loopchat_shell=…`.
pub const LOG_TARGETS: &[&str] = &["loopchat_shell", "loopchat_proto"];

/// The log filter for `RUST_LOG` (if set and valid), else `default`.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let rewrite = |s: &str| loopchat_proto::log_filter::rewrite(s, LOG_TARGETS);
    std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| {
            tracing_subscriber::EnvFilter::builder()
                .parse(rewrite(&s))
                .ok()
        })
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(rewrite(default)))
}

/// The tunnel's runtime: one thread, like `ssh` itself. Every forwarded
/// byte hops between tasks (socket → channel → SSH session → socket); on
/// one thread those hops are plain function calls instead of cross-thread
/// wake-ups, which is what small round trips are made of.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .thread_name("loopchat-shell-io")
        .enable_all()
        .build()
}
