//! What the two X11 test binaries (`window.rs`, `alerts.rs`) share: their
//! `harness = false` main (GTK wants the main thread), the re-run under
//! `xvfb-run`, and input through XTest. Included with `#[path]` by those two
//! only, so the tunnel tests neither link libxdo nor need a display.

// Each binary uses part of this file: keys for one, the pointer for the other.
#![allow(dead_code)]

use std::process::Command;

/// Which X server the tests run on.
pub enum Display {
    /// `$DISPLAY` if there is one (a developer watching), else a private Xvfb.
    ExistingOrXvfb,
    /// Always a private Xvfb, even under a desktop: the test owns the screen
    /// (the notification daemon's popups, the pointer).
    OwnXvfb,
}

/// A test: its name and the function that runs it on the shared context.
pub type Test<C> = (&'static str, fn(&C));

/// Set in the process that re-ran itself under xvfb-run.
const UNDER_XVFB: &str = "LOOPCHAT_SHELL_TEST_UNDER_XVFB";

/// Runs the selected `tests` the way libtest would (`NAME` filters,
/// `--list`, the summary line, exit 101 on a failure), each with the context
/// `setup` makes once on the X server, after `before_each` on it.
pub fn main<C>(
    tests: &[Test<C>],
    display: Display,
    setup: impl FnOnce() -> C,
    before_each: fn(&C),
) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test NAME` passes NAME to every test binary: run only when it
    // could mean us.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    if !tests.iter().any(|(name, _)| selected(name)) {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        return;
    }
    let needs_xvfb = match display {
        Display::ExistingOrXvfb => std::env::var_os("DISPLAY").is_none(),
        Display::OwnXvfb => true,
    };
    if needs_xvfb && std::env::var_os(UNDER_XVFB).is_none() {
        let status = Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x1024x24"])
            .arg(std::env::current_exe().expect("own path"))
            .args(&args)
            .env(UNDER_XVFB, "1")
            .status();
        match status {
            Ok(s) => std::process::exit(s.code().unwrap_or(1)),
            Err(e) => {
                eprintln!("cannot run xvfb-run ({e}): install xvfb and xauth");
                std::process::exit(1);
            }
        }
    }

    let context = setup();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !selected(name) {
            continue;
        }
        println!("test {name} ...");
        before_each(&context);
        // `before_each` puts the context right again after a failed test.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&context))) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    drop(context);
    println!();
    println!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

/// Keyboard and pointer through XTest (libxdo, already needed by the
/// desktop build), to act on the window like a user would.
pub mod xdo {
    use std::ffi::{CString, c_char, c_int, c_ulong, c_void};

    #[link(name = "xdo")]
    unsafe extern "C" {
        fn xdo_new(display: *const c_char) -> *mut c_void;
        fn xdo_free(xdo: *mut c_void);
        fn xdo_send_keysequence_window(
            xdo: *const c_void,
            window: c_ulong,
            keyseq: *const c_char,
            delay: u32,
        ) -> c_int;
        fn xdo_enter_text_window(
            xdo: *const c_void,
            window: c_ulong,
            text: *const c_char,
            delay: u32,
        ) -> c_int;
        fn xdo_move_mouse(xdo: *const c_void, x: c_int, y: c_int, screen: c_int) -> c_int;
        fn xdo_click_window(xdo: *const c_void, window: c_ulong, button: c_int) -> c_int;
    }

    /// CURRENTWINDOW: send to whatever has the focus, through XTest.
    const CURRENT_WINDOW: c_ulong = 0;

    fn with_xdo(f: impl FnOnce(*const c_void) -> c_int) {
        // SAFETY: libxdo opens $DISPLAY; the handle is freed below and used
        // only in between.
        unsafe {
            let xdo = xdo_new(std::ptr::null());
            assert!(!xdo.is_null(), "libxdo could not open the display");
            let rc = f(xdo);
            xdo_free(xdo);
            assert_eq!(rc, 0, "libxdo failed");
        }
    }

    pub fn keys(sequence: &str) {
        let seq = CString::new(sequence).expect("key sequence");
        // SAFETY: valid handle and NUL-terminated string.
        with_xdo(|xdo| unsafe {
            xdo_send_keysequence_window(xdo, CURRENT_WINDOW, seq.as_ptr(), 12_000)
        });
    }

    pub fn type_text(text: &str) {
        let text = CString::new(text).expect("text");
        // SAFETY: valid handle and NUL-terminated string.
        with_xdo(|xdo| unsafe {
            xdo_enter_text_window(xdo, CURRENT_WINDOW, text.as_ptr(), 12_000)
        });
    }

    pub fn move_mouse(x: i32, y: i32) {
        // SAFETY: valid handle.
        with_xdo(|xdo| unsafe { xdo_move_mouse(xdo, x, y, 0) });
    }

    /// A click where the pointer is.
    pub fn click(button: i32) {
        // SAFETY: valid handle.
        with_xdo(|xdo| unsafe { xdo_click_window(xdo, CURRENT_WINDOW, button) });
    }
}
