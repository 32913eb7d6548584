//! The window's platform-specific calls: attaching the menu bar and building
//! the web view. Linux (GTK and WebKitGTK: tao's and wry's `unix`
//! extensions) is what is built and tested here. Elsewhere the code uses
//! tao's, wry's and muda's documented cross-platform calls (macOS: the menu
//! on the application, the web view in the window); it is not built on this
//! project's machines, which run Linux only.

use anyhow::Context as _;
use tao::window::Window;
use wry::{WebView, WebViewBuilder};

/// Puts the menu bar on `window`.
#[cfg(target_os = "linux")]
pub fn attach_menu(menu: &muda::Menu, window: &Window) -> anyhow::Result<()> {
    use tao::platform::unix::WindowExtUnix;
    menu.init_for_gtk_window(window.gtk_window(), window.default_vbox())
        .context("cannot attach the menu")
}

/// Puts the menu bar on the application (macOS has one menu bar for all
/// of an application's windows).
#[cfg(target_os = "macos")]
pub fn attach_menu(menu: &muda::Menu, _window: &Window) -> anyhow::Result<()> {
    menu.init_for_nsapp();
    Ok(())
}

/// No menu bar: the shell's commands are then out of reach, but the chat
/// works.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn attach_menu(_menu: &muda::Menu, _window: &Window) -> anyhow::Result<()> {
    tracing::warn!("no menu bar on this platform");
    Ok(())
}

/// The web view, inside the window's GTK container (below the menu bar).
#[cfg(target_os = "linux")]
pub fn build_webview(builder: WebViewBuilder<'_>, window: &Window) -> anyhow::Result<WebView> {
    use tao::platform::unix::WindowExtUnix;
    use wry::WebViewBuilderExtUnix;
    let vbox = window
        .default_vbox()
        .context("the window has no GTK container for the webview")?;
    builder
        .build_gtk(vbox)
        .context("cannot create the web view (WebKitGTK)")
}

/// The web view filling the window.
#[cfg(not(target_os = "linux"))]
pub fn build_webview(builder: WebViewBuilder<'_>, window: &Window) -> anyhow::Result<WebView> {
    builder.build(window).context("cannot create the web view")
}
