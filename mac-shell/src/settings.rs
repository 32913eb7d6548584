//! `$LOOPCHAT_HOME/shell.json`: what the shell remembers between runs.
//!
//! Small on purpose: the window size, the alerts pause and the local port of
//! each remote host's tunnel. The pause flag is read by desktop
//! notifications, so it has a plain accessor that needs no window. Fields
//! this version does not know are kept on rewrite, so an older shell does
//! not erase a newer one's settings, and every change is applied to what the
//! file holds at that moment ([`Settings::save_with`]), so a shell does not
//! erase what another one (or its own other thread) wrote since it started.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name inside the loopchat home.
pub const SETTINGS_FILE: &str = "shell.json";

/// The window size the user left the window at (logical pixels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSize {
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<WindowSize>,
    #[serde(default)]
    alerts_paused: bool,
    /// Remote destination as given (`--remote`) → the tunnel's local port,
    /// so that the page's origin stays the same across restarts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tunnel_ports: BTreeMap<String, u16>,
    /// The welcome tour last completed (or skipped), for which versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    onboarding: Option<Onboarding>,
    /// Unknown fields, preserved on rewrite.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// What the welcome tour was completed for: it is shown again when either
/// version differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Onboarding {
    pub welcome_version: u32,
    pub relay_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The shell's settings, bound to the file they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    path: PathBuf,
    file: SettingsFile,
}

impl Settings {
    /// Reads `home/shell.json`. A missing file gives defaults; an unreadable
    /// or corrupt one too (with a warning) — settings are a convenience and
    /// must never keep the window from opening.
    pub fn load(home: &Path) -> Self {
        Self::load_path(home.join(SETTINGS_FILE))
    }

    fn load_path(path: PathBuf) -> Self {
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt shell settings");
                SettingsFile::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SettingsFile::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read shell settings");
                SettingsFile::default()
            }
        };
        Self { path, file }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn window_size(&self) -> Option<WindowSize> {
        self.file.window.filter(|s| {
            s.width.is_finite() && s.height.is_finite() && s.width >= 200.0 && s.height >= 150.0
        })
    }

    pub fn set_window_size(&mut self, size: WindowSize) {
        self.file.window = Some(size);
    }

    /// Whether desktop alerts are paused (menu "Toggle alerts pause").
    pub fn alerts_paused(&self) -> bool {
        self.file.alerts_paused
    }

    pub fn set_alerts_paused(&mut self, paused: bool) {
        self.file.alerts_paused = paused;
    }

    /// Whether the welcome tour was completed for these versions.
    pub fn onboarding_done(&self, welcome_version: u32, relay_version: &str) -> bool {
        self.file.onboarding.as_ref().is_some_and(|o| {
            o.welcome_version == welcome_version && o.relay_version == relay_version
        })
    }

    pub fn set_onboarding_done(&mut self, welcome_version: u32, relay_version: &str) {
        self.file.onboarding = Some(Onboarding {
            welcome_version,
            relay_version: relay_version.to_owned(),
        });
    }

    /// The local port remembered for the tunnel to `destination`.
    pub fn tunnel_port(&self, destination: &str) -> Option<u16> {
        self.file
            .tunnel_ports
            .get(destination)
            .copied()
            .filter(|p| *p != 0)
    }

    pub fn set_tunnel_port(&mut self, destination: &str, port: u16) {
        self.file.tunnel_ports.insert(destination.to_owned(), port);
    }

    /// Applies `change` here and to the file as it is now (re-read), then
    /// writes it: a change never reverts what another writer saved since
    /// this value was loaded.
    pub fn save_with(&mut self, change: impl Fn(&mut Settings)) -> Result<(), SettingsError> {
        change(self);
        let mut fresh = Self::load_path(self.path.clone());
        change(&mut fresh);
        fresh.save()?;
        *self = fresh;
        Ok(())
    }

    /// Writes the file atomically (`loopchat_proto::home::write_atomically`) so that a crash or a
    /// second shell writing at the same time never leaves half a file.
    pub fn save(&self) -> Result<(), SettingsError> {
        let err = |source| SettingsError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut body = serde_json::to_vec_pretty(&self.file).map_err(|e| err(e.into()))?;
        body.push(b'\n');
        loopchat_proto::home::write_atomically(&self.path, &body)
            .map(drop)
            .map_err(err)
    }
}

