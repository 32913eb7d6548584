//! The notification hub: gives each notification its relay-wide seq, makes
//! it durable, keeps the last [`KEEP`] for replay and broadcasts it to every
//! connected stream.
//!
//! Posting is two steps so that many posters share one `fdatasync` (the
//! [`GroupCommit`] of [`crate::durable`]) while subscribers still see seqs in order:
//! [`NotificationHub::submit`] assigns the seq and appends the line under
//! the lock (so file order is seq order and a later post always gets a
//! higher seq); [`NotificationHub::commit`] waits until the line is on disk
//! and then publishes every durable notification, in seq order. Nothing is
//! delivered that a crash could take back, so a client's "last seen seq" is
//! never reused for a different notification after a restart.

use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use loopchat_proto::{Event, EventBody, Notification};
use tokio::sync::broadcast;

use super::draft::Draft;
use super::images::AlertImages;
use super::journal::Journal;
use crate::durable::{DiskError, FlushKind, GroupCommit};

/// Notifications kept (persisted, replayable, listed).
pub const KEEP: usize = 500;
/// Journal lines beyond which it is rewritten with only the kept ones.
const COMPACT_AT: usize = 2 * KEEP;
/// Live notifications buffered per subscriber before it counts as lagging
/// (it then catches up from the kept list).
const CHANNEL_CAP: usize = 256;

struct HubState {
    /// Highest seq handed out (durable or not).
    last_seq: u64,
    /// Highest seq published to subscribers.
    last_published: u64,
    /// Published notifications, seq order, one per id.
    kept: VecDeque<Arc<Event>>,
    /// Appended, waiting to be durable, seq order; with their generation.
    unpublished: VecDeque<(u64, Arc<Event>)>,
    journal: Journal,
}

struct HubInner {
    state: Mutex<HubState>,
    commit: GroupCommit,
    live: broadcast::Sender<Arc<Event>>,
    images: AlertImages,
}

/// Shared handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct NotificationHub {
    inner: Arc<HubInner>,
}

/// A notification that has its seq and is written, not yet durable nor
/// delivered; [`NotificationHub::commit`] finishes it.
#[must_use = "a submitted notification is delivered only once committed"]
pub struct Pending {
    generation: u64,
    pub notification: Notification,
}

