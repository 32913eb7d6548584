//! `tokens.json`: scoped tokens (today: notify-only) for scripts and cron
//! jobs that should be able to alert the user and do nothing else.
//!
//! Only a SHA-256 of each secret is stored, so the file (0600, rewritten
//! atomically) does not hand out working tokens if it leaks; the secret is
//! shown once, when it is created. The `loopchat token` commands edit the
//! file directly, without a running relay; the relay notices changes (see
//! [`crate::credentials`]). Concurrent editors serialize on a lock file.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::durable::write_atomically;

/// Prefix of scoped secrets, so a leaked one is recognisable (and
/// secret scanners can match it).
const SECRET_PREFIX: &str = "lcn_";
const FILE_VERSION: u32 = 1;

/// What a scoped token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /webchat/notify` and nothing else.
    Notify,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
        }
    }
}

/// One scoped token as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopedToken {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub scope: Scope,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    pub created_at: String,
}

impl ScopedToken {
    /// Does `presented` hash to this token? Constant time in the hash.
    pub fn matches_hash(&self, presented_hash: &str) -> bool {
        self.sha256
            .as_bytes()
            .ct_eq(presented_hash.as_bytes())
            .into()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<ScopedToken>,
}

/// Hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The scoped tokens in `path`; none if the file does not exist.
pub fn read(path: &Path) -> io::Result<Vec<ScopedToken>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let file: TokensFile = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a valid token file: {e}", path.display()),
        )
    })?;
    Ok(file.tokens)
}

fn write(path: &Path, tokens: Vec<ScopedToken>) -> io::Result<()> {
    let file = TokensFile {
        version: FILE_VERSION,
        tokens,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    write_atomically(path, &bytes).map(drop)
}

/// Creates a token; returns it with its secret (shown once, never stored).
pub fn create(
    path: &Path,
    scope: Scope,
    name: Option<String>,
) -> io::Result<(ScopedToken, String)> {
    let _lock = FileLock::acquire(path)?;
    let mut tokens = read(path)?;
    let secret = format!("{SECRET_PREFIX}{}", crate::auth::new_token());
    let mut id_bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let token = ScopedToken {
        id: id_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        name,
        scope,
        sha256: hash_secret(&secret),
        created_at: crate::clock::now_rfc3339(),
    };
    tokens.push(token.clone());
    write(path, tokens)?;
    Ok((token, secret))
}

/// Removes the token `id`; `false` if there is none.
pub fn revoke(path: &Path, id: &str) -> io::Result<bool> {
    let _lock = FileLock::acquire(path)?;
    let mut tokens = read(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.id != id);
    if tokens.len() == before {
        return Ok(false);
    }
    write(path, tokens)?;
    Ok(true)
}

/// An exclusive `flock` on `<path>.lock`, held while a command rewrites
/// the file, so two concurrent `loopchat token` runs do not lose an edit.
struct FileLock {
    _file: fs::File,
}

impl FileLock {
    fn acquire(path: &Path) -> io::Result<Self> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(name)?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_list_revoke_store_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        assert!(read(&path).unwrap().is_empty());
        let (a, secret_a) = create(&path, Scope::Notify, Some("cron".into())).unwrap();
        let (b, _) = create(&path, Scope::Notify, None).unwrap();
        assert!(secret_a.starts_with("lcn_"));
        assert_ne!(a.id, b.id);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret_a), "no plaintext secret on disk");
        assert!(text.contains(&hash_secret(&secret_a)));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let listed = read(&path).unwrap();
        assert_eq!(listed, vec![a.clone(), b.clone()]);
        assert!(listed[0].matches_hash(&hash_secret(&secret_a)));
        assert!(!listed[1].matches_hash(&hash_secret(&secret_a)));
        assert!(revoke(&path, &a.id).unwrap());
        assert!(!revoke(&path, &a.id).unwrap());
        assert_eq!(read(&path).unwrap(), vec![b]);
    }
}
