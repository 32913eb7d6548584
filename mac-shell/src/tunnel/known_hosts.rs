//! OpenSSH `known_hosts`: what key each server is expected to show.
//!
//! Lines are parsed by `ssh-key` (through russh). What it does not do is
//! kept here: matching a host against hashed names (`|1|salt|hash`) and
//! comma-separated patterns with wildcards and negations, and remembering
//! each line's number, because a refusal must say *which* line holds the
//! expected key.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use russh::keys::ssh_key::known_hosts::{Entry as KnownEntry, HostPatterns, Marker};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// What known_hosts says about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line lists this very key for this host.
    Known,
    /// The host is listed with another key: refuse.
    Changed(Entry),
    /// The key is listed as `@revoked`: refuse.
    Revoked(Entry),
    /// The host is not listed at all.
    Unknown,
}

/// One known_hosts line that matched the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The line as written (hashed names stay hashed).
    pub text: String,
    /// `SHA256:…` of the key on that line.
    pub fingerprint: String,
}

/// A known_hosts file. Read afresh at every check, so that an entry the user
/// removes to accept a new key takes effect on the next reconnect.
#[derive(Debug, Clone)]
pub(crate) struct KnownHosts {
    path: PathBuf,
}

/// The name a host has in known_hosts: `host` on port 22, `[host]:port`
/// elsewhere.
pub(crate) fn host_label(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:…`, as `ssh` and `ssh-keygen -l` print it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl KnownHosts {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// `~/.ssh/known_hosts`.
    pub fn default_path() -> PathBuf {
        std::env::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".ssh")
            .join("known_hosts")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` offered by `host:port`. A missing file means every host
    /// is unknown.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<Verdict> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
            Err(e) => return Err(e),
        };
        Ok(check_text(&text, host, port, key))
    }

    /// The key algorithms known for this host, so that key exchange can ask
    /// the server for a key we can check rather than a new kind of key.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<russh::keys::Algorithm> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let label = host_label(host, port);
        parse_lines(&text)
            .filter(|l| l.entry.marker().is_none() && l.matches(&label))
            .map(|l| l.entry.public_key().algorithm())
            .collect()
    }

    /// Appends `[host]:port key` (what `ssh` does with
    /// `StrictHostKeyChecking=accept-new`), creating the file and its
    /// directory if needed.
    pub fn append(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let existing = std::fs::read(&self.path).unwrap_or_default();
        let mut line = String::new();
        if existing.last().is_some_and(|b| *b != b'\n') {
            line.push('\n');
        }
        let openssh = key
            .to_openssh()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // The key's comment (if any) is the server's business, not ours.
        let mut parts = openssh.split_whitespace();
        let (Some(alg), Some(data)) = (parts.next(), parts.next()) else {
            return Err(std::io::Error::other("cannot encode the host key"));
        };
        line.push_str(&format!("{} {alg} {data}\n", host_label(host, port)));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    }
}

fn check_text(text: &str, host: &str, port: u16, offered: &PublicKey) -> Verdict {
    let label = host_label(host, port);
    let mut changed = None;
    for line in parse_lines(text) {
        if !line.matches(&label) {
            continue;
        }
        let recorded = line.entry.public_key();
        match line.entry.marker() {
            Some(Marker::Revoked) if recorded.key_data() == offered.key_data() => {
                return Verdict::Revoked(line.report());
            }
            Some(_) => continue,
            None => {}
        }
        if recorded.key_data() == offered.key_data() {
            return Verdict::Known;
        }
        // A different key for this host: of the same kind it is a changed
        // key; of another kind it may be a server that gained a key type —
        // but accepting it unasked would let an attacker pick a key type we
        // have no record of, so it is refused the same way (as ssh does
        // once the host is known). The first such line is the one reported.
        if changed.is_none() {
            changed = Some(line.report());
        }
    }
    match changed {
        Some(entry) => Verdict::Changed(entry),
        None => Verdict::Unknown,
    }
}

struct Line<'a> {
    number: usize,
    text: &'a str,
    entry: KnownEntry,
}

impl Line<'_> {
    fn report(&self) -> Entry {
        Entry {
            line: self.number,
            text: self.text.trim().to_owned(),
            fingerprint: fingerprint(self.entry.public_key()),
        }
    }

    /// OpenSSH rules: a hashed name matches the exact label; otherwise the
    /// comma-separated patterns match if one positive pattern matches and
    /// no negated one does.
    fn matches(&self, label: &str) -> bool {
        let patterns = match self.entry.host_patterns() {
            HostPatterns::HashedName { salt, hash } => return hashed_matches(salt, hash, label),
            HostPatterns::Patterns(patterns) => patterns,
        };
        let label = label.to_ascii_lowercase();
        let mut matched = false;
        for pattern in patterns {
            let pattern = pattern.to_ascii_lowercase();
            if let Some(negated) = pattern.strip_prefix('!') {
                if wildcard_match(negated, &label) {
                    return false;
                }
            } else if wildcard_match(&pattern, &label) {
                matched = true;
            }
        }
        matched
    }
}

