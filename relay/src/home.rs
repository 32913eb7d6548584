//! The state directory (`$LOOPCHAT_HOME`, else `~/.loopchat`) and its files.
//!
//! Everything in it is private to the user: the directory is 0700 and
//! secrets are 0600, because other local users are part of the threat model.
//!
//! Chmodding a directory does not make it the user's, so, like OpenSSH's
//! `StrictModes`, the relay refuses a home that another user could have
//! prepared: one owned by someone else, one that group or others can write,
//! one below a directory that someone other than the user or root could
//! rename it out of, and a token, `tokens.json` or config file that someone
//! else owns, can write, or (for the token files) can read. A home that is
//! the user's and only too *readable* (0755 under a common umask) is
//! tightened to 0700 as before: nobody else could have put anything in it.
//!
//! One relay serves a home at a time: [`Home::lock`] takes an exclusive
//! `flock` on `relay.lock` for the relay's life.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use loopchat_proto::home;

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot use {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// StrictModes: `problem` says what was found (owner, mode), `fix` what
    /// to do about it.
    #[error("refusing to use {}: {problem}. {fix}", path.display())]
    Unsafe {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error(
        "cannot lock {}: {source}. loopchat needs a file system with `flock` to make sure \
         only one relay serves a home",
        path.display()
    )]
    Lock { path: PathBuf, source: io::Error },
    #[error("{}", busy_message(home, *pid, url.as_deref()))]
    Busy {
        home: PathBuf,
        /// From the lock file; `None` while the other relay has only just
        /// taken the lock.
        pid: Option<u32>,
        /// From `relay.json`, when it names the lock holder's pid.
        url: Option<String>,
    },
}

