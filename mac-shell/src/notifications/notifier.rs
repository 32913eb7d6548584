//! The subscriber task: follows the relay's alert stream and raises what
//! this shell should (see the module above for the rules).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loopchat_proto::Notification;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::desktop::{self, Desktop, DesktopAlert, Shown, Urgency, urgency};
use super::record::{AlertRecord, Start};
use super::stream::{self, AlertSocket, Endpoint, Incoming};
use super::{Click, ClickTarget, Focus, Locator, OnClick};

/// Alerts raised one by one from one batch; the rest become one summary.
pub const MAX_ONE_BY_ONE: usize = 3;
/// The most a catch-up reads (the relay keeps 500).
const CATCH_UP_LIMIT: usize = 500;
/// After a live alert, how long to wait for more before raising (a burst
/// becomes one batch).
const COALESCE: Duration = Duration::from_millis(250);
/// The relay pings every 30 s: this long without a single message means a
/// dead connection.
const IDLE: Duration = Duration::from_secs(100);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a popup's click is waited for.
const CLICK_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What a notifier watches.
#[derive(Clone)]
pub struct NotifierConfig {
    /// The loopchat home: `shell-alerts.json`, `shell.json` (pause).
    pub home: PathBuf,
    /// The relay's name in the record ([`local_relay_key`],
    /// [`remote_relay_key`]).
    pub relay_key: String,
    pub locator: Locator,
}

/// A running subscriber; stops when dropped.
pub struct Notifier {
    tasks: Vec<JoinHandle<()>>,
    record: AlertRecord,
    relay_key: String,
}

