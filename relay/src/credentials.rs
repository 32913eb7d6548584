//! The tokens a running relay accepts: the main token (`$HOME/token`, full
//! access) and the scoped tokens of `tokens.json`, kept in step with the
//! files so that `loopchat token rotate|create|revoke` take effect without a
//! restart.
//!
//! The files are looked at (one `stat` each) every [`POLL`] by
//! [`Credentials::watch_files`], and at once when a request presents an
//! unknown token — which is exactly the moment a just-created token, or the
//! just-rotated main token, is first used. A scoped token is confirmed
//! against `tokens.json` on every use (they are rate-limited to about one
//! post a second, so the `stat` is free), which makes a revocation take
//! effect at once.
//!
//! Requests are checked when they arrive, but a stream outlives its
//! request: each change bumps a generation ([`Credentials::revocation`]),
//! and every open stream then re-checks the credential it was opened with
//! ([`Grant`]) and ends if it is no longer accepted.
//!
//! Why a `stat` poll rather than inotify (the `notify` crate): the commands
//! replace the files by atomic rename, so an inotify watch on the file
//! itself is lost at the first rotation and one on the directory must
//! filter every write of the home (transcripts included); the home may also
//! sit on a file system without inotify (NFS, FUSE, a tunnel's remote home).
//! Two `stat`s four times a second cost nothing and see every kind of
//! change: a new inode, size or mtime.

use parking_lot::{Mutex, MutexGuard};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::notify::tokens::{self, Scope, ScopedToken};

/// How often the token files are looked at: a rotation or revocation
/// reaches open streams within this (plus a scheduling moment), well inside
/// the one second the protocol promises.
pub const POLL: Duration = Duration::from_millis(250);

/// A request re-reads changed files itself if the last look is older than
/// this (the poll normally gets there first; unit tests have no poll).
const RECHECK: Duration = POLL;

/// Who is calling, once their token is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The main token: everything.
    Main,
    Scoped {
        id: String,
        scope: Scope,
    },
}

impl Caller {
    /// The key of the caller's rate-limit bucket.
    pub fn rate_key(&self) -> String {
        match self {
            Self::Main => "main".to_owned(),
            Self::Scoped { id, .. } => format!("token:{id}"),
        }
    }
}

/// What a request authenticated with, exactly enough to tell later whether
/// it is still accepted: the main token *as of a rotation epoch* (a rotated
/// token is a different credential even though the caller is still
/// [`Caller::Main`]), or a scoped token by id. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub caller: Caller,
    /// Which main token it was: counts the changes of the main token.
    main_epoch: u64,
    /// The credential generation the grant was checked against.
    generation: u64,
}

