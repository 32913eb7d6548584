//! Checks: the owner's scripts from `[[checks]]` in `config.toml`, run on a
//! schedule (or on demand) by the relay, their results raised as alerts.
//!
//! - [`config`]: the `[[checks]]` entries, schedules, alert rules.
//! - [`run`]: one run: process group, output tail, timeout.
//! - [`history`]: the last 50 runs of each check, durable.
//!
//! Trust: a check runs with the relay's own rights, so only the config file
//! (the owner's, 0600 in a 0700 home) declares one; HTTP can list checks and
//! run a declared one now, never create or change a command.
//!
//! One check never runs twice at once: its run lock is taken with
//! `try_lock`, so a scheduled slot that finds a run in progress (a manual
//! one, or its own previous run still going) is skipped, and a manual run
//! then is refused ([`RunError::Running`]).
//!
//! A check's alert has the id `check:<name>`: a failing run raises it, and
//! the next passing run updates it in place to "resolved" (same id, next
//! seq), so one incident is one alert.

pub mod config;
pub mod history;
pub mod run;

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use loopchat_proto::{CheckCounts, CheckInfo, CheckOutcome, CheckRun, MAX_ALERT_IMAGE_BYTES};
use tokio_util::sync::CancellationToken;

use crate::notify::NotificationHub;
use crate::notify::draft::{Draft, MAX_BODY_BYTES};
use config::{AlertRule, CheckConfig, Schedule};
use history::History;

/// The tag and id prefix of check alerts (reserved for the relay).
pub const TAG_CHECK: &str = "check";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no check named {0:?} is configured (see [[checks]] in config.toml)")]
    Unknown(String),
    #[error("check {0:?} is running now; its result will arrive as an alert")]
    Running(String),
}

struct Slot {
    config: CheckConfig,
    schedule: Schedule,
    history: Arc<Mutex<History>>,
    run_lock: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    running: bool,
    next_run: Option<SystemTime>,
}

struct Inner {
    slots: Vec<Arc<Slot>>,
    hub: NotificationHub,
    /// Where a run's `$LOOPCHAT_ALERT_IMAGE` points (deleted after it).
    runs_dir: PathBuf,
    /// The working directory of a check without `cwd`.
    home: PathBuf,
}

