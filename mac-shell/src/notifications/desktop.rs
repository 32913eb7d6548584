//! The desktop side: a small [`Desktop`] trait (show a popup, learn whether
//! it was clicked) and the platform's implementation, [`SystemNotifications`]:
//! on Linux the freedesktop notification service
//! (`org.freedesktop.Notifications` on the session D-Bus) through notify-rust —
//! what GNOME, KDE, dunst, mako… all serve; elsewhere notify-rust's
//! cross-platform `show()` (macOS Notification Center), which reports no
//! clicks. Only the Linux one is built and tested here.

#[cfg(target_os = "linux")]
mod freedesktop;
#[cfg(not(target_os = "linux"))]
mod portable;

#[cfg(target_os = "linux")]
pub use freedesktop::{
    FreedesktopNotifications, FreedesktopNotifications as SystemNotifications, service_name,
};
#[cfg(not(target_os = "linux"))]
pub use portable::{SystemNotifications, service_name};

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The desktop's urgency levels (freedesktop notification spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    Low,
    Normal,
    /// Does not expire by itself; stays until dismissed.
    Critical,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::Critical => "critical",
        }
    }
}

/// A notification's priority (1–5) as a desktop urgency: 1–2 low, 3
/// normal, 4–5 critical. Out-of-range values (the relay refuses them) are
/// clamped to the nearest end.
pub fn urgency(priority: u8) -> Urgency {
    match priority {
        0..=2 => Urgency::Low,
        3 => Urgency::Normal,
        _ => Urgency::Critical,
    }
}

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopAlert {
    /// Plain text (the spec's summary is never markup).
    pub title: String,
    /// Plain text; escaped by the implementation where the server reads
    /// markup.
    pub body: String,
    pub urgency: Urgency,
    /// The desktop id of a popup this one replaces (an update of the same
    /// alert).
    pub replaces: Option<u32>,
    /// A local copy of the alert's image, for the `image-path` hint (shown
    /// by servers that support it, ignored by the rest).
    pub image: Option<std::path::PathBuf>,
}

/// A popup on screen.
pub struct Shown {
    /// The notification server's id for it.
    pub id: u32,
    /// Resolves to true when the user clicks it (its default action), to
    /// false when it is closed without a click. May never resolve (a server
    /// that went away): callers bound it.
    pub clicked: BoxFuture<'static, bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot show a desktop notification: {0}")]
pub struct DesktopError(pub String);

/// Where alerts are shown.
pub trait Desktop: Send + Sync + 'static {
    fn show(&self, alert: DesktopAlert) -> BoxFuture<'_, Result<Shown, DesktopError>>;
}

/// The application name the notification server shows and groups by.
pub const APP_NAME: &str = "loopchat";
/// The longest body shown (characters); the relay allows 4 KiB, a popup is
/// not the place to read it.
pub(crate) const MAX_BODY_CHARS: usize = 600;

/// Notification servers that advertise `body-markup` (GNOME, KDE, dunst)
/// read the body as a small subset of HTML; an alert's body is plain text.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_to_urgency() {
        assert_eq!(urgency(1), Urgency::Low);
        assert_eq!(urgency(2), Urgency::Low);
        assert_eq!(urgency(3), Urgency::Normal);
        assert_eq!(urgency(4), Urgency::Critical);
        assert_eq!(urgency(5), Urgency::Critical);
        // Never sent by the relay; clamped.
        assert_eq!(urgency(0), Urgency::Low);
        assert_eq!(urgency(200), Urgency::Critical);
        assert!(Urgency::Low < Urgency::Normal && Urgency::Normal < Urgency::Critical);
        assert_eq!(urgency(4).as_str(), "critical");
    }

    #[test]
    fn bodies_are_escaped_and_bounded() {
        assert_eq!(escape_markup("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