/// The lines that hold a key ssh-key can read; others (comments, unknown key
/// types, broken lines) are skipped, as ssh skips them.
fn parse_lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        // ssh-key splits fields on single spaces; ssh allows any run of
        // blanks.
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let entry = fields.join(" ").parse::<KnownEntry>().ok()?;
        Some(Line {
            number: i + 1,
            text: raw,
            entry,
        })
    })
}

/// A hashed name is `HMAC-SHA1(salt, label)`.
fn hashed_matches(salt: &[u8], hash: &[u8; 20], label: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.update(label.as_bytes());
    mac.verify_slice(hash).is_ok()
}

/// `*` and `?` globbing, as in ssh's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut star_ti) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            star_ti = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            star_ti += 1;
            ti = star_ti;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    // Two ed25519 keys (public halves only).
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn hashed(label: &str) -> String {
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(label.as_bytes());
        format!(
            "|1|{}|{}",
            BASE64.encode(salt),
            BASE64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn plain_port_and_changed() {
        let text = format!(
            "# c\n\nexample.org ssh-ed25519 {KEY_A}\n[example.org]:2222 ssh-ed25519 {KEY_B} x\n"
        );
        assert_eq!(
            check_text(&text, "example.org", 22, &key(KEY_A)),
            Verdict::Known
        );
        assert_eq!(
            check_text(&text, "example.org", 2222, &key(KEY_B)),
            Verdict::Known
        );
        match check_text(&text, "example.org", 2222, &key(KEY_A)) {
            Verdict::Changed(e) => {
                assert_eq!(e.line, 4);
                assert!(e.text.starts_with("[example.org]:2222"));
                assert_eq!(e.fingerprint, fingerprint(&key(KEY_B)));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            check_text(&text, "other", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entries() {
        let text = format!("{} ssh-ed25519 {KEY_A}\n", hashed("[10.0.0.5]:2222"));
        assert_eq!(
            check_text(&text, "10.0.0.5", 2222, &key(KEY_A)),
            Verdict::Known
        );
        assert!(matches!(
            check_text(&text, "10.0.0.5", 2222, &key(KEY_B)),
            Verdict::Changed(_)
        ));
        assert_eq!(
            check_text(&text, "10.0.0.5", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn patterns_markers() {
        let text = format!(
            "*.example.org,!bad.example.org ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_B}\n@cert-authority * ssh-ed25519 {KEY_A}\n"
        );
        assert_eq!(
            check_text(&text, "a.example.org", 22, &key(KEY_A)),
            Verdict::Known
        );
        assert_eq!(
            check_text(&text, "bad.example.org", 22, &key(KEY_A)),
            Verdict::Unknown
        );
        assert!(matches!(
            check_text(&text, "x", 22, &key(KEY_B)),
            Verdict::Revoked(_)
        ));
    }

    #[test]
    fn append_then_known() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(dir.path().join("sub").join("known_hosts"));
        assert_eq!(kh.check("h", 2222, &key(KEY_A)).unwrap(), Verdict::Unknown);
        kh.append("h", 2222, &key(KEY_A)).unwrap();
        kh.append("h", 22, &key(KEY_B)).unwrap();
        assert_eq!(kh.check("h", 2222, &key(KEY_A)).unwrap(), Verdict::Known);
        assert_eq!(kh.check("h", 22, &key(KEY_B)).unwrap(), Verdict::Known);
        let text = std::fs::read_to_string(kh.path()).unwrap();
        assert!(text.starts_with("[h]:2222 ssh-ed25519 "), "{text}");
        assert_eq!(kh.known_algorithms("h", 2222).len(), 1);
    }

    #[test]
    fn blanks_comments_and_unreadable_lines() {
        // Tabs and runs of blanks between fields, a key comment, and a line
        // whose key cannot be read (skipped, as ssh skips it; line numbers
        // still count it).
        let text = format!(
            "example.org\tssh-ed25519  AAAAbroken\nexample.org\t ssh-ed25519\t{KEY_B}  a comment\n"
        );
        match check_text(&text, "example.org", 22, &key(KEY_A)) {
            Verdict::Changed(e) => assert_eq!(e.line, 2),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            check_text(&text, "EXAMPLE.org", 22, &key(KEY_B)),
            Verdict::Known
        );
    }

    #[test]
    fn globbing() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("[h]:*", "[h]:2222"));
        assert!(!wildcard_match("a*d", "abc"));
    }
}