/// Shared handle; cheap to clone.
#[derive(Clone)]
pub struct Checks {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

impl Checks {
    /// Loads each check's history from `dir` (`$HOME/checks`).
    pub fn open(
        configs: &[CheckConfig],
        dir: &Path,
        home: &Path,
        hub: NotificationHub,
    ) -> std::io::Result<Self> {
        crate::home::create_private_dir(dir)?;
        let runs_dir = dir.join("runs");
        crate::home::create_private_dir(&runs_dir)?;
        // Images a killed relay's runs left behind.
        for e in std::fs::read_dir(&runs_dir)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let mut slots = Vec::new();
        for c in configs {
            let Some(schedule) = c.schedule() else {
                continue;
            };
            let history = History::open(&dir.join(format!("{}.jsonl", c.name)))?;
            slots.push(Arc::new(Slot {
                config: c.clone(),
                schedule,
                history: Arc::new(Mutex::new(history)),
                run_lock: tokio::sync::Mutex::new(()),
                state: Mutex::default(),
            }));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                slots,
                hub,
                runs_dir,
                home: home.to_owned(),
            }),
        })
    }

    /// One scheduler task per check, until `stop`.
    pub fn start(&self, stop: CancellationToken) {
        for slot in &self.inner.slots {
            tokio::spawn(self.clone().schedule(slot.clone(), stop.clone()));
        }
    }

    fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.inner.slots.iter().find(|s| s.config.name == name)
    }

    pub fn list(&self) -> Vec<CheckInfo> {
        self.inner.slots.iter().map(|s| info(s)).collect()
    }

    /// A check and its kept runs, oldest first.
    pub fn detail(&self, name: &str) -> Option<(CheckInfo, Vec<CheckRun>)> {
        let slot = self.slot(name)?;
        let runs = lock(&slot.history).runs().cloned().collect();
        Some((info(slot), runs))
    }

    pub fn counts(&self) -> CheckCounts {
        let mut c = CheckCounts::default();
        for s in &self.inner.slots {
            if lock(&s.state).running {
                c.running += 1;
            }
            match lock(&s.history).last().map(CheckRun::passed) {
                Some(true) => c.ok += 1,
                Some(false) => c.failing += 1,
                None => {}
            }
        }
        c
    }

    /// Runs `name` now and returns the finished run (its alert is posted
    /// before this returns). The run goes on if the caller goes away.
    pub async fn run_now(&self, name: &str) -> Result<CheckRun, RunError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| RunError::Unknown(name.to_owned()))?
            .clone();
        let this = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok(guard) = slot.run_lock.try_lock() else {
                let _ = tx.send(Err(RunError::Running(slot.config.name.clone())));
                return;
            };
            let run = this.execute(&slot, "manual").await;
            drop(guard);
            let _ = tx.send(Ok(run));
        });
        rx.await
            .unwrap_or_else(|_| Err(RunError::Running(name.to_owned())))
    }

    async fn schedule(self, slot: Arc<Slot>, stop: CancellationToken) {
        let anchor = Instant::now();
        let mut slots_passed: u32 = 0;
        loop {
            let (due, wall) = match &slot.schedule {
                Schedule::Every(period) => {
                    // Anchored, so runs do not drift by their own length:
                    // the next slot in the future, skipping any missed.
                    let now = Instant::now();
                    slots_passed = slots_passed.max(
                        (now.duration_since(anchor).as_nanos() / period.as_nanos().max(1)) as u32,
                    ) + 1;
                    let due = anchor + *period * slots_passed;
                    (due, SystemTime::now() + due.saturating_duration_since(now))
                }
                Schedule::Cron(spec) => {
                    let now = chrono::Local::now();
                    match spec.cron.find_next_occurrence(&now, false) {
                        Ok(next) => {
                            let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
                            (Instant::now() + wait, SystemTime::now() + wait)
                        }
                        Err(e) => {
                            tracing::warn!(check = %slot.config.name, error = %e, "the cron expression never fires again");
                            lock(&slot.state).next_run = None;
                            return;
                        }
                    }
                }
            };
            lock(&slot.state).next_run = Some(wall);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.cancelled() => return,
            }
            let late = Instant::now().saturating_duration_since(due);
            let Ok(guard) = slot.run_lock.try_lock() else {
                tracing::info!(check = %slot.config.name, "skipping a scheduled run: the check is still running");
                continue;
            };
            tracing::debug!(
                check = %slot.config.name,
                late_ms = late.as_secs_f64() * 1000.0,
                "scheduled run"
            );
            self.execute(&slot, "schedule").await;
            drop(guard);
            if matches!(slot.schedule, Schedule::Cron(_)) {
                // The next occurrence strictly after the one just run.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Runs the check (the caller holds its run lock), keeps the run and
    /// raises or resolves its alert.
    async fn execute(&self, slot: &Slot, trigger: &str) -> CheckRun {
        let c = &slot.config;
        lock(&slot.state).running = true;
        let image_path = self
            .inner
            .runs_dir
            .join(format!("{}.{}", c.name, uuid::Uuid::new_v4()));
        let argv = c.argv();
        let cwd = c.cwd.clone().unwrap_or_else(|| self.inner.home.clone());
        let run = run::run(run::Spec {
            argv: &argv,
            cwd: &cwd,
            timeout: c.timeout.0,
            image_path: &image_path,
            name: &c.name,
            trigger,
        })
        .await;
        let image = self.take_image(&image_path, &c.name).await;
        let history = slot.history.clone();
        let kept = run.clone();
        let previous = tokio::task::spawn_blocking(move || {
            let mut h = lock(&history);
            let previous = h.last().cloned();
            if let Err(e) = h.push(kept) {
                tracing::warn!(error = %e, "cannot write a check's history");
            }
            previous
        })
        .await
        .ok()
        .flatten();
        lock(&slot.state).running = false;
        if let Some(mut draft) = alert_for(c, &run, previous.as_ref()) {
            draft.image = image.as_ref().map(|p| p.id.clone());
            if let Err(e) = self.inner.hub.post(draft).await {
                tracing::warn!(check = %c.name, error = %e, "cannot post a check's alert");
            }
        }
        drop(image);
        tracing::info!(
            check = %c.name,
            exit = ?run.exit_code,
            timed_out = run.timed_out,
            ms = run.duration_ms,
            "check ran"
        );
        run
    }

    /// The image the run wrote to `$LOOPCHAT_ALERT_IMAGE`, stored and
    /// pinned; the run's file is removed whatever it held.
    async fn take_image(&self, path: &Path, name: &str) -> Option<crate::notify::images::Pin> {
        let images = self.inner.hub.images().clone();
        let path = path.to_owned();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let bytes = if meta.is_file() && meta.len() <= MAX_ALERT_IMAGE_BYTES as u64 {
                std::fs::read(&path).ok()
            } else {
                None
            };
            let _ = std::fs::remove_file(&path);
            let Some(bytes) = bytes else {
                tracing::warn!(check = %name, "the check's image is not a file of at most 512 KiB; ignored");
                return None;
            };
            let Some(mime) = crate::attachments::sniff(&bytes) else {
                tracing::warn!(check = %name, "the check's image is not a PNG, JPEG, GIF or WebP; ignored");
                return None;
            };
            match images.save(mime, &bytes) {
                Ok((pin, _)) => Some(pin),
                Err(e) => {
                    tracing::warn!(check = %name, error = %e, "cannot store the check's image");
                    None
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

fn info(slot: &Slot) -> CheckInfo {
    let last = lock(&slot.history).last().cloned();
    let state = lock(&slot.state);
    CheckInfo {
        name: slot.config.name.clone(),
        schedule: slot.schedule.to_string(),
        status: match last.as_ref().map(CheckRun::passed) {
            Some(true) => "ok",
            Some(false) => "failing",
            None => "pending",
        }
        .to_owned(),
        running: state.running,
        last_run: last,
        next_run: state.next_run.map(|t| {
            let ms = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            crate::clock::rfc3339_from_millis(ms)
        }),
        alert_id: alert_id(&slot.config.name),
    }
}

pub fn alert_id(name: &str) -> String {
    format!("{TAG_CHECK}:{name}")
}

/// The alert this run raises under the check's rule, if any.
fn alert_for(c: &CheckConfig, run: &CheckRun, previous: Option<&CheckRun>) -> Option<Draft> {
    let was_failing = previous.is_some_and(|p| !p.passed());
    let changed = previous.is_none_or(|p| p.output != run.output || p.exit_code != run.exit_code);
    let state = match (run.passed(), was_failing) {
        (false, _) => "failing",
        (true, true) => "resolved",
        (true, false) => "ok",
    };
    let raise = match c.alert {
        AlertRule::Failure => !run.passed() && (!was_failing || changed) || state == "resolved",
        AlertRule::Change => changed,
        AlertRule::Always => true,
    };
    if !raise {
        return None;
    }
    let what = if run.timed_out {
        format!("timed out after {}", config::Every(c.timeout.0))
    } else if run.error.is_some() {
        "could not start".to_owned()
    } else {
        format!("exit {}", run.exit_code.unwrap_or(-1))
    };
    let (title, priority) = match state {
        "failing" => (format!("{} failing ({what})", c.name), c.priority),
        "resolved" => (format!("{} resolved", c.name), 2),
        _ => (format!("{}: ok", c.name), 2),
    };
    Some(Draft {
        id: Some(alert_id(&c.name)),
        title,
        body: fenced(&run.output, MAX_BODY_BYTES),
        priority,
        tags: vec![TAG_CHECK.to_owned()],
        source: Some(format!("{TAG_CHECK}:{}", c.name)),
        check: Some(CheckOutcome {
            name: c.name.clone(),
            exit_code: run.exit_code,
            duration_ms: run.duration_ms,
            output: run.output.clone(),
            state: state.to_owned(),
        }),
        ..Default::default()
    })
}

/// The output's tail as a fenced code block of at most `max` bytes (a
/// fence longer than any run of backticks in it, so nothing escapes).
fn fenced(output: &str, max: usize) -> String {
    let output = output.trim_end();
    if output.is_empty() {
        return "(no output)".to_owned();
    }
    let longest = output.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let room = max.saturating_sub(2 * fence.len() + 2);
    let mut start = output.len().saturating_sub(room);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!("{fence}\n{}\n{fence}", &output[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rule: AlertRule) -> CheckConfig {
        let mut c: CheckConfig =
            toml::from_str("name = \"disk\"\ncommand = [\"df\"]\nevery = \"1m\"").unwrap();
        c.alert = rule;
        c
    }

    fn run(exit: i32, out: &str) -> CheckRun {
        CheckRun {
            exit_code: Some(exit),
            output: out.into(),
            ..Default::default()
        }
    }

    #[test]
    fn failure_then_recovery_is_one_alert() {
        let c = cfg(AlertRule::Failure);
        assert!(alert_for(&c, &run(0, "ok"), None).is_none());
        let a = alert_for(&c, &run(1, "full"), Some(&run(0, "ok"))).unwrap();
        assert_eq!(a.id.as_deref(), Some("check:disk"));
        assert_eq!(a.check.as_ref().unwrap().state, "failing");
        assert_eq!(a.priority, 4);
        assert!(a.body.contains("full"));
        assert!(alert_for(&c, &run(1, "full"), Some(&run(1, "full"))).is_none());
        let r = alert_for(&c, &run(0, "ok"), Some(&run(1, "full"))).unwrap();
        assert_eq!(r.id, a.id);
        assert_eq!(r.check.unwrap().state, "resolved");
        assert!(alert_for(&c, &run(0, "ok"), Some(&run(0, "ok"))).is_none());
    }

    #[test]
    fn change_and_always() {
        let c = cfg(AlertRule::Change);
        assert!(alert_for(&c, &run(0, "a"), None).is_some());
        assert!(alert_for(&c, &run(0, "a"), Some(&run(0, "a"))).is_none());
        assert!(alert_for(&c, &run(0, "b"), Some(&run(0, "a"))).is_some());
        let c = cfg(AlertRule::Always);
        assert!(alert_for(&c, &run(0, "a"), Some(&run(0, "a"))).is_some());
    }

    #[test]
    fn bodies_are_fenced_and_bounded() {
        assert_eq!(fenced("hi\n", 100), "```\nhi\n```");
        let sneaky = "x ``` y ```` z";
        let f = fenced(sneaky, 100);
        assert!(f.starts_with("`````\n"), "{f}");
        let long = "é".repeat(5000);
        let f = fenced(&long, 4096);
        assert!(f.len() <= 4096 && f.ends_with("\n```"), "{}", f.len());
    }
}
