//! `[[checks]]` in `config.toml`: what to run, when, and when to alert.
//!
//! Schedules and durations are parsed while the file is deserialized, so a
//! bad cron expression is refused with toml's own "line N, column M" and
//! the relay does not start.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Names end up in URLs, ids (`check:<name>`) and file names.
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    /// The program and its arguments, run without a shell.
    #[serde(default)]
    pub command: Vec<String>,
    /// A shell line, run as `sh -c LINE` (instead of `command`).
    #[serde(default)]
    pub shell: Option<String>,
    /// `every = "5m"` (s, m, h, d; combinable: `1h30m`).
    #[serde(default)]
    pub every: Option<Every>,
    /// `cron = "*/5 * * * *"`, in local time (5 fields, or 6 with seconds).
    #[serde(default)]
    pub cron: Option<CronSpec>,
    /// Longest run before its process group is killed; default 60 s.
    #[serde(default = "default_timeout")]
    pub timeout: Every,
    /// Working directory; default the loopchat home.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub alert: AlertRule,
    /// 1 to 5; default 4 (a failing check matters).
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_timeout() -> Every {
    Every(Duration::from_secs(60))
}

fn default_priority() -> u8 {
    4
}

/// When a run raises (or updates) the check's alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertRule {
    /// A failing run raises it; the next passing run resolves it in place.
    #[default]
    Failure,
    /// Whenever the output differs from the previous run's.
    Change,
    /// After every run.
    Always,
}

/// A duration written as `90s`, `5m`, `1h30m`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Duration);

impl FromStr for Every {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a duration: write e.g. \"30s\", \"5m\", \"1h30m\" or \"1d\"");
        let mut total = 0u64;
        let mut digits = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = digits.parse().map_err(|_| bad())?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            digits.clear();
        }
        if !digits.is_empty() || total == 0 {
            return Err(bad());
        }
        Ok(Self(Duration::from_secs(total)))
    }
}

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s >= size {
                write!(f, "{}{unit}", s / size)?;
                s %= size;
            }
        }
        if s > 0 || self.0.as_secs() == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// A cron expression, parsed by `croner`.
#[derive(Debug, Clone)]
pub struct CronSpec {
    pub text: String,
    pub cron: croner::Cron,
}

impl<'de> Deserialize<'de> for CronSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let cron = croner::Cron::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a cron expression ({e}): write 5 fields, minute hour \
                 day-of-month month day-of-week, e.g. \"*/5 * * * *\""
            ))
        })?;
        Ok(Self { text, cron })
    }
}

/// When a check runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<CronSpec>),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(d) => write!(f, "every {}", Every(*d)),
            Self::Cron(c) => write!(f, "cron {}", c.text),
        }
    }
}

impl CheckConfig {
    pub fn schedule(&self) -> Option<Schedule> {
        match (&self.every, &self.cron) {
            (Some(e), None) => Some(Schedule::Every(e.0)),
            (None, Some(c)) => Some(Schedule::Cron(Box::new(c.clone()))),
            _ => None,
        }
    }

    /// The argv to spawn: `command`, or `sh -c shell`.
    pub fn argv(&self) -> Vec<String> {
        match &self.shell {
            Some(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
            None => self.command.clone(),
        }
    }

    /// Rules the types alone do not express.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.starts_with('.');
        if !name_ok {
            return Err(format!(
                "check name {name:?} must be 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, '.', '_' \
                 and '-', not starting with '.'"
            ));
        }
        match (self.command.is_empty(), &self.shell) {
            (false, None) | (true, Some(_)) => {}
            _ => {
                return Err(format!(
                    "check {name:?} needs exactly one of command (an argv list) and shell (a line \
                     for sh -c)"
                ));
            }
        }
        if self.shell.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(format!("check {name:?}: shell is empty"));
        }
        if self.schedule().is_none() {
            return Err(format!(
                "check {name:?} needs exactly one of every (e.g. \"5m\") and cron (e.g. \"*/5 * * * *\")"
            ));
        }
        if !(1..=5).contains(&self.priority) {
            return Err(format!(
                "check {name:?}: priority is 1 to 5, not {}",
                self.priority
            ));
        }
        if let Some(cwd) = &self.cwd
            && !cwd.is_absolute()
        {
            return Err(format!(
                "check {name:?}: cwd must be an absolute path, not {}",
                cwd.display()
            ));
        }
        Ok(())
    }
}

