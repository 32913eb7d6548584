//! One ordered event log per session: seq numbers, bounded replay, broadcast.
//!
//! Subscribing takes the replay and the live receiver under one lock, which
//! is what guarantees "no gap and no duplicate" between what a reconnecting
//! client missed and what it sees live.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use loopchat_proto::{Event, EventBody};
use tokio::sync::broadcast;

/// Events kept for replay per session.
const RING_CAP: usize = 4096;
/// Live events buffered per subscriber before it counts as lagging.
const CHANNEL_CAP: usize = 1024;

struct LogState {
    /// Seq of the last event published (`base` before any).
    last_seq: u64,
    ring: VecDeque<Arc<Event>>,
}

pub struct EventLog {
    /// Seqs of this relay run start above `base`; see [`seq_base`].
    base: u64,
    state: Mutex<LogState>,
    live: broadcast::Sender<Arc<Event>>,
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
        Self {
            base,
            state: Mutex::new(LogState {
                last_seq: base,
                ring: VecDeque::new(),
            }),
            live: broadcast::channel(CHANNEL_CAP).0,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_seq
    }

    pub fn publish(&self, body: EventBody) -> Arc<Event> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.last_seq += 1;
        let event = Arc::new(Event {
            seq: st.last_seq,
            body,
        });
        st.ring.push_back(event.clone());
        if st.ring.len() > RING_CAP {
            st.ring.pop_front();
        }
        // Sent under the lock so live order equals seq order.
        let _ = self.live.send(event.clone());
        event
    }

    /// Drops the replay ring, keeping the seq: a subscriber that asks for
    /// events it missed gets a `reset`, as when the ring has moved on.
    pub fn trim(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.ring = VecDeque::new();
    }

    /// Live events after now, preceded by the retained events after `since`.
    /// When `since` cannot be served (evicted, from an earlier relay run, or
    /// from the future) the replay is a single `reset` carrying the current
    /// seq, telling the client to reload state and continue from there.
    pub fn subscribe(self: &Arc<Self>, since: Option<u64>) -> Subscription {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.live.subscribe();
        let mut replay = VecDeque::new();
        if let Some(since) = since
            && since != st.last_seq
        {
            let oldest_kept = st.ring.front().map_or(st.last_seq + 1, |e| e.seq);
            let servable = since >= self.base && since < st.last_seq && since + 1 >= oldest_kept;
            if servable {
                replay.extend(st.ring.iter().filter(|e| e.seq > since).cloned());
            } else {
                replay.push_back(Arc::new(Event {
                    seq: st.last_seq,
                    body: EventBody::Reset,
                }));
            }
        }
        let last = since.filter(|_| replay.is_empty() || !is_reset(&replay));
        Subscription {
            log: self.clone(),
            replay,
            rx,
            last: last.unwrap_or(st.last_seq).min(st.last_seq),
        }
    }
}

fn is_reset(replay: &VecDeque<Arc<Event>>) -> bool {
    matches!(replay.front().map(|e| &e.body), Some(EventBody::Reset))
}

/// A client's view of one log: replay first, then live, each seq once.
pub struct Subscription {
    log: Arc<EventLog>,
    replay: VecDeque<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Highest seq handed out (or known to the client).
    last: u64,
}

impl Subscription {
    /// The next event if one is ready now. Unlike polling [`Subscription::next`]
    /// once, this is not subject to tokio's cooperative budget, which can
    /// report "pending" while events are queued.
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(e) = self.pop_replay() {
                return Some(e);
            }
            match self.rx.try_recv() {
                Ok(e) => {
                    if let Some(e) = self.accept_live(e) {
                        return Some(e);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.catch_up(),
                Err(_) => return None,
            }
        }
    }

    /// The next event; `None` only if the log is gone.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(e) = self.pop_replay() {
                return Some(e);
            }
            match self.rx.recv().await {
                Ok(e) => {
                    if let Some(e) = self.accept_live(e) {
                        return Some(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(),
                Err(broadcast::error::RecvError::Closed) => return None,
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

    /// Live events at or below what was already handed out are duplicates
    /// of the replay.
    fn accept_live(&mut self, e: Arc<Event>) -> Option<Arc<Event>> {
        (e.seq > self.last).then(|| {
            self.last = e.seq;
            e
        })
    }

    /// Too slow for the live channel: catch up from the ring (or get a
    /// reset if even that has moved on).
    fn catch_up(&mut self) {
        let fresh = self.log.subscribe(Some(self.last));
        self.replay = fresh.replay;
        self.rx = fresh.rx;
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
    async fn lagging_subscriber_catches_up_from_the_ring() {
        let log = Arc::new(EventLog::new(0));
        let mut sub = log.subscribe(None);
        for i in 0..(CHANNEL_CAP + 100) {
            log.publish(delta(&i.to_string()));
        }
        for expected in 1..=(CHANNEL_CAP as u64 + 100) {
            assert_eq!(sub.next().await.unwrap().seq, expected);
        }
    }
}