fn busy_message(home: &Path, pid: Option<u32>, url: Option<&str>) -> String {
    let home = home.display();
    match (pid, url) {
        (Some(pid), Some(url)) => format!(
            "another relay (pid {pid}) is already serving {home} at {url}; use that one \
             (`loopchat info`), or stop it (`kill {pid}`) before starting a new one"
        ),
        (Some(pid), None) => format!(
            "another relay (pid {pid}) is serving {home}; it is still starting and has not \
             written relay.json yet. Use that one, or stop it (`kill {pid}`) first"
        ),
        (None, _) => format!(
            "another relay is serving {home}; it has only just started and has not written \
             its pid to relay.lock yet. Try `loopchat info` in a moment"
        ),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

/// An exclusive `flock` on the home's `relay.lock`. The kernel releases it
/// when the relay exits in any way, `kill -9` included, so a crash never
/// leaves a home locked. The file itself is never removed: unlinking a lock
/// file that another process has open but not yet locked would let a third
/// one lock a fresh file of the same name, and two relays would run.
#[derive(Debug)]
pub struct HomeLock {
    // Held, not used: closing the descriptor releases the lock. Rust opens
    // files with O_CLOEXEC, so an agent command the relay spawns does not
    // inherit it and cannot keep the home locked after the relay is gone.
    _file: File,
}

impl Home {
    /// `explicit`, else `$LOOPCHAT_HOME`, else `~/.loopchat`.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        home::locate(explicit)
    }

    /// Creates the directory (0700) if needed, after checking that nobody
    /// else controls where it goes; refuses a home, token file or
    /// `tokens.json` that another user could have prepared (see the module
    /// documentation); tightens a home that is only too readable.
    pub fn open(root: PathBuf) -> Result<Self, HomeError> {
        let absolute = absolute(&root)?;
        // Before creating anything: a directory that another user controls
        // must not get our files in it.
        check_ancestors(&absolute)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&absolute)
            .map_err(io_error(&absolute))?;
        check_ancestors(&absolute)?;
        let real = fs::canonicalize(&absolute).map_err(io_error(&absolute))?;
        if real != absolute {
            check_ancestors(&real)?;
        }
        check_home_dir(&absolute, true)?;
        let home = Self { root };
        check_file(&home.token_file(), FileKind::Secret)?;
        check_file(&home.tokens_file(), FileKind::Secret)?;
        Ok(home)
    }

    /// A handle for reading files of a home that may not exist (clients).
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// Takes the home's lock, or says which relay holds it. Call it before
    /// writing anything in the home or binding the port.
    pub fn lock(&self) -> Result<HomeLock, HomeError> {
        let path = self.lock_file();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A symlink planted here would make us truncate its target.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_error(&path))?;
        let meta = file.metadata().map_err(io_error(&path))?;
        check_owned_by_us(&path, &meta, false)?;
        // SAFETY: flock only acts on the descriptor, which `file` owns and
        // keeps open for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(self.busy());
            }
            return Err(HomeError::Lock { path, source: e });
        }
        // Who holds it, for the message of a relay refused later; the
        // discovery file alone would not name a relay that is still starting.
        let recorded = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        if let Err(e) = recorded {
            tracing::debug!(error = %e, "cannot write the pid into relay.lock");
        }
        Ok(HomeLock { _file: file })
    }

    fn busy(&self) -> HomeError {
        let pid = fs::read_to_string(self.lock_file())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        // A discovery file of an earlier relay (killed with -9) may still be
        // there; its URL is only the holder's if its pid is.
        let url = pid.and_then(|pid| {
            let bytes = fs::read(self.discovery_file()).ok()?;
            let d = loopchat_proto::Discovery::parse(&bytes).ok()?;
            (d.pid == pid).then_some(d.base_url)
        });
        HomeError::Busy {
            home: self.root.clone(),
            pid,
            url,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join(home::TOKEN_FILE)
    }
    pub fn discovery_file(&self) -> PathBuf {
        self.root.join(home::DISCOVERY_FILE)
    }
    /// Locked by the running relay (see [`Home::lock`]); holds its pid.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(home::LOCK_FILE)
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join(home::CONFIG_FILE)
    }
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join(home::SESSIONS_DIR)
    }
    /// The full-text search index (rebuilt from the transcripts at will).
    pub fn search_dir(&self) -> PathBuf {
        self.root.join(home::SEARCH_DIR)
    }
    pub fn attachments_dir(&self) -> PathBuf {
        self.root.join(home::ATTACHMENTS_DIR)
    }
    /// Scoped (notify-only) tokens, hashed.
    pub fn tokens_file(&self) -> PathBuf {
        self.root.join(home::TOKENS_FILE)
    }
    /// The checks' run histories (`<name>.jsonl`) and their runs' scratch.
    pub fn checks_dir(&self) -> PathBuf {
        self.root.join("checks")
    }
    /// The kept notifications.
    pub fn notifications_file(&self) -> PathBuf {
        self.root.join(home::NOTIFICATIONS_FILE)
    }
    /// Remembers the last port so a restarted relay comes back on it.
    pub fn last_port_file(&self) -> PathBuf {
        self.root.join(home::LAST_PORT_FILE)
    }
}

/// For clients, which take the relay's port and token from the discovery
/// file: the rules of [`Home::open`], without creating or tightening
/// anything, and the same for `relay.json`. A `relay.json` planted by
/// another user would otherwise send the user's messages, and the token it
/// names, to that user's server. A home that does not exist passes: there
/// is nothing in it to trust.
pub fn check_existing(root: &Path) -> Result<(), HomeError> {
    let absolute = absolute(root)?;
    match fs::symlink_metadata(&absolute) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&absolute)(e)),
        Ok(_) => {}
    }
    check_ancestors(&absolute)?;
    let real = fs::canonicalize(&absolute).map_err(io_error(&absolute))?;
    if real != absolute {
        check_ancestors(&real)?;
    }
    check_home_dir(&absolute, false)?;
    check_file(&Home::at(absolute).discovery_file(), FileKind::Secret)
}

