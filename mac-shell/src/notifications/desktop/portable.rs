//! Other platforms (macOS): notify-rust's cross-platform `show()`. Not
//! built or tested on this project's Linux machines: it follows
//! notify-rust's documented API, and type-checks in principle only.
//!
//! It reports no clicks (a click opens the app, which shows its window) and
//! no urgency (Notification Center has none); the id is 0, so an update of
//! an alert shows as a new popup.

use super::{
    APP_NAME, BoxFuture, Desktop, DesktopAlert, DesktopError, MAX_BODY_CHARS, Shown, truncate,
};

/// No service to ask for: the system's notification centre is always there.
pub fn service_name() -> Result<String, String> {
    Ok("the system's notification centre".to_owned())
}

/// The platform's notifications through notify-rust.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNotifications;

impl Desktop for SystemNotifications {
    fn show(&self, alert: DesktopAlert) -> BoxFuture<'_, Result<Shown, DesktopError>> {
        Box::pin(async move {
            let shown = tokio::task::spawn_blocking(move || {
                notify_rust::Notification::new()
                    .appname(APP_NAME)
                    .summary(&alert.title)
                    .body(&truncate(&alert.body, MAX_BODY_CHARS))
                    .show()
                    .map(drop)
                    .map_err(|e| DesktopError(e.to_string()))
            })
            .await
            .map_err(|e| DesktopError(e.to_string()))?;
            shown?;
            let clicked: BoxFuture<'static, bool> = Box::pin(async { false });
            Ok(Shown { id: 0, clicked })
        })
    }
}
