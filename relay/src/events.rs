//! One ordered event log per session: seq numbers, bounded replay, live
//! delivery.
//!
//! The ring is the only place events are kept: live subscribers are woken
//! when the seq moves and read what is new from the ring, so a slow or stalled
//! subscriber holds nothing beyond it. The ring is bounded by bytes (its share
//! of `session_memory_bytes`) as well as by count; a subscriber that falls
//! behind what it keeps gets a `reset`, exactly like a reconnect from a
//! position that was evicted.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use loopchat_proto::{Event, EventBody};
use tokio::sync::watch;

use crate::memory::event_bytes;

/// Events kept for replay per session, whatever their size.
const RING_CAP: usize = 4096;
/// Bytes of events kept per session unless configured otherwise.
pub const DEFAULT_RING_BYTES: usize = 4 * 1024 * 1024;

struct LogState {
    /// Seq of the last event published (`base` before any).
    last_seq: u64,
    /// Consecutive seqs, oldest first.
    ring: VecDeque<(Arc<Event>, usize)>,
    /// Sum of the sizes in `ring`.
    bytes: usize,
}

pub struct EventLog {
    /// Seqs of this relay run start above `base`; see [`seq_base`].
    base: u64,
    /// Most bytes the ring holds.
    budget: usize,
    state: Mutex<LogState>,
    /// The last seq published: what wakes live subscribers.
    live: watch::Sender<u64>,
}

/// Seqs must keep growing across relay restarts so a client's
/// `Last-Event-ID` from before a restart is recognisably old, not mistaken for
/// a position in the new log. The base is the start time in microseconds:
/// it moves forward faster than any session can publish events.
pub fn seq_base() -> u64 {
    (crate::clock::now_millis().max(0) as u64) * 1000
}

impl EventLog {
    pub fn new(base: u64) -> Self {
        Self::with_budget(base, DEFAULT_RING_BYTES)
    }

    /// A log whose ring holds at most `budget` bytes of events.
    pub fn with_budget(base: u64, budget: usize) -> Self {
        Self {
            base,
            budget,
            state: Mutex::new(LogState {
                last_seq: base,
                ring: VecDeque::new(),
                bytes: 0,
            }),
            live: watch::channel(base).0,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.state.lock().last_seq
    }

    /// Subscriptions open on this log.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Bytes the ring holds now.
    pub fn retained_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    pub fn publish(&self, body: EventBody) -> Arc<Event> {
        let mut st = self.state.lock();
        st.last_seq += 1;
        let event = Arc::new(Event {
            seq: st.last_seq,
            body,
        });
        let size = event_bytes(&event);
        st.ring.push_back((event.clone(), size));
        st.bytes += size;
        // Strictly within budget, even if that leaves this event out: it is
        // still handed to whoever is reading now, and a subscriber too far
        // behind to get it from the ring gets a reset.
        while st.ring.len() > RING_CAP || st.bytes > self.budget {
            let Some((_, size)) = st.ring.pop_front() else {
                break;
            };
            st.bytes -= size;
        }
        // Under the lock so the announced seq is always in order.
        self.live.send_replace(st.last_seq);
        event
    }

    /// Drops the replay ring, keeping the seq: a subscriber that asks for
    /// events it missed gets a `reset`, as when the ring has moved on.
    pub fn trim(&self) {
        let mut st = self.state.lock();
        st.ring = VecDeque::new();
        st.bytes = 0;
    }

    /// Live events after now, preceded by the retained events after `since`.
    /// When `since` cannot be served (evicted, from an earlier relay run, or
    /// from the future) the replay is a single `reset` carrying the current
    /// seq, telling the client to reload state and continue from there.
    pub fn subscribe(self: &Arc<Self>, since: Option<u64>) -> Subscription {
        let st = self.state.lock();
        let rx = self.live.subscribe();
        let mut replay = VecDeque::new();
        let mut last = st.last_seq;
        if let Some(since) = since
            && since != st.last_seq
        {
            if since >= self.base
                && since < st.last_seq
                && self.replay_after(&st, since, &mut replay)
            {
                last = since;
            } else {
                replay.push_back(reset(st.last_seq));
            }
        }
        Subscription {
            log: self.clone(),
            replay,
            rx,
            last,
        }
    }

    /// Appends the retained events after `since` (which is below the last
    /// seq); false when some of them are no longer kept.
    fn replay_after(&self, st: &LogState, since: u64, out: &mut VecDeque<Arc<Event>>) -> bool {
        let oldest_kept = st.ring.front().map_or(st.last_seq + 1, |(e, _)| e.seq);
        if since + 1 < oldest_kept {
            return false;
        }
        // Seqs in the ring are consecutive, so the first one wanted is found
        // by position.
        let skip = (since + 1 - oldest_kept) as usize;
        out.extend(st.ring.iter().skip(skip).map(|(e, _)| e.clone()));
        true
    }
}

fn reset(seq: u64) -> Arc<Event> {
    Arc::new(Event {
        seq,
        body: EventBody::Reset,
    })
}

/// A client's view of one log: replay first, then live, each seq once.
pub struct Subscription {
    log: Arc<EventLog>,
    replay: VecDeque<Arc<Event>>,
    rx: watch::Receiver<u64>,
    /// Highest seq handed out (or known to the client).
    last: u64,
}

impl Subscription {
    /// The next event if one is ready now. Unlike polling [`Subscription::next`]
    /// once, this is not subject to tokio's cooperative budget, which can
    /// report "pending" while events are queued.
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        if let Some(e) = self.pop_replay() {
            return Some(e);
        }
        self.rx.borrow_and_update();
        self.fetch();
        self.pop_replay()
    }

