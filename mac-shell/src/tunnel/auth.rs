//! SSH user authentication: ssh-agent first, then identity files.
//!
//! Decrypted keys are kept in memory for the life of the tunnel, so that a
//! reconnect after sleep does not ask for the passphrase again. A failure
//! names every method tried; the caller treats it as permanent (no retry).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::link::LinkHandler;
use super::target::Hop;
use super::{Prompter, TunnelError};

/// Environment variable holding the passphrase of encrypted identity files,
/// for headless use and tests.
pub const PASSPHRASE_ENV: &str = "LOOPCHAT_SSH_PASSPHRASE";

/// Identity files tried when neither the command line nor the config names
/// one, in `ssh`'s order (the kinds russh can use).
const DEFAULT_IDENTITIES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Logs a hop in; owns the cache of decrypted keys.
pub(crate) struct Authenticator {
    prompter: Arc<dyn Prompter>,
    keys: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

enum KeyLoad {
    Loaded(Arc<PrivateKey>),
    Skipped(String),
}

impl Authenticator {
    pub fn new(prompter: Arc<dyn Prompter>) -> Self {
        Self {
            prompter,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub async fn authenticate(
        &self,
        handle: &mut Handle<LinkHandler>,
        hop: &Hop,
    ) -> Result<(), TunnelError> {
        let mut tried = Vec::new();
        let fail = |e: russh::Error| TunnelError::Handshake {
            target: hop.endpoint(),
            reason: e.to_string(),
        };
        // RSA keys sign with the best hash the server announced (rsa-sha2-*);
        // `None` would fall back to SHA-1, which OpenSSH refuses.
        let rsa_hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(fail)?
            .flatten();

        let mut offered: Vec<PublicKey> = Vec::new();
        if self
            .try_agent(handle, hop, rsa_hash, &mut tried, &mut offered)
            .await?
        {
            return Ok(());
        }

        let explicit = !hop.identity_files.is_empty();
        let candidates: Vec<PathBuf> = if explicit {
            hop.identity_files.clone()
        } else {
            let ssh_dir = std::env::home_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".ssh");
            DEFAULT_IDENTITIES.iter().map(|n| ssh_dir.join(n)).collect()
        };
        for path in candidates {
            if !path.exists() {
                if explicit {
                    tried.push(format!("{} (no such file)", path.display()));
                }
                continue;
            }
            let key = match self.load_key(&path).await {
                KeyLoad::Loaded(k) => k,
                KeyLoad::Skipped(why) => {
                    tried.push(format!("{} ({why})", path.display()));
                    continue;
                }
            };
            // The agent already offered this key: offering it again only
            // spends one of the server's MaxAuthTries.
            if offered
                .iter()
                .any(|o| o.key_data() == key.public_key().key_data())
            {
                continue;
            }
            let result = handle
                .authenticate_publickey(
                    hop.user.clone(),
                    PrivateKeyWithHashAlg::new(key.clone(), rsa_hash),
                )
                .await
                .map_err(fail)?;
            if result.success() {
                tracing::info!(hop = %hop.label(), key = %path.display(), "authenticated with identity file");
                return Ok(());
            }
            offered.push(key.public_key().clone());
            tried.push(format!("{} (refused by the server)", path.display()));
            if no_more_publickey(&result) {
                break;
            }
        }
        if !explicit && !tried.iter().any(|t| !t.starts_with("ssh-agent")) {
            tried.push(
                "default identity files ~/.ssh/id_ed25519, id_ecdsa, id_rsa (none found)".into(),
            );
        }
        Err(TunnelError::Auth {
            user: hop.user.clone(),
            host: hop.endpoint(),
            tried,
        })
    }

    /// Offers every key the agent holds. Ok(true) when one was accepted.
    async fn try_agent(
        &self,
        handle: &mut Handle<LinkHandler>,
        hop: &Hop,
        rsa_hash: Option<HashAlg>,
        tried: &mut Vec<String>,
        offered: &mut Vec<PublicKey>,
    ) -> Result<bool, TunnelError> {
        if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty()) {
            return Ok(false);
        }
        let mut agent = match AgentClient::connect_env().await {
            Ok(a) => a,
            Err(e) => {
                tried.push(format!("ssh-agent (unreachable: {e})"));
                return Ok(false);
            }
        };
        let identities = match agent.request_identities().await {
            Ok(ids) => ids,
            Err(e) => {
                tried.push(format!("ssh-agent (could not list keys: {e})"));
                return Ok(false);
            }
        };
        let keys: Vec<PublicKey> = identities
            .into_iter()
            .filter_map(|id| match id {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .collect();
        if keys.is_empty() {
            tried.push("ssh-agent (holds no keys)".into());
            return Ok(false);
        }
        let mut refused = 0;
        for key in keys {
            let result = handle
                .authenticate_publickey_with(hop.user.clone(), key.clone(), rsa_hash, &mut agent)
                .await;
            match result {
                Ok(r) if r.success() => {
                    tracing::info!(hop = %hop.label(), "authenticated with ssh-agent");
                    return Ok(true);
                }
                Ok(r) => {
                    refused += 1;
                    offered.push(key);
                    if no_more_publickey(&r) {
                        break;
                    }
                }
                Err(e) => {
                    tried.push(format!("ssh-agent (signing failed: {e})"));
                    return Ok(false);
                }
            }
        }
        tried.push(format!(
            "ssh-agent ({refused} key{} refused by the server)",
            if refused == 1 { "" } else { "s" }
        ));
        Ok(false)
    }

    /// Loads an identity file, asking for its passphrase if it is
    /// encrypted: `LOOPCHAT_SSH_PASSPHRASE` first, then the prompter.
    async fn load_key(&self, path: &Path) -> KeyLoad {
        if let Some(key) = self.cached(path) {
            return KeyLoad::Loaded(key);
        }
        let text = match tokio::fs::read_to_string(path).await {
            Ok(t) => t,
            Err(e) => return KeyLoad::Skipped(format!("unreadable: {e}")),
        };
        let key = match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let passphrase = match std::env::var(PASSPHRASE_ENV) {
                    Ok(p) => Some(p),
                    Err(_) => self.prompter.passphrase(path.to_path_buf()).await,
                };
                let Some(passphrase) = passphrase else {
                    return KeyLoad::Skipped("encrypted, no passphrase given".into());
                };
                match russh::keys::decode_secret_key(&text, Some(&passphrase)) {
                    Ok(k) => k,
                    Err(_) => return KeyLoad::Skipped("encrypted, wrong passphrase".into()),
                }
            }
            Err(e) => return KeyLoad::Skipped(format!("not a usable private key: {e}")),
        };
        let key = Arc::new(key);
        self.keys.lock().insert(path.to_path_buf(), key.clone());
        KeyLoad::Loaded(key)
    }

    fn cached(&self, path: &Path) -> Option<Arc<PrivateKey>> {
        self.keys.lock().get(path).cloned()
    }
}

/// The server no longer accepts public keys (e.g. too many attempts).
fn no_more_publickey(result: &AuthResult) -> bool {
    match result {
        AuthResult::Success => false,
        AuthResult::Failure {
            remaining_methods, ..
        } => !remaining_methods.contains(&russh::MethodKind::PublicKey),
    }
}