/// Identity of a file's current contents, as far as `stat` can tell:
/// an atomic rewrite changes the inode, an in-place edit the mtime or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn sig(path: &Path) -> Option<FileSig> {
    let m = fs::metadata(path).ok()?;
    Some(FileSig {
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

struct Known {
    main: String,
    /// Bumped whenever `main` changes value.
    main_epoch: u64,
    main_sig: Option<FileSig>,
    scoped: Vec<ScopedToken>,
    scoped_sig: Option<FileSig>,
    checked: Instant,
}

pub struct Credentials {
    token_path: PathBuf,
    tokens_path: PathBuf,
    known: Mutex<Known>,
    /// Bumped (under the `known` lock) on every change of either file, so
    /// that open streams re-check their [`Grant`].
    generation: watch::Sender<u64>,
}

impl Credentials {
    /// Reads (creating on first start) the main token and the scoped tokens.
    pub fn open(token_path: PathBuf, tokens_path: PathBuf) -> io::Result<Self> {
        let main = auth::load_or_create_token(&token_path)?;
        let scoped = tokens::read(&tokens_path)?;
        Ok(Self {
            known: Mutex::new(Known {
                main,
                main_epoch: 0,
                main_sig: sig(&token_path),
                scoped,
                scoped_sig: sig(&tokens_path),
                checked: Instant::now(),
            }),
            token_path,
            tokens_path,
            generation: watch::Sender::new(0),
        })
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock()
    }

    /// The main token as of now (it changes with `loopchat token rotate`).
    pub fn main_token(&self) -> String {
        let mut known = self.known();
        self.refresh(&mut known, false);
        known.main.clone()
    }

    /// Who presents `token`, if anyone.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        self.grant(token).map(|g| g.caller)
    }

    /// Who presents `token`, with what a stream needs to re-check it later
    /// ([`Credentials::revocation`]).
    pub fn grant(&self, token: &str) -> Option<Grant> {
        let mut known = self.known();
        self.refresh(&mut known, false);
        let caller = match Self::lookup(&known, token) {
            Some(Caller::Main) => Some(Caller::Main),
            // Perhaps revoked a moment ago.
            hit @ Some(Caller::Scoped { .. }) => match self.refresh_scoped(&mut known) {
                true => Self::lookup(&known, token),
                false => hit,
            },
            // Perhaps created or rotated a moment ago.
            None => match self.refresh(&mut known, true) {
                true => Self::lookup(&known, token),
                false => None,
            },
        }?;
        // Read under the lock that every bump takes: a change after this
        // point is a later generation, which the stream will see.
        Some(Grant {
            caller,
            main_epoch: known.main_epoch,
            generation: *self.generation.borrow(),
        })
    }

    /// Is the credential of `grant` still accepted, as of the last look at
    /// the files?
    fn accepts(&self, grant: &Grant) -> bool {
        let known = self.known();
        match &grant.caller {
            Caller::Main => known.main_epoch == grant.main_epoch,
            Caller::Scoped { id, scope } => known
                .scoped
                .iter()
                .any(|t| t.id == *id && t.scope == *scope),
        }
    }

    /// A watch that resolves once `grant`'s credential is rotated or
    /// revoked (see [`Revocation::revoked`]).
    pub fn revocation(self: &Arc<Self>, grant: Grant) -> Revocation {
        Revocation {
            credentials: Arc::clone(self),
            changes: self.generation.subscribe(),
            grant,
        }
    }

    #[cfg(test)]
    fn watch_once(&self) {
        let mut known = self.known();
        self.refresh(&mut known, true);
    }

    /// Looks at the token files every [`POLL`] until `stop`, so that a
    /// change reaches open streams without waiting for a request.
    pub async fn watch_files(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let mut known = self.known();
                    self.refresh(&mut known, true);
                }
                () = stop.cancelled() => return,
            }
        }
    }

    fn lookup(known: &Known, token: &str) -> Option<Caller> {
        if auth::token_matches(&known.main, token) {
            return Some(Caller::Main);
        }
        if known.scoped.is_empty() {
            return None;
        }
        let hash = tokens::hash_secret(token);
        known
            .scoped
            .iter()
            .find(|t| t.matches_hash(&hash))
            .map(|t| Caller::Scoped {
                id: t.id.clone(),
                scope: t.scope,
            })
    }

    /// Re-reads whichever file changed; returns whether anything did.
    fn refresh(&self, known: &mut Known, now: bool) -> bool {
        if !now && known.checked.elapsed() < RECHECK {
            return false;
        }
        known.checked = Instant::now();
        let mut changed = false;
        let main_sig = sig(&self.token_path);
        if main_sig != known.main_sig {
            known.main_sig = main_sig;
            match fs::read_to_string(&self.token_path) {
                Ok(t) if !t.trim().is_empty() => {
                    if t.trim() != known.main {
                        tracing::info!("the main token changed on disk; using the new one");
                        known.main = t.trim().to_owned();
                        known.main_epoch += 1;
                        self.bump();
                        changed = true;
                    }
                }
                // Deleted or emptied by hand: keep serving with the token in
                // use rather than lock every window out.
                _ => tracing::warn!(
                    file = %self.token_path.display(),
                    "the token file is missing or empty; still accepting the previous token"
                ),
            }
        }
        self.refresh_scoped(known) || changed
    }

    fn refresh_scoped(&self, known: &mut Known) -> bool {
        let scoped_sig = sig(&self.tokens_path);
        if scoped_sig == known.scoped_sig {
            return false;
        }
        known.scoped_sig = scoped_sig;
        known.scoped = tokens::read(&self.tokens_path).unwrap_or_else(|e| {
            // Fail closed: an unreadable file grants nothing.
            tracing::error!(error = %e, "cannot read the scoped tokens; accepting none");
            Vec::new()
        });
        self.bump();
        true
    }

    /// Tells open streams to re-check. Called with the `known` lock held.
    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The end of a stream's right to exist: see [`Revocation::revoked`].