impl Notifier {
    /// Starts the subscriber on the current tokio runtime.
    pub fn spawn(
        config: NotifierConfig,
        desktop: Arc<dyn Desktop>,
        focus: Focus,
        on_click: OnClick,
    ) -> Self {
        let record = AlertRecord::new(&config.home);
        let relay_key = config.relay_key.clone();
        let focus_task = tokio::spawn(publish_focus(
            record.clone(),
            relay_key.clone(),
            focus.subscribe(),
        ));
        let ctx = Arc::new(Ctx {
            record: record.clone(),
            desktop,
            focus,
            on_click,
            pid: std::process::id(),
            config,
        });
        let main = tokio::spawn(run(ctx));
        Self {
            tasks: vec![focus_task, main],
            record,
            relay_key,
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // This window's focus no longer keeps other shells quiet.
        if let Err(e) = self
            .record
            .set_focused(&self.relay_key, std::process::id(), false)
        {
            tracing::debug!(error = %e, "cannot update the alerts record");
        }
    }
}

/// Mirrors this window's focus into the record, for the other shells.
async fn publish_focus(record: AlertRecord, relay: String, mut focus: watch::Receiver<bool>) {
    let pid = std::process::id();
    loop {
        let focused = *focus.borrow_and_update();
        let (r, k) = (record.clone(), relay.clone());
        match tokio::task::spawn_blocking(move || r.set_focused(&k, pid, focused)).await {
            Ok(Ok(())) => tracing::debug!(focused, "window focus recorded"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the window's focus"),
            Err(_) => {}
        }
        if focus.changed().await.is_err() {
            return;
        }
    }
}

struct Ctx {
    config: NotifierConfig,
    record: AlertRecord,
    desktop: Arc<dyn Desktop>,
    focus: Focus,
    on_click: OnClick,
    pid: u32,
}

/// Connects, follows, reconnects — forever (until aborted).
async fn run(ctx: Arc<Ctx>) {
    let mut backoff = BACKOFF_FIRST;
    let mut failures = 0u32;
    loop {
        let mut opened = false;
        let outcome = follow(&ctx, &mut opened).await;
        if opened {
            backoff = BACKOFF_FIRST;
            failures = 0;
        }
        match outcome {
            Ok(()) => {
                tracing::info!(relay = %ctx.config.relay_key, "the relay closed the alert stream")
            }
            Err(e) => {
                failures += 1;
                // The first failure says why; a relay that stays away is
                // not worth a line every 30 s.
                if failures == 1 {
                    tracing::warn!(relay = %ctx.config.relay_key, error = %e, "alert stream unavailable; retrying");
                } else {
                    tracing::debug!(relay = %ctx.config.relay_key, error = %e, failures, "alert stream still unavailable");
                }
            }
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Up to +20 % so that shells restarted together do not knock together.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.2))
}

/// One connection: locate, catch up, go live. `opened` is set once the
/// live stream is open (the backoff starts over after that).
async fn follow(ctx: &Arc<Ctx>, opened: &mut bool) -> Result<(), String> {
    let ep = ctx.config.locator.locate().await?;
    let client = stream::http_client()?;
    let relay = ctx.config.relay_key.clone();

    let newest = stream::list(&client, &ep, None, 1)
        .await?
        .last()
        .map(|n| n.seq)
        .unwrap_or(0);
    let (r, k) = (ctx.record.clone(), relay.clone());
    let start = blocking(move || r.start(&k, newest)).await?;
    match start {
        Start::FirstSighting(s) => {
            tracing::info!(relay = %relay, seq = s, "first time on this relay: earlier alerts are not replayed");
        }
        Start::RelayReset { recorded } => {
            tracing::info!(relay = %relay, recorded, newest, "the relay's alert log started over");
        }
        Start::Resume(_) => {}
    }
    let mut last = start.from();

    // Alerts posted while no shell was listening.
    let missed = stream::list(&client, &ep, Some(last), CATCH_UP_LIMIT).await?;
    if let Some(n) = missed.last() {
        last = last.max(n.seq);
    }
    if !missed.is_empty() {
        tracing::info!(relay = %relay, count = missed.len(), "catching up with missed alerts");
        deliver(ctx, &ep, missed).await;
    }

    let mut socket = AlertSocket::open(&ep, last).await?;
    *opened = true;
    tracing::info!(relay = %relay, since = last, "alert stream open");
    loop {
        let first = match socket.next(IDLE * 2, IDLE).await? {
            Incoming::Notification(n) => *n,
            Incoming::Quiet => continue,
            Incoming::Closed => {
                socket.close().await;
                return Ok(());
            }
        };
        let mut batch = vec![first];
        let mut closed = false;
        while batch.len() < CATCH_UP_LIMIT {
            match socket.next(COALESCE, IDLE).await? {
                Incoming::Notification(n) => batch.push(*n),
                Incoming::Quiet => break,
                Incoming::Closed => {
                    closed = true;
                    break;
                }
            }
        }
        deliver(ctx, &ep, batch).await;
        if closed {
            return Ok(());
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("alerts record: {e}"))
}

/// Claims a batch (oldest first) and raises what this shell should.
async fn deliver(ctx: &Arc<Ctx>, ep: &Endpoint, batch: Vec<Notification>) {
    let relay = ctx.config.relay_key.clone();
    let keys: Vec<(String, u64)> = batch.iter().map(|n| (n.id.clone(), n.seq)).collect();
    let (r, k, pid) = (ctx.record.clone(), relay.clone(), ctx.pid);
    let claims = match blocking(move || {
        let alerts: Vec<(&str, u64)> = keys.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        r.claim(&k, &alerts, pid)
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            // Without the record there is no telling whether another shell
            // raised these: staying quiet is the safe side.
            tracing::warn!(error = %e, "cannot claim alerts; not raising them");
            return;
        }
    };
    let mut fresh: Vec<(Notification, Option<u32>)> = Vec::new();
    for (n, claim) in batch.into_iter().zip(claims.fresh) {
        match claim {
            Some(replaces) => fresh.push((n, replaces)),
            None => {
                tracing::info!(relay = %relay, seq = n.seq, id = %n.id, "alert already handled by another shell");
            }
        }
    }
    // A version the relay wrote because the user read or dismissed the
    // alert (in any window) is handled, never raised.
    fresh.retain(|(n, _)| !(n.read || n.dismissed));
    if fresh.is_empty() {
        return;
    }
    let seqs: Vec<u64> = fresh.iter().map(|(n, _)| n.seq).collect();
    let home = ctx.config.home.clone();
    let paused = tokio::task::spawn_blocking(move || crate::settings::alerts_paused(&home))
        .await
        .unwrap_or(false);
    if paused {
        tracing::info!(relay = %relay, ?seqs, "alert not raised: alerts are paused");
        return;
    }
    if ctx.focus.get() || claims.focused_elsewhere {
        // The welcome tour's test alert is asked for from a focused window,
        // to be seen on the desktop: it goes through; the rest stays quiet.
        let (tests, quiet): (Vec<_>, Vec<_>) = fresh
            .into_iter()
            .partition(|(n, _)| n.tags.iter().any(|t| t == loopchat_proto::TEST_ALERT_TAG));
        if !quiet.is_empty() {
            let seqs: Vec<u64> = quiet.iter().map(|(n, _)| n.seq).collect();
            tracing::info!(relay = %relay, ?seqs, elsewhere = claims.focused_elsewhere, "alert not raised: a loopchat window is focused");
        }
        fresh = tests;
        if fresh.is_empty() {
            return;
        }
    }

    let (one_by_one, rest) = plan(&fresh, MAX_ONE_BY_ONE);
    for i in one_by_one {
        let (n, replaces) = &fresh[i];
        raise(ctx, ep, n, *replaces).await;
    }
    if !rest.is_empty() {
        let rest: Vec<&Notification> = rest.iter().map(|i| &fresh[*i].0).collect();
        raise_summary(ctx, ep, &rest).await;
    }
}

/// Which alerts of a batch to raise one by one (indices, oldest first):
/// all of them if there are at most `max`; else the `max` most important
/// (highest priority, then newest), the others going into a summary.
pub fn plan(fresh: &[(Notification, Option<u32>)], max: usize) -> (Vec<usize>, Vec<usize>) {
    if fresh.len() <= max {
        return ((0..fresh.len()).collect(), Vec::new());
    }
    let mut order: Vec<usize> = (0..fresh.len()).collect();
    order.sort_by(|a, b| {
        let (na, nb) = (&fresh[*a].0, &fresh[*b].0);
        nb.priority.cmp(&na.priority).then(nb.seq.cmp(&na.seq))
    });
    let mut one_by_one: Vec<usize> = order[..max].to_vec();
    let mut rest: Vec<usize> = order[max..].to_vec();
    one_by_one.sort_unstable();
    rest.sort_unstable();
    (one_by_one, rest)
}

/// The popup of one alert.
pub fn alert_for(n: &Notification, replaces: Option<u32>) -> DesktopAlert {
    DesktopAlert {
        title: if n.title.trim().is_empty() {
            desktop::APP_NAME.to_owned()
        } else {
            n.title.clone()
        },
        body: n.body.clone(),
        urgency: urgency(n.priority),
        replaces,
        image: None,
    }
}

/// The popup standing for several alerts: "N more alerts", their titles
/// (newest first) as the body, the highest urgency among them.
pub fn summary_for(rest: &[&Notification]) -> DesktopAlert {
    const LINES: usize = 5;
    let mut lines: Vec<String> = rest
        .iter()
        .rev()
        .take(LINES)
        .map(|n| {
            let text = if n.title.trim().is_empty() {
                &n.body
            } else {
                &n.title
            };
            desktop::truncate(text.lines().next().unwrap_or_default(), 80)
        })
        .collect();
    if rest.len() > LINES {
        lines.push("…".to_owned());
    }
    DesktopAlert {
        title: format!(
            "{} more alert{}",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
        body: lines.join("\n"),
        urgency: rest
            .iter()
            .map(|n| urgency(n.priority))
            .max()
            .unwrap_or(Urgency::Normal),
        replaces: None,
        image: None,
    }
}

async fn raise(ctx: &Arc<Ctx>, ep: &Endpoint, n: &Notification, replaces: Option<u32>) {
    let mut alert = alert_for(n, replaces);
    if n.image.is_some() {
        // Best effort: without the image the popup still says everything.
        let dir = ctx.config.home.join("shell-alert-images");
        let fetched = match stream::http_client() {
            Ok(client) => stream::fetch_image(&client, ep, n, &dir).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(path) => alert.image = Some(path),
            Err(e) => tracing::debug!(seq = n.seq, error = %e, "alert raised without its image"),
        }
    }
    let urgency = alert.urgency;
    let relay = ctx.config.relay_key.clone();
    let shown = match ctx.desktop.show(alert).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(relay = %relay, seq = n.seq, error = %e, "alert not raised");
            return;
        }
    };
    let desktop_id = shown.id;
    tracing::info!(
        relay = %relay,
        seq = n.seq,
        id = %n.id,
        desktop_id,
        urgency = urgency.as_str(),
        replaced = replaces.is_some(),
        "alert raised"
    );
    let (r, k, seq, pid) = (ctx.record.clone(), relay.clone(), n.seq, ctx.pid);
    if let Err(e) = blocking(move || r.raised(&k, seq, desktop_id, pid)).await {
        tracing::warn!(error = %e, "cannot record a raised alert");
    }
    let click = Click {
        target: ClickTarget::of(n),
        base_url: ep.base_url.clone(),
    };
    tokio::spawn(wait_for_click(ctx.clone(), shown, Some(n.seq), click));
}

async fn raise_summary(ctx: &Arc<Ctx>, ep: &Endpoint, rest: &[&Notification]) {
    let alert = summary_for(rest);
    let title = alert.title.clone();
    match ctx.desktop.show(alert).await {
        Ok(shown) => {
            tracing::info!(relay = %ctx.config.relay_key, count = rest.len(), desktop_id = shown.id, title = %title, "alerts summarized");
            let click = Click {
                target: ClickTarget::Window,
                base_url: ep.base_url.clone(),
            };
            tokio::spawn(wait_for_click(ctx.clone(), shown, None, click));
        }
        Err(e) => tracing::warn!(error = %e, "alert summary not raised"),
    }
}

/// Waits for the popup to be clicked or closed. A click counts only if
/// this shell's alert `seq` is still what that popup shows (an update
/// raised by another shell may have replaced it: then that shell acts).
async fn wait_for_click(ctx: Arc<Ctx>, shown: Shown, seq: Option<u64>, click: Click) {
    let desktop_id = shown.id;
    let clicked = tokio::time::timeout(CLICK_WAIT, shown.clicked)
        .await
        .unwrap_or(false);
    if !clicked {
        return;
    }
    if let Some(seq) = seq {
        let (r, k) = (ctx.record.clone(), ctx.config.relay_key.clone());
        match blocking(move || r.shown_as(&k, desktop_id)).await {
            Ok(Some(owner)) if owner == (seq, ctx.pid) => {}
            Ok(owner) => {
                tracing::debug!(
                    desktop_id,
                    ?owner,
                    "click on a popup another shell now owns"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot check a click's owner; acting on it"),
        }
    }
    tracing::info!(desktop_id, ?seq, target = ?click.target, "alert clicked");
    (ctx.on_click)(click);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(seq: u64, priority: u8) -> (Notification, Option<u32>) {
        (super::super::test_alert(seq, priority), None)
    }

    #[test]
    fn small_batches_are_raised_whole() {
        let batch = vec![n(1, 3), n(2, 1), n(3, 5)];
        assert_eq!(plan(&batch, 3), (vec![0, 1, 2], vec![]));
        assert_eq!(plan(&[], 3), (vec![], vec![]));
    }

    #[test]
    fn big_batches_raise_the_most_important_and_summarize_the_rest() {
        let batch: Vec<_> = [3, 3, 5, 1, 4, 3, 3]
            .iter()
            .enumerate()
            .map(|(i, p)| n(i as u64 + 10, *p))
            .collect();
        // Priority 5 (index 2), 4 (index 4), then the newest priority 3
        // (index 6).
        let (one, rest) = plan(&batch, 3);
        assert_eq!(one, vec![2, 4, 6]);
        assert_eq!(rest, vec![0, 1, 3, 5]);
        let rest: Vec<&Notification> = rest.iter().map(|i| &batch[*i].0).collect();
        let s = summary_for(&rest);
        assert_eq!(s.title, "4 more alerts");
        assert_eq!(s.body, "title 15\ntitle 13\ntitle 11\ntitle 10");
        assert_eq!(s.urgency, Urgency::Normal);
        let one = summary_for(&rest[..1]);
        assert_eq!(one.title, "1 more alert");
    }

    #[test]
    fn alerts_map_to_popups() {
        let (mut a, _) = n(4, 4);
        a.title = " ".into();
        let p = alert_for(&a, Some(9));
        assert_eq!(p.title, "loopchat");
        assert_eq!(p.urgency, Urgency::Critical);
        assert_eq!(p.replaces, Some(9));
    }
}