/// Every check's own rules, and names unique.
pub fn check_all(checks: &[CheckConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for c in checks {
        c.check()?;
        if !seen.insert(c.name.as_str()) {
            return Err(format!("two checks are named {:?}", c.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        checks: Vec<CheckConfig>,
    }

    #[test]
    fn durations_and_schedules() {
        for (s, secs) in [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86_400)] {
            assert_eq!(s.parse::<Every>().unwrap().0.as_secs(), secs, "{s}");
            assert_eq!(Every(Duration::from_secs(secs)).to_string(), s);
        }
        for bad in ["", "5", "m", "0s", "5x", "-5m", "5 m"] {
            assert!(bad.parse::<Every>().is_err(), "{bad:?}");
        }
        let f: File = toml::from_str(
            "[[checks]]\nname = \"disk\"\ncommand = [\"df\"]\nevery = \"5m\"\n\
             [[checks]]\nname = \"web\"\nshell = \"curl -f x\"\ncron = \"*/5 * * * *\"\nalert = \"change\"\n",
        )
        .unwrap();
        assert!(check_all(&f.checks).is_ok());
        assert_eq!(f.checks[0].schedule().unwrap().to_string(), "every 5m");
        assert_eq!(
            f.checks[1].schedule().unwrap().to_string(),
            "cron */5 * * * *"
        );
        assert_eq!(f.checks[1].argv(), ["/bin/sh", "-c", "curl -f x"]);
        assert_eq!(f.checks[1].alert, AlertRule::Change);
        assert_eq!(f.checks[0].timeout.0, Duration::from_secs(60));
    }

    #[test]
    fn a_bad_cron_names_its_line() {
        let err = toml::from_str::<File>(
            "[[checks]]\nname = \"a\"\ncommand = [\"true\"]\n\ncron = \"61 * * * *\"\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("not a cron expression"), "{err}");
    }

    #[test]
    fn rules() {
        for (toml, says) in [
            (
                "name = \"a b\"\ncommand = [\"x\"]\nevery = \"1m\"",
                "check name",
            ),
            ("name = \"a\"\nevery = \"1m\"", "exactly one of command"),
            (
                "name = \"a\"\ncommand = [\"x\"]\nshell = \"x\"\nevery = \"1m\"",
                "exactly one of command",
            ),
            ("name = \"a\"\ncommand = [\"x\"]", "exactly one of every"),
            (
                "name = \"a\"\ncommand = [\"x\"]\nevery = \"1m\"\ncron = \"* * * * *\"",
                "exactly one of every",
            ),
            (
                "name = \"a\"\ncommand = [\"x\"]\nevery = \"1m\"\npriority = 9",
                "priority",
            ),
            (
                "name = \"a\"\ncommand = [\"x\"]\nevery = \"1m\"\ncwd = \"rel\"",
                "absolute",
            ),
        ] {
            let f: File = toml::from_str(&format!("[[checks]]\n{toml}")).unwrap();
            let err = check_all(&f.checks).unwrap_err();
            assert!(err.contains(says), "{toml}: {err}");
        }
        let f: File = toml::from_str(
            "[[checks]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"1m\"\n\
             [[checks]]\nname = \"a\"\ncommand = [\"y\"]\nevery = \"1m\"\n",
        )
        .unwrap();
        assert!(check_all(&f.checks).unwrap_err().contains("two checks"));
    }
}