pub struct Revocation {
    credentials: Arc<Credentials>,
    changes: watch::Receiver<u64>,
    grant: Grant,
}

impl Revocation {
    /// Resolves once the credential this stream was opened with is no
    /// longer accepted (the main token rotated, the scoped token revoked);
    /// pending for as long as it is. Cancel-safe, so a stream loop can
    /// `select!` on it every turn.
    pub async fn revoked(&mut self) {
        loop {
            // The generation, not just "changed since subscribing": a
            // change between the request's check and this watch counts.
            let current = *self.changes.borrow_and_update();
            if current != self.grant.generation {
                if !self.credentials.accepts(&self.grant) {
                    return;
                }
                self.grant.generation = current;
            }
            if self.changes.changed().await.is_err() {
                // The credentials are gone, so nothing can change anymore.
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_up_rotation_creation_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let (main_path, scoped_path) = (dir.path().join("token"), dir.path().join("tokens.json"));
        let creds = Credentials::open(main_path.clone(), scoped_path.clone()).unwrap();
        let old = creds.main_token();
        assert_eq!(creds.identify(&old), Some(Caller::Main));
        assert_eq!(creds.identify("nope"), None);

        // Created after start: recognised on first use (an unknown token
        // triggers a re-read).
        let (t, secret) = tokens::create(&scoped_path, Scope::Notify, None).unwrap();
        assert_eq!(
            creds.identify(&secret),
            Some(Caller::Scoped {
                id: t.id.clone(),
                scope: Scope::Notify
            })
        );
        // Rotated: the new token works at once, the old one no more.
        let new = auth::new_token();
        auth::write_token(&main_path, &new).unwrap();
        assert_eq!(creds.identify(&new), Some(Caller::Main));
        assert_eq!(creds.identify(&old), None);
        assert_eq!(creds.main_token(), new);
        // Revoked: refused at once.
        tokens::revoke(&scoped_path, &t.id).unwrap();
        assert_eq!(creds.identify(&secret), None);
    }

    /// A grant taken before a change is re-checked even if its watch is
    /// made after the change; a change that keeps it accepted does not end
    /// it; a rotation or a revocation does.
    #[tokio::test]
    async fn revocation_follows_rotation_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let (main_path, scoped_path) = (dir.path().join("token"), dir.path().join("tokens.json"));
        let creds = Arc::new(Credentials::open(main_path.clone(), scoped_path.clone()).unwrap());
        let main = creds.grant(&creds.main_token()).unwrap();
        let (t, secret) = tokens::create(&scoped_path, Scope::Notify, None).unwrap();
        let scoped = creds.grant(&secret).unwrap();
        let (mut main_watch, mut scoped_watch) =
            (creds.revocation(main.clone()), creds.revocation(scoped));
        let still_open = |w: &mut Revocation| {
            use futures_util::FutureExt;
            w.revoked().now_or_never().is_none()
        };
        assert!(still_open(&mut main_watch) && still_open(&mut scoped_watch));

        // Another token created: both are still accepted.
        tokens::create(&scoped_path, Scope::Notify, None).unwrap();
        creds.watch_once();
        assert!(still_open(&mut main_watch) && still_open(&mut scoped_watch));

        // Rotated: the main grant ends, even one whose watch came later.
        auth::write_token(&main_path, &auth::new_token()).unwrap();
        creds.watch_once();
        let mut late = creds.revocation(main);
        assert!(!still_open(&mut main_watch) && !still_open(&mut late));
        assert!(still_open(&mut scoped_watch));

        tokens::revoke(&scoped_path, &t.id).unwrap();
        creds.watch_once();
        assert!(!still_open(&mut scoped_watch));
    }
}