fn absolute(path: &Path) -> Result<PathBuf, HomeError> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir().map_err(io_error(path))?.join(path))
}

/// The config file, wherever it is (`--config` may point out of the home):
/// owned by the user (or root, for a system-wide file) and writable by
/// nobody else, since it chooses the agent command the relay runs.
pub fn check_config_file(path: &Path) -> Result<(), HomeError> {
    check_file(path, FileKind::Config)
}

pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The sticky bit (`S_ISVTX`; libc types it u16 on macOS, u32 on Linux).
const STICKY: u32 = 0o1000;

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Who may own a directory above the home, or a symlink on the way: the
/// user and root. Inside a user namespace (the tests' unprivileged
/// fallback, rootless containers) files of unmapped users, root's `/` and
/// `/tmp` among them, show up as the overflow uid, so it counts as root
/// there and only there.
pub(crate) fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid() || Some(uid) == *namespace_overflow_uid()
}

fn namespace_overflow_uid() -> &'static Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    UID.get_or_init(|| {
        let map = fs::read_to_string("/proc/self/uid_map").ok()?;
        let identity = map.split_whitespace().eq(["0", "0", "4294967295"]);
        if identity {
            return None;
        }
        fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// Every existing directory above `home` must be the user's or root's, and
/// one that others may write must be sticky (like `/tmp`), or they could
/// rename the home away and put their own in its place.
fn check_ancestors(home: &Path) -> Result<(), HomeError> {
    for dir in home.ancestors().skip(1) {
        let meta = match fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(dir)(e)),
        };
        if !trusted_owner(meta.uid()) {
            return Err(HomeError::Unsafe {
                path: home.to_owned(),
                problem: format!(
                    "{} above it is owned by uid {}, who is neither you (uid {}) nor root, \
                     and could replace anything below it",
                    dir.display(),
                    meta.uid(),
                    euid()
                ),
                fix: "Choose a home in a directory of your own (e.g. unset LOOPCHAT_HOME \
                      for ~/.loopchat)"
                    .to_owned(),
            });
        }
        let mode = meta.mode();
        if !meta.is_symlink() && mode & 0o022 != 0 && mode & STICKY == 0 {
            return Err(HomeError::Unsafe {
                path: home.to_owned(),
                problem: format!(
                    "{} above it has mode {:04o}: group or others can write it without the \
                     sticky bit, so they could rename the home and put their own in its place",
                    dir.display(),
                    mode & 0o7777
                ),
                fix: format!("Run `chmod go-w {}`", dir.display()),
            });
        }
    }
    Ok(())
}

/// `tighten`: chmod a home that is only too readable to 0700 (the relay
/// does; a client only reads).
fn check_home_dir(home: &Path, tighten: bool) -> Result<(), HomeError> {
    let link = fs::symlink_metadata(home).map_err(io_error(home))?;
    if link.is_symlink() && !trusted_owner(link.uid()) {
        return Err(HomeError::Unsafe {
            path: home.to_owned(),
            problem: format!(
                "it is a symlink owned by uid {}, who could point it elsewhere",
                link.uid()
            ),
            fix: "Replace the symlink with one of your own, or use the directory's real path"
                .to_owned(),
        });
    }
    let meta = fs::metadata(home).map_err(io_error(home))?;
    if !meta.is_dir() {
        return Err(HomeError::Unsafe {
            path: home.to_owned(),
            problem: "it is not a directory".to_owned(),
            fix: "Move it away or choose another home".to_owned(),
        });
    }
    check_owned_by_us(home, &meta, false)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(HomeError::Unsafe {
            path: home.to_owned(),
            problem: format!(
                "it has mode {mode:04o}: group or others can write it, and could have put \
                 their own token, config or transcripts in it"
            ),
            fix: format!(
                "Check that everything in it is yours, then run `chmod 700 {}`",
                home.display()
            ),
        });
    }
    if tighten && mode & 0o077 != 0 {
        fs::set_permissions(home, fs::Permissions::from_mode(0o700)).map_err(io_error(home))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// The token files: nobody else may even read them.
    Secret,
    /// May also be root's (a system-wide `--config`).
    Config,
}

