//! Opening a URL in the user's browser, the platform's way: `xdg-open` on
//! Linux (and other freedesktop systems), `open` on macOS (not built here).

#[cfg(target_os = "macos")]
const OPENER: &str = "open";
#[cfg(not(target_os = "macos"))]
const OPENER: &str = "xdg-open";

/// Opens `url` in the user's browser, in the background.
pub fn open_in_browser(url: &str) {
    match std::process::Command::new(OPENER)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reaped in the background: the opener may hand over to a
            // browser that runs for hours.
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!(opener = OPENER, error = %e, "cannot open the alert's link"),
    }
}
