//! What the two X11 test binaries (`window.rs`, `alerts.rs`) share: their
//! `harness = false` main (GTK wants the main thread), the re-run under
//! `xvfb-run`, the shell process and its log, screenshots, and input
//! through XTest. Included with `#[path]` by those two only, so the tunnel
//! tests neither link libxdo nor need a display.

// Each binary uses part of this file: keys for one, the pointer for the other.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A `loopchat-shell` process (the window, or `alerts`) with its stderr
/// collected, for the test to wait for what it logs.
pub struct Shell {
    child: Child,
    log: Arc<Mutex<String>>,
    name: String,
}

impl Shell {
    /// The shell on the test home `home`, with a HOME of its own inside it,
    /// for the caller to complete before [`Shell::spawn`].
    pub fn command(home: &Path, args: &[impl AsRef<OsStr>]) -> Command {
        let mut command = Command::new(crate::support::shell_bin());
        command
            .args(args)
            .env("LOOPCHAT_HOME", home)
            .env("HOME", home.join("user-home"))
            .env("RUST_LOG", "warn,loopchat_shell=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `command`; its log lines are echoed tagged with `name`.
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let mut child = command.spawn().expect("start loopchat-shell");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  {tag}: {line}");
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Self {
            child,
            log,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many log lines contain every one of `parts`.
    pub fn count_lines(&self, parts: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Waits for the `nth` (1-based) log line containing every one of
    /// `parts`.
    pub fn wait_for_nth_line(&mut self, nth: usize, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .nth(nth - 1)
            {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {parts:?} within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_line(&mut self, parts: &[&str], limit: Duration) -> String {
        self.wait_for_nth_line(1, parts, limit)
    }

    /// SIGTERM; the window and `alerts` both exit 0 on it (the window after
    /// saving its settings).
    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "{} exited {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} ignored SIGTERM:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `xwininfo -root -tree`: every window with its name and geometry.
pub fn window_tree() -> String {
    let out = Command::new("xwininfo")
        .args(["-root", "-tree"])
        .output()
        .expect("run xwininfo (x11-utils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole screen, kept in `target/tmp/NAME.png` for a human to look at.
pub fn screenshot(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    crate::support::run(Command::new("import").args(["-window", "root"]).arg(&path));
    eprintln!("  screenshot: {}", path.display());
    path
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