/// Whether alerts are paused for the shell of this loopchat home; the entry
/// point for code that has no [`Settings`] at hand (notifications).
pub fn alerts_paused(home: &Path) -> bool {
    Settings::load(home).alerts_paused()
}

/// The tunnel port for `destination` in `home`'s settings: the one
/// remembered, else whatever the tunnel got (`bound`) is remembered now. A
/// remembered port that was taken (another shell's tunnel to the same host,
/// most likely) is kept for next time rather than replaced by a stopgap.
pub fn remember_tunnel_port(home: &Path, destination: &str, bound: u16) {
    let mut settings = Settings::load(home);
    if settings.tunnel_port(destination).is_some() {
        return;
    }
    if let Err(e) = settings.save_with(|s| {
        if s.tunnel_port(destination).is_none() {
            s.set_tunnel_port(destination, bound);
        }
    }) {
        tracing::warn!(error = %e, "cannot remember the tunnel port");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_missing_or_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(dir.path());
        assert_eq!(s.window_size(), None);
        assert!(!s.alerts_paused());
        std::fs::write(dir.path().join(SETTINGS_FILE), "{not json").unwrap();
        let s = Settings::load(dir.path());
        assert!(!s.alerts_paused());
    }

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            r#"{"alertsPaused":false,"futureThing":{"a":1}}"#,
        )
        .unwrap();
        let mut s = Settings::load(dir.path());
        s.set_alerts_paused(true);
        s.set_window_size(WindowSize {
            width: 900.0,
            height: 700.0,
        });
        s.save().unwrap();
        let text = std::fs::read_to_string(dir.path().join(SETTINGS_FILE)).unwrap();
        assert!(text.contains("futureThing"), "{text}");
        let s = Settings::load(dir.path());
        assert!(s.alerts_paused());
        assert!(alerts_paused(dir.path()));
        assert_eq!(
            s.window_size(),
            Some(WindowSize {
                width: 900.0,
                height: 700.0
            })
        );
    }

    #[test]
    fn save_with_keeps_what_another_writer_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut mine = Settings::load(dir.path());
        remember_tunnel_port(dir.path(), "u@h:22", 40111);
        // An older value of ours must not erase it.
        mine.save_with(|s| s.set_alerts_paused(true)).unwrap();
        let s = Settings::load(dir.path());
        assert!(s.alerts_paused());
        assert_eq!(s.tunnel_port("u@h:22"), Some(40111));
        // Remembered once: a stopgap port does not replace it.
        remember_tunnel_port(dir.path(), "u@h:22", 40222);
        remember_tunnel_port(dir.path(), "other", 40333);
        let s = Settings::load(dir.path());
        assert_eq!(s.tunnel_port("u@h:22"), Some(40111));
        assert_eq!(s.tunnel_port("other"), Some(40333));
        assert_eq!(s.tunnel_port("nobody"), None);
    }

    #[test]
    fn onboarding_is_done_for_both_versions_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::load(dir.path());
        assert!(!s.onboarding_done(1, "0.1.0"));
        s.save_with(|s| s.set_onboarding_done(1, "0.1.0")).unwrap();
        let s = Settings::load(dir.path());
        assert!(s.onboarding_done(1, "0.1.0"));
        assert!(!s.onboarding_done(2, "0.1.0"));
        assert!(!s.onboarding_done(1, "0.2.0"));
    }

    #[test]
    fn absurd_sizes_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::load(dir.path());
        s.set_window_size(WindowSize {
            width: 10.0,
            height: f64::NAN,
        });
        assert_eq!(s.window_size(), None);
    }
}