/// A file that does not exist yet passes: the relay creates it, 0600.
fn check_file(path: &Path, kind: FileKind) -> Result<(), HomeError> {
    let link = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    };
    if link.is_symlink() {
        check_owned_by_us(path, &link, kind == FileKind::Config)?;
    }
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    };
    check_owned_by_us(path, &meta, kind == FileKind::Config)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(HomeError::Unsafe {
            path: path.to_owned(),
            problem: format!("it has mode {mode:04o}: group or others can write it"),
            fix: match kind {
                FileKind::Secret => format!(
                    "Run `chmod 600 {}`, then `loopchat token rotate`: someone else may \
                     have put their token in it",
                    path.display()
                ),
                FileKind::Config => format!(
                    "Check its contents (it chooses the agent the relay runs), then run \
                     `chmod go-w {}`",
                    path.display()
                ),
            },
        });
    }
    if kind == FileKind::Secret && mode & 0o044 != 0 {
        return Err(HomeError::Unsafe {
            path: path.to_owned(),
            problem: format!("it has mode {mode:04o}: group or others can read it"),
            fix: format!(
                "Run `chmod 600 {}`, then `loopchat token rotate`, since the token may have \
                 been read",
                path.display()
            ),
        });
    }
    Ok(())
}

fn check_owned_by_us(path: &Path, meta: &fs::Metadata, root_ok: bool) -> Result<(), HomeError> {
    let me = euid();
    if meta.uid() == me || (root_ok && meta.uid() == 0) {
        return Ok(());
    }
    Err(HomeError::Unsafe {
        path: path.to_owned(),
        problem: format!(
            "it is owned by uid {}, not by you (uid {me}), so its owner can change it",
            meta.uid()
        ),
        fix: format!(
            "If it is yours, run `chown {me} {}`; if another user made it, remove it (or \
             choose another home) and start again",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_only_too_readable_is_tightened_but_a_writable_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("h");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        Home::open(home.clone()).unwrap();
        assert_eq!(fs::metadata(&home).unwrap().mode() & 0o777, 0o700);

        fs::set_permissions(&home, fs::Permissions::from_mode(0o770)).unwrap();
        let e = Home::open(home.clone()).unwrap_err().to_string();
        assert!(e.contains("mode 0770") && e.contains("chmod 700"), "{e}");
    }

    #[test]
    fn token_files_others_can_read_or_write_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("h");
        Home::open(home.clone()).unwrap();
        let token = home.join("token");
        fs::write(&token, "t\n").unwrap();
        for (mode, word) in [(0o644, "read"), (0o622, "write")] {
            fs::set_permissions(&token, fs::Permissions::from_mode(mode)).unwrap();
            let e = Home::open(home.clone()).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("chmod 600"), "{e}");
        }
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        Home::open(home).unwrap();
    }

    #[test]
    fn a_missing_home_is_created_private_below_a_sticky_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Home::open(shared.join("a/b")).unwrap_err().to_string();
        assert!(e.contains("sticky") && e.contains("chmod go-w"), "{e}");
        assert!(
            !shared.join("a").exists(),
            "created below an unsafe directory"
        );

        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        Home::open(shared.join("a/b")).unwrap();
        for d in ["a", "a/b"] {
            assert_eq!(fs::metadata(shared.join(d)).unwrap().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn one_lock_per_home() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::open(tmp.path().join("h")).unwrap();
        let held = home.lock().unwrap();
        let pid = std::process::id();
        match home.lock() {
            Err(HomeError::Busy { pid: p, url, .. }) => {
                assert_eq!((p, url), (Some(pid), None));
            }
            other => panic!("a second lock: {other:?}"),
        }
        drop(held);
        home.lock().unwrap();
    }
}
