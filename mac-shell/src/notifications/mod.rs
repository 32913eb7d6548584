//! Desktop notifications: the relay's alerts as native popups.
//!
//! A [`Notifier`] is a subscriber task — no GUI code — that keeps a
//! WebSocket to the relay (`/webchat/socket`, notifications only; the local
//! relay, or the tunnel's local URL in remote mode), answers its pings,
//! reconnects with backoff (1 s doubling to 30 s) and resumes from the last
//! seq recorded. Each alert goes to a [`Desktop`] (the freedesktop service
//! through notify-rust) unless:
//!
//! - another shell of this loopchat home already handled it — the
//!   [`record`] (`shell-alerts.json`, under an exclusive flock) says which
//!   seqs are handled, so two windows, or a restarted one, never raise the
//!   same alert twice;
//! - alerts are paused (`shell.json`, the menu's "Pause alerts");
//! - the window is focused (this shell's, or another shell window on the
//!   same relay).
//!
//! An alert is handled (claimed in the record) *before* it is raised, and
//! whether it was raised or not: at most once, never twice.
//!
//! On (re)connect the notifier first catches up with
//! `GET /webchat/notifications?since=<recorded seq>` — the alerts posted
//! while no shell ran — and raises at most [`MAX_ONE_BY_ONE`] of them, the
//! most important, plus one "N more alerts" summary for the rest, so that a
//! long absence does not flood the desktop; then it goes live with
//! `notifySince=<last seq>` (nothing missed, nothing twice). Bursts on the
//! live stream are batched the same way.
//!
//! The window side only tells it whether the window is focused ([`Focus`])
//! and acts on clicks ([`Click`]: focus the window, open the session or the
//! alert's link).

mod click;
pub mod desktop;
mod focus;
mod locator;
mod notifier;
pub mod record;
mod stream;

/// An alert as the notifier's and the click's tests need one.
#[cfg(test)]
fn test_alert(seq: u64, priority: u8) -> loopchat_proto::Notification {
    loopchat_proto::Notification {
        id: format!("n{seq}"),
        seq,
        title: format!("title {seq}"),
        body: "body".into(),
        priority,
        tags: vec![],
        click: None,
        session: None,
        timestamp: "2025-01-01T00:00:00Z".into(),
        ..Default::default()
    }
}

pub use click::{Click, ClickTarget, OnClick, Opening};
#[cfg(target_os = "linux")]
pub use desktop::FreedesktopNotifications;
pub use desktop::{
    Desktop, DesktopAlert, DesktopError, Shown, SystemNotifications, Urgency, urgency,
};
pub use focus::Focus;
pub use locator::{Locator, local_relay_key, remote_relay_key};
pub use notifier::{MAX_ONE_BY_ONE, Notifier, NotifierConfig, alert_for, plan, summary_for};
pub use record::{AlertRecord, Start};
pub use stream::Endpoint;