impl NotificationHub {
    /// [`NotificationHub::open_with`] with the images in `alert-images`
    /// beside the journal.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        Self::open_with(path, AlertImages::new(path.with_file_name("alert-images")))
    }

    /// Opens the journal at `path` and restores the kept notifications; the
    /// next seq follows the highest one ever written there. Images no kept
    /// alert uses (a crash between a removal and its collection) go now.
    pub fn open_with(path: &Path, images: AlertImages) -> Result<Self, DiskError> {
        let loaded = Journal::open(path)?;
        let last_seq = loaded
            .notifications
            .iter()
            .map(|n| n.seq)
            .max()
            .unwrap_or(0);
        let kept = latest_per_id(loaded.notifications);
        let mut journal = loaded.journal;
        if journal.lines() > COMPACT_AT {
            journal.compact(kept.iter().map(note))?;
        }
        images.collect(&used_images(kept.iter()))?;
        Ok(Self {
            inner: Arc::new(HubInner {
                state: Mutex::new(HubState {
                    last_seq,
                    last_published: last_seq,
                    kept,
                    unpublished: VecDeque::new(),
                    journal,
                }),
                commit: GroupCommit::new(FlushKind::Appended),
                live: broadcast::channel(CHANNEL_CAP).0,
                images,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.inner.state.lock()
    }

    /// Seq of the newest notification delivered so far (0 before any).
    pub fn last_delivered(&self) -> u64 {
        self.lock().last_published
    }

    /// Step one of posting: seq, timestamp, id (a new uuid unless given) and
    /// the journal line. Cheap and non-blocking apart from a buffered write
    /// (and, once per ~500 posts, the compaction).
    pub fn submit(&self, draft: Draft) -> Result<Pending, DiskError> {
        let st = self.lock();
        let id = draft.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // An investigation stays linked through the alert's later versions
        // (a check's "resolved" included).
        let investigated_in = latest(&st, &id).and_then(|n| n.investigated_in.clone());
        let notification = Notification {
            id,
            seq: st.last_seq + 1,
            title: draft.title,
            body: draft.body,
            priority: draft.priority,
            tags: draft.tags,
            click: draft.click,
            session: draft.session,
            timestamp: crate::clock::now_rfc3339(),
            image: draft.image,
            source: draft.source,
            check: draft.check,
            investigated_in,
            ..Default::default()
        };
        self.append(st, notification)
    }

    /// A new version of a kept (not dismissed) notification: `change` edits
    /// a copy, which gets the next seq and keeps its timestamp. `None` when
    /// there is no such notification or `change` returns false (nothing to
    /// do).
    pub fn amend(
        &self,
        id: &str,
        change: impl FnOnce(&mut Notification) -> bool,
    ) -> Result<Option<Pending>, DiskError> {
        let st = self.lock();
        let Some(mut n) = latest(&st, id).filter(|n| !n.dismissed).cloned() else {
            return Ok(None);
        };
        if !change(&mut n) {
            return Ok(None);
        }
        n.seq = st.last_seq + 1;
        self.append(st, n).map(Some)
    }

    /// The newest version of a kept, not dismissed notification.
    pub fn get(&self, id: &str) -> Option<Notification> {
        let st = self.lock();
        latest(&st, id).filter(|n| !n.dismissed).cloned()
    }

    /// The ids of every kept, not dismissed notification.
    pub fn ids(&self) -> Vec<String> {
        let st = self.lock();
        st.kept
            .iter()
            .map(note)
            .filter(|n| !n.dismissed)
            .map(|n| n.id.clone())
            .collect()
    }

    /// The image store (saving pins the file until the alert is submitted).
    pub fn images(&self) -> &AlertImages {
        &self.inner.images
    }

    fn append(
        &self,
        mut st: MutexGuard<'_, HubState>,
        notification: Notification,
    ) -> Result<Pending, DiskError> {
        st.journal.append(&notification)?;
        st.last_seq = notification.seq;
        // Bumped under the lock: generation order is seq order.
        let generation = self.inner.commit.bump();
        st.unpublished.push_back((
            generation,
            Arc::new(Event {
                seq: notification.seq,
                body: EventBody::Notification {
                    notification: notification.clone(),
                },
            }),
        ));
        if st.journal.lines() > COMPACT_AT {
            let HubState {
                kept,
                unpublished,
                journal,
                ..
            } = &mut *st;
            let all = kept.iter().chain(unpublished.iter().map(|(_, e)| e));
            if let Err(e) = journal.compact(all.map(note)) {
                // Not fatal: the journal just keeps growing until next time.
                tracing::warn!(error = %e, "could not compact the notification journal");
            }
        }
        Ok(Pending {
            generation,
            notification,
        })
    }

    /// Step two: resolves once the notification is durable and delivered.
    /// If this fails the notification may still be delivered later (once a
    /// later flush succeeds); a retry with the same id then updates it.
    ///
    /// The work starts at once and runs to the end even if the returned
    /// future is dropped (an HTTP handler whose client hung up, a page
    /// reloaded right after "mark all read"): a submitted notification must
    /// not wait for the next post to be delivered.
    pub fn commit(
        &self,
        pending: Pending,
    ) -> impl Future<Output = Result<Notification, DiskError>> + Send + 'static {
        let hub = self.clone();
        let task = tokio::spawn(async move {
            let flushed = hub.clone();
            hub.inner
                .commit
                .wait(pending.generation, move || {
                    let file = flushed.lock().journal.file();
                    file.sync_data()
                })
                .await?;
            hub.publish_durable(pending.generation);
            Ok(pending.notification)
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(DiskError::Io(std::io::Error::other(e))))
        }
    }

    /// Submit and commit in one.
    pub async fn post(&self, draft: Draft) -> Result<Notification, DiskError> {
        let pending = self.submit(draft)?;
        self.commit(pending).await
    }

    /// Publishes, in seq order, every waiting notification up to
    /// `generation` (all durable: a flush covers every earlier generation).
    fn publish_durable(&self, generation: u64) {
        let mut st = self.lock();
        let mut image_left = false;
        while st
            .unpublished
            .front()
            .is_some_and(|(g, _)| *g <= generation)
        {
            let Some((_, event)) = st.unpublished.pop_front() else {
                break;
            };
            let id = &note(&event).id;
            // An update replaces the notification in place: same id, new seq.
            if let Some(old) = st.kept.iter().position(|e| note(e).id == *id)
                && let Some(old) = st.kept.remove(old)
            {
                image_left |= note(&old).image.is_some();
            }
            image_left |= note(&event).dismissed && note(&event).image.is_some();
            st.kept.push_back(event.clone());
            if st.kept.len() > KEEP
                && let Some(gone) = st.kept.pop_front()
            {
                image_left |= note(&gone).image.is_some();
            }
            st.last_published = event.seq;
            // Sent under the lock: live order equals seq order.
            let _ = self.inner.live.send(event);
        }
        if image_left {
            // Under the lock: no alert can start or stop using a file
            // meanwhile (a save in flight is pinned).
            let used = used_images(st.kept.iter().chain(st.unpublished.iter().map(|(_, e)| e)));
            if let Err(e) = self.inner.images.collect(&used) {
                tracing::warn!(error = %e, "cannot collect unused alert images");
            }
        }
    }

    /// The journal's size: bytes and complete lines.
    pub fn journal_size(&self) -> (u64, usize) {
        let st = self.lock();
        (st.journal.len(), st.journal.lines())
    }

    /// Kept notifications after `since` (oldest first, at most `limit`,
    /// for paging forward); without `since`, the newest `limit`.
    pub fn list(&self, since: Option<u64>, limit: usize) -> Vec<Notification> {
        let st = self.lock();
        let picked: Vec<&Arc<Event>> = match since {
            Some(since) => st
                .kept
                .iter()
                .filter(|e| e.seq > since)
                .filter(|e| !note(e).dismissed)
                .take(limit)
                .collect(),
            None => {
                let listed: Vec<&Arc<Event>> =
                    st.kept.iter().filter(|e| !note(e).dismissed).collect();
                let skip = listed.len().saturating_sub(limit);
                listed.into_iter().skip(skip).collect()
            }
        };
        picked.into_iter().map(|e| note(e).clone()).collect()
    }

    /// Live notifications from now on, preceded (when `since` is given) by
    /// the kept ones with a higher seq.
    pub fn subscribe(&self, since: Option<u64>) -> NotificationSubscription {
        let st = self.lock();
        let rx = self.inner.live.subscribe();
        let replay = match since {
            Some(since) => st.kept.iter().filter(|e| e.seq > since).cloned().collect(),
            None => VecDeque::new(),
        };
        NotificationSubscription {
            hub: self.clone(),
            replay,
            rx,
            last: st.last_published,
        }
    }
}

/// One stream's view of the hub: replay first, then live, each seq once.
pub struct NotificationSubscription {
    hub: NotificationHub,
    replay: VecDeque<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Highest seq handed out or already covered by the replay.
    last: u64,
}

impl NotificationSubscription {
    /// A replayed notification, if any is left (never waits).
    pub fn next_replayed(&mut self) -> Option<Arc<Event>> {
        self.replay.pop_front()
    }

    /// The next notification. Cancel-safe: nothing is lost if the future is
    /// dropped before it resolves.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(e) = self.replay.pop_front() {
            return Some(e);
        }
        loop {
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.last => continue,
                Ok(e) => {
                    self.last = e.seq;
                    return Some(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live channel: catch up from the kept
                    // list, then go on live.
                    let fresh = self.hub.subscribe(Some(self.last));
                    self.rx = fresh.rx;
                    self.last = fresh.last;
                    self.replay = fresh.replay;
                    if let Some(e) = self.replay.pop_front() {
                        return Some(e);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The newest version of `id`, written or kept.
fn latest<'a>(st: &'a HubState, id: &str) -> Option<&'a Notification> {
    st.unpublished
        .iter()
        .rev()
        .map(|(_, e)| note(e))
        .chain(st.kept.iter().map(note))
        .find(|n| n.id == id)
}

/// The images the listed alerts show (a dismissed one shows nothing).
fn used_images<'a>(
    events: impl Iterator<Item = &'a Arc<Event>>,
) -> std::collections::HashSet<&'a str> {
    events
        .map(note)
        .filter(|n| !n.dismissed)
        .filter_map(|n| n.image.as_deref())
        .collect()
}

fn note(event: &Arc<Event>) -> &Notification {
    match &event.body {
        EventBody::Notification { notification } => notification,
        _ => unreachable!("the hub only holds notification events"),
    }
}

/// The newest notification of each id, seq order, at most [`KEEP`].
fn latest_per_id(mut all: Vec<Notification>) -> VecDeque<Arc<Event>> {
    all.sort_by_key(|n| std::cmp::Reverse(n.seq));
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Notification> = all
        .into_iter()
        .filter(|n| seen.insert(n.id.clone()))
        .take(KEEP)
        .collect();
    kept.reverse();
    kept.into_iter()
        .map(|n| {
            Arc::new(Event {
                seq: n.seq,
                body: EventBody::Notification { notification: n },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(title: &str, id: Option<&str>) -> Draft {
        Draft {
            id: id.map(str::to_owned),
            title: title.into(),
            body: "b".into(),
            priority: 3,
            tags: vec![],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn seqs_survive_reopen_and_updates_replace_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let hub = NotificationHub::open(&path).unwrap();
        let a = hub.post(draft("a", None)).await.unwrap();
        let b = hub.post(draft("b", Some("job:1"))).await.unwrap();
        let c = hub.post(draft("c", None)).await.unwrap();
        assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
        let b2 = hub.post(draft("b again", Some("job:1"))).await.unwrap();
        assert_eq!((b2.id.as_str(), b2.seq), ("job:1", 4));
        let titles = |hub: &NotificationHub| -> Vec<(String, u64)> {
            hub.list(None, 100)
                .into_iter()
                .map(|n| (n.title, n.seq))
                .collect()
        };
        let expected = vec![("a".into(), 1), ("c".into(), 3), ("b again".into(), 4)];
        assert_eq!(titles(&hub), expected);
        drop(hub);
        let hub = NotificationHub::open(&path).unwrap();
        assert_eq!(titles(&hub), expected, "restored from the journal");
        assert_eq!(hub.post(draft("d", None)).await.unwrap().seq, 5);
        assert_eq!(
            hub.list(Some(3), 1)
                .into_iter()
                .map(|n| n.seq)
                .collect::<Vec<_>>(),
            [4]
        );
    }

    /// An image goes when its alert falls out of the kept 500, and a save
    /// in flight (pinned, not yet submitted) is never collected.
    #[tokio::test]
    async fn images_leave_with_their_alert_and_pins_protect_saves_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let hub = NotificationHub::open(&dir.path().join("n.jsonl")).unwrap();
        let png = b"\x89PNG\r\n\x1a\nfirst".to_vec();
        let (pin, saved) = hub.images().save("image/png", &png).unwrap();
        let mut d = draft("with image", None);
        d.image = Some(pin.id.clone());
        hub.post(d).await.unwrap();
        drop(pin);
        let file = dir.path().join("alert-images").join(&saved.id);
        assert!(file.exists());
        let in_flight = b"\x89PNG\r\n\x1a\nsecond".to_vec();
        let (held, other) = hub.images().save("image/png", &in_flight).unwrap();
        for i in 0..KEEP {
            hub.post(draft(&i.to_string(), None)).await.unwrap();
        }
        assert!(!file.exists(), "evicted with its alert");
        let held_file = dir.path().join("alert-images").join(&other.id);
        assert!(held_file.exists(), "pinned: a post is about to use it");
        drop(held);
        drop(hub);
        NotificationHub::open(&dir.path().join("n.jsonl")).unwrap();
        assert!(!held_file.exists(), "never used: gone at the next start");
    }

    #[tokio::test]
    async fn keeps_the_last_500_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let hub = NotificationHub::open(&path).unwrap();
        for i in 0..1200 {
            hub.post(draft(&i.to_string(), None)).await.unwrap();
        }
        let all = hub.list(None, 1000);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].seq, 701);
        assert_eq!(all[KEEP - 1].seq, 1200);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= COMPACT_AT + 1, "compacted: {lines} lines");
        drop(hub);
        let hub = NotificationHub::open(&path).unwrap();
        assert_eq!(hub.list(None, 1000), all);
        assert_eq!(hub.last_delivered(), 1200);
    }

    #[tokio::test]
    async fn subscribers_get_replay_then_live_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let hub = NotificationHub::open(&dir.path().join("n.jsonl")).unwrap();
        for t in ["a", "b", "c"] {
            hub.post(draft(t, None)).await.unwrap();
        }
        let mut sub = hub.subscribe(Some(1));
        let mut live_only = hub.subscribe(None);
        // Many concurrent posters: one flush serves several, order holds.
        let posts: Vec<_> = (0..20)
            .map(|i| {
                let hub = hub.clone();
                tokio::spawn(async move { hub.post(draft(&format!("p{i}"), None)).await })
            })
            .collect();
        for p in posts {
            p.await.unwrap().unwrap();
        }
        let mut seqs = Vec::new();
        for _ in 0..22 {
            seqs.push(sub.next().await.unwrap().seq);
        }
        assert_eq!(seqs, (2..=23).collect::<Vec<_>>());
        assert_eq!(live_only.next().await.unwrap().seq, 4);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_catches_up_from_the_kept_list() {
        let dir = tempfile::tempdir().unwrap();
        let hub = NotificationHub::open(&dir.path().join("n.jsonl")).unwrap();
        let mut sub = hub.subscribe(None);
        for i in 0..(CHANNEL_CAP + 50) {
            hub.post(draft(&i.to_string(), None)).await.unwrap();
        }
        for expected in 1..=(CHANNEL_CAP as u64 + 50) {
            assert_eq!(sub.next().await.unwrap().seq, expected);
        }
    }
    #[tokio::test]
    async fn an_amendment_whose_caller_hangs_up_is_still_delivered() {
        // An HTTP handler dropped before its commit ran (the page reloaded
        // right after "mark all read"): the read version must still reach
        // every stream and the list, with no later post to carry it.
        let dir = tempfile::tempdir().unwrap();
        let hub = NotificationHub::open(&dir.path().join("n.jsonl")).unwrap();
        let posted = hub.post(draft("a", Some("job"))).await.unwrap();
        let mut sub = hub.subscribe(Some(posted.seq));
        let pending = hub
            .amend("job", |n| {
                n.read = true;
                true
            })
            .unwrap()
            .expect("kept");
        drop(hub.commit(pending));
        let delivered = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .expect("the dropped commit never published the read version")
            .unwrap();
        assert_eq!(delivered.seq, posted.seq + 1);
        assert!(hub.get("job").unwrap().read);
    }
}