    /// The next event; `None` only if the log is gone.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(e) = self.pop_replay() {
                return Some(e);
            }
            // Marked seen before the ring is read: a publish after the read
            // wakes the wait below instead of being missed.
            self.rx.borrow_and_update();
            if self.fetch() {
                continue;
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    fn pop_replay(&mut self) -> Option<Arc<Event>> {
        while let Some(e) = self.replay.pop_front() {
            if matches!(e.body, EventBody::Reset) || e.seq > self.last {
                self.last = self.last.max(e.seq);
                return Some(e);
            }
        }
        None
    }

    /// Queues what was published after `last`, or a reset when the ring no
    /// longer holds all of it (this subscriber fell too far behind). False
    /// when there is nothing new.
    fn fetch(&mut self) -> bool {
        let st = self.log.state.lock();
        if st.last_seq <= self.last {
            return false;
        }
        if !self.log.replay_after(&st, self.last, &mut self.replay) {
            self.replay.push_back(reset(st.last_seq));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopchat_proto::RunState;

    fn delta(t: &str) -> EventBody {
        EventBody::Delta {
            run_id: "r".into(),
            text: t.into(),
        }
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_duplicate() {
        let log = Arc::new(EventLog::new(1000));
        for i in 0..5 {
            log.publish(delta(&i.to_string()));
        }
        let mut sub = log.subscribe(Some(1002));
        log.publish(EventBody::RunEnd {
            run_id: "r".into(),
            state: RunState::Final,
            error: None,
        });
        let mut seqs = Vec::new();
        for _ in 0..4 {
            seqs.push(sub.next().await.unwrap().seq);
        }
        assert_eq!(seqs, vec![1003, 1004, 1005, 1006]);
    }

    #[tokio::test]
    async fn unknown_since_gets_reset() {
        let log = Arc::new(EventLog::new(5000));
        log.publish(delta("a"));
        for since in [10, 4999 - 1, 9999] {
            let now = log.last_seq();
            let mut sub = log.subscribe(Some(since));
            let e = sub.next().await.unwrap();
            assert_eq!(e.body, EventBody::Reset, "since {since}");
            assert_eq!(e.seq, now);
            log.publish(delta("b"));
            assert!(matches!(
                sub.next().await.unwrap().body,
                EventBody::Delta { .. }
            ));
        }
        // caught up: nothing to replay, no reset
        let last = log.last_seq();
        let mut sub = log.subscribe(Some(last));
        log.publish(delta("c"));
        assert_eq!(sub.next().await.unwrap().seq, last + 1);
    }

    #[tokio::test]
    async fn try_next_drains_everything_queued() {
        let log = Arc::new(EventLog::new(0));
        let mut sub = log.subscribe(None);
        for i in 0..900 {
            log.publish(delta(&i.to_string()));
        }
        let mut n = 0;
        while let Some(e) = sub.try_next() {
            n += 1;
            assert_eq!(e.seq, n);
        }
        assert_eq!(n, 900);
        assert!(sub.try_next().is_none());
    }

    #[tokio::test]
    async fn a_slow_subscriber_reads_everything_the_ring_still_holds() {
        let log = Arc::new(EventLog::new(0));
        let mut sub = log.subscribe(None);
        for i in 0..(RING_CAP - 1) {
            log.publish(delta(&i.to_string()));
        }
        for expected in 1..=(RING_CAP as u64 - 1) {
            assert_eq!(sub.next().await.unwrap().seq, expected);
        }
    }

    /// The ring holds bytes, not a count: a few large events push out the
    /// older ones, and a subscriber left behind them gets a reset instead
    /// of keeping them alive.
    #[tokio::test]
    async fn the_ring_evicts_by_bytes() {
        let budget = 1024 * 1024;
        let log = Arc::new(EventLog::with_budget(0, budget));
        let mut behind = log.subscribe(None);
        let mut keeping_up = log.subscribe(None);
        let big = "x".repeat(300 * 1024);
        for _ in 0..10 {
            log.publish(delta(&big));
            assert!(log.retained_bytes() <= budget);
            let e = keeping_up.next().await.unwrap();
            assert!(matches!(&e.body, EventBody::Delta { text, .. } if text.len() == big.len()));
        }
        assert!(log.retained_bytes() > 2 * big.len(), "three of them fit");
        // Ten events were published; the ring keeps the last three.
        let e = behind.next().await.unwrap();
        assert_eq!(e.body, EventBody::Reset);
        assert_eq!(e.seq, 10);
        let replay: Vec<_> = {
            let mut s = log.subscribe(Some(7));
            std::iter::from_fn(|| s.try_next()).map(|e| e.seq).collect()
        };
        assert_eq!(replay, [8, 9, 10]);
        let mut too_old = log.subscribe(Some(6));
        assert_eq!(too_old.try_next().unwrap().body, EventBody::Reset);
        // An event larger than the whole budget is delivered live and not kept.
        log.publish(delta(&"y".repeat(budget + 1)));
        assert!(log.retained_bytes() <= budget);
        assert_eq!(keeping_up.next().await.unwrap().seq, 11);
        let mut after = log.subscribe(Some(10));
        assert_eq!(after.try_next().unwrap().body, EventBody::Reset);
    }

    #[tokio::test]
    async fn a_subscriber_waiting_is_woken_by_a_publish() {
        let log = Arc::new(EventLog::new(0));
        let mut sub = log.subscribe(None);
        let waiting = tokio::spawn(async move { sub.next().await.map(|e| e.seq) });
        tokio::task::yield_now().await;
        log.publish(delta("a"));
        assert_eq!(waiting.await.unwrap(), Some(1));
        assert_eq!(log.subscribers(), 0);
    }
}
