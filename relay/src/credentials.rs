//! The tokens a running relay accepts: the main token (`$HOME/token`, full
//! access) and the scoped tokens of `tokens.json`, kept in step with the
//! files so that `loopchat token rotate|create|revoke` take effect without a
//! restart.
//!
//! The files are looked at (one `stat` each) at most once a second, and at
//! once when a request presents an unknown token — which is exactly the
//! moment a just-created token, or the just-rotated main token, is first
//! used. A scoped token is confirmed against `tokens.json` on every use
//! (they are rate-limited to about one post a second, so the `stat` is
//! free), which makes a revocation take effect at once; the previous main
//! token stops working within a second of a rotation.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::auth;
use crate::notify::tokens::{self, Scope, ScopedToken};

/// Changes to the token files are looked for at most this often (except on
/// an unknown token).
const RECHECK: Duration = Duration::from_secs(1);

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
    main_sig: Option<FileSig>,
    scoped: Vec<ScopedToken>,
    scoped_sig: Option<FileSig>,
    checked: Instant,
}

pub struct Credentials {
    token_path: PathBuf,
    tokens_path: PathBuf,
    known: Mutex<Known>,
}

impl Credentials {
    /// Reads (creating on first start) the main token and the scoped tokens.
    pub fn open(token_path: PathBuf, tokens_path: PathBuf) -> io::Result<Self> {
        let main = auth::load_or_create_token(&token_path)?;
        let scoped = tokens::read(&tokens_path)?;
        Ok(Self {
            known: Mutex::new(Known {
                main,
                main_sig: sig(&token_path),
                scoped,
                scoped_sig: sig(&tokens_path),
                checked: Instant::now(),
            }),
            token_path,
            tokens_path,
        })
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The main token as of now (it changes with `loopchat token rotate`).
    pub fn main_token(&self) -> String {
        let mut known = self.known();
        self.refresh(&mut known, false);
        known.main.clone()
    }

    /// Who presents `token`, if anyone.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let mut known = self.known();
        self.refresh(&mut known, false);
        match Self::lookup(&known, token) {
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
        true
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
}
