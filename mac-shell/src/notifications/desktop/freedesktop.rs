//! Linux: the freedesktop notification service on the session D-Bus.

use super::{
    APP_NAME, BoxFuture, Desktop, DesktopAlert, DesktopError, MAX_BODY_CHARS, Shown, Urgency,
    escape_markup, truncate,
};

/// The notification service answering on the session bus ("dunst 1.9.0"),
/// or why none does. Blocking (one D-Bus round trip).
pub fn service_name() -> Result<String, String> {
    notify_rust::get_server_information()
        .map(|info| format!("{} {}", info.name, info.version).trim().to_owned())
        .map_err(|e| e.to_string())
}

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
