//! The desktop side: a small [`Desktop`] trait (show a popup, learn whether
//! it was clicked) and its implementation on the freedesktop notification
//! service (`org.freedesktop.Notifications` on the session D-Bus) through
//! notify-rust — what GNOME, KDE, dunst, mako… all serve.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The notification service answering on the session bus ("dunst 1.9.0"),
/// or why none does. Blocking (one D-Bus round trip).
pub fn service_name() -> Result<String, String> {
    notify_rust::get_server_information()
        .map(|info| format!("{} {}", info.name, info.version).trim().to_owned())
        .map_err(|e| e.to_string())
}

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
const MAX_BODY_CHARS: usize = 600;

/// The freedesktop notification service on the session bus
/// (`DBUS_SESSION_BUS_ADDRESS`), through notify-rust.
#[derive(Debug, Default, Clone, Copy)]
pub struct FreedesktopNotifications;

impl Desktop for FreedesktopNotifications {
    fn show(&self, alert: DesktopAlert) -> BoxFuture<'_, Result<Shown, DesktopError>> {
        Box::pin(async move {
            let mut n = notify_rust::Notification::new();
            n.appname(APP_NAME)
                .summary(&alert.title)
                .body(&escape_markup(&truncate(&alert.body, MAX_BODY_CHARS)))
                // The "default" action is what a click on the popup invokes.
                .action("default", "Open")
                .hint(notify_rust::Hint::Category("im.received".into()))
                .urgency(match alert.urgency {
                    Urgency::Low => notify_rust::Urgency::Low,
                    Urgency::Normal => notify_rust::Urgency::Normal,
                    Urgency::Critical => notify_rust::Urgency::Critical,
                });
            if alert.urgency == Urgency::Critical {
                n.hint(notify_rust::Hint::SoundName("message-new-instant".into()));
            }
            if let Some(id) = alert.replaces {
                n.id(id);
            }
            if let Some(path) = &alert.image {
                n.hint(notify_rust::Hint::ImagePath(path.display().to_string()));
            }
            let handle = n
                .show_async()
                .await
                .map_err(|e| DesktopError(e.to_string()))?;
            let id = handle.id();
            let clicked: BoxFuture<'static, bool> = Box::pin(async move {
                let mut clicked = false;
                handle
                    .wait_for_action_async(|response| {
                        clicked = matches!(response, notify_rust::NotificationResponse::Default);
                    })
                    .await;
                clicked
            });
            Ok(Shown { id, clicked })
        })
    }
}

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
