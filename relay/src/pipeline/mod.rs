//! The agent pipeline: one turn = store the user message → call the agent
//! with the session history → stream events → store the reply → `run.end`.
//!
//! Each session has one worker task fed by a FIFO queue, so turns of a
//! session run one at a time in arrival order while sessions run in
//! parallel. The worker, not the HTTP request, owns a run: a client that goes
//! away does not stop it. The worker moves on to the next turn as soon as the
//! reply is *written*; acknowledging it waits for the group commit that makes
//! it durable, outside the turn order, so many turns share one flush.

mod agent_written;
pub mod approvals;
pub mod listing;
mod tool_step;
mod turn;

pub use tool_step::ToolRuntime;

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use loopchat_proto::{ActiveRun, AgentInfo, EventBody, Message, ThinkingLevel};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::attachments::Attachments;
use crate::events::EventLog;
use crate::store::{Foreign, Store, StoreError};

/// Idempotency keys remembered per session in memory (older ones are still
/// found in the transcript's recent messages).
const REMEMBERED_TURNS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the text is empty")]
    EmptyText,
    #[error("unknown attachment {0:?}; upload it first with POST /webchat/attachments")]
    UnknownAttachment(String),
    #[error("{0} attachments on one message; at most {max} are accepted", max = loopchat_proto::MAX_ATTACHMENTS)]
    TooManyAttachments(usize),
    /// A `parentId` / `regenerate` that names no entry (or not a user
    /// message) of the session.
    #[error("{0}")]
    UnknownEntry(String),
    #[error("a turn is already running in session {0:?}")]
    TurnInProgress(String),
    #[error("session {0:?} is being deleted")]
    Archiving(String),
    #[error("the relay is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Agent(String),
    #[error("{0}")]
    AgentTimeout(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`Pipeline::archive`] did not archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveRefused {
    #[error("a turn of session {0:?} is running or queued: stop it before deleting the session")]
    Running(String),
    #[error(transparent)]
    Store(#[from] crate::store::ArchiveError),
}

/// A validated turn request.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub session_key: String,
    pub text: String,
    pub thinking: Option<ThinkingLevel>,
    pub attachment_ids: Vec<String>,
    pub client_id: Option<String>,
    /// Wait behind a running turn (default) instead of failing with 409.
    pub queue: bool,
    /// Where the stored reply is also sent (rpc `deliver` and `to`).
    pub deliver: DeliverTo,
    /// The entry the user message follows (a branch); `None`: the leaf.
    pub parent_id: Option<String>,
    /// Answer this stored user message again rather than store a new one.
    pub regenerate: Option<String>,
    /// The model to use from this turn on (checked against the backend's
    /// list by the caller; Decision 80). `None`: the session's.
    pub model: Option<String>,
    /// File names of the attachments, by id (Decision 82).
    pub attachment_names: std::collections::HashMap<String, String>,
}

/// Where a turn's stored reply is also sent as a notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeliverTo {
    #[default]
    Nowhere,
    /// Every connected window and shell (`deliver: true`).
    Windows,
    /// A configured target (`to`), instead of the windows.
    Target(String),
}

#[derive(Debug, Clone)]
pub struct TurnResult {
    pub session_key: String,
    pub session_id: String,
    pub run_id: String,
    pub message: Message,
    /// Where the request asked the reply to be sent.
    pub deliver: DeliverTo,
    /// Answered from the transcript (a retry of a turn stored before a
    /// restart): no run happened this time.
    pub replayed: bool,
    /// Another turn of the session was waiting when this one finished.
    pub more_queued: bool,
}

pub type TurnOutcome = Result<TurnResult, TurnError>;

/// Told about every finished turn (used for notifications), once its
/// outcome is durable and before it is acknowledged. Called on the runtime:
/// it must return quickly (hand slow work to a task).
pub trait RunObserver: Send + Sync + 'static {
    fn run_finished(&self, session_key: &str, outcome: &TurnOutcome);
}

struct QueuedTurn {
    run_id: String,
    request: TurnRequest,
    cancel: CancellationToken,
    done: watch::Sender<Option<Arc<TurnOutcome>>>,
}

#[derive(Clone)]
struct KnownTurn {
    run_id: String,
    since: u64,
    outcome: watch::Receiver<Option<Arc<TurnOutcome>>>,
}

#[derive(Default)]
struct SessionState {
    active: Option<ActiveRun>,
    /// Queued or running turns.
    pending: usize,
    cancels: HashMap<String, CancellationToken>,
    known: HashMap<String, KnownTurn>,
    known_order: VecDeque<String>,
    /// When the last turn ended; `None` while turns are pending or once
    /// the idle session was trimmed.
    idle_since: Option<Instant>,
    /// Being moved to the archive: no turn may start.
    archiving: bool,
}

/// Per-session runtime: its event log, its queue and its run state.
pub struct SessionRuntime {
    pub key: String,
    pub events: Arc<EventLog>,
    /// Tool calls of this session's run waiting for the user.
    pub approvals: approvals::Approvals,
    queue: mpsc::UnboundedSender<QueuedTurn>,
    state: Mutex<SessionState>,
}

impl SessionRuntime {
    pub fn active_run(&self) -> Option<ActiveRun> {
        self.state.lock().active.clone()
    }

    /// Drops the idempotency key `client_id` if it still names `run_id`.
    fn forget(&self, client_id: &str, run_id: &str) {
        let mut st = self.state.lock();
        if st.known.get(client_id).is_some_and(|k| k.run_id == run_id) {
            st.known.remove(client_id);
            st.known_order.retain(|c| c != client_id);
        }
    }
}

/// What `submit` hands back: the run's id, where its events start, and its
/// outcome once durable.
pub struct Ticket {
    pub run_id: String,
    /// Events of this run have seqs above this.
    pub since: u64,
    pub session: Arc<SessionRuntime>,
    outcome: watch::Receiver<Option<Arc<TurnOutcome>>>,
}

impl Ticket {
    /// The outcome is known (or will never come).
    pub fn is_settled(&self) -> bool {
        self.outcome.borrow().is_some() || self.outcome.has_changed().is_err()
    }

    /// Resolves once [`Ticket::is_settled`] would be true.
    pub async fn settled(&mut self) {
        while !self.is_settled() {
            if self.outcome.changed().await.is_err() {
                return;
            }
        }
    }

    pub async fn outcome(mut self) -> Arc<TurnOutcome> {
        loop {
            if let Some(o) = self.outcome.borrow_and_update().clone() {
                return o;
            }
            if self.outcome.changed().await.is_err() {
                return Arc::new(Err(TurnError::ShuttingDown));
            }
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) attachments: Attachments,
    pub(crate) history_messages: usize,
    /// Bytes of events each session's log keeps for replay.
    ring_bytes: usize,
    seq_base: u64,
    sessions: Mutex<HashMap<String, Arc<SessionRuntime>>>,
    /// Turns between submit and durable outcome.
    busy: AtomicUsize,
    idle: Notify,
    /// Cancels every run: the end of the shutdown grace period.
    hard_stop: CancellationToken,
    closing: std::sync::atomic::AtomicBool,
    observers: Mutex<Vec<Arc<dyn RunObserver>>>,
    /// The agent's tools; none: the model is offered no tools.
    pub(crate) tools: std::sync::OnceLock<Arc<ToolRuntime>>,
    /// `sessions` events, to every stream.
    list_events: tokio::sync::broadcast::Sender<Arc<loopchat_proto::Event>>,
    auto_title: std::sync::atomic::AtomicBool,
    /// Days an archived session is kept; 0: until purged by hand.
    archive_keep_days: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    pub fn new(
        store: Store,
        agent: Arc<dyn Agent>,
        attachments: Attachments,
        history_messages: usize,
    ) -> Self {
        Self::with_ring_bytes(
            store,
            agent,
            attachments,
            history_messages,
            crate::events::DEFAULT_RING_BYTES,
        )
    }

    /// [`Pipeline::new`], each session's event log keeping at most
    /// `ring_bytes` of events for replay.
    pub fn with_ring_bytes(
        store: Store,
        agent: Arc<dyn Agent>,
        attachments: Attachments,
        history_messages: usize,
        ring_bytes: usize,
    ) -> Self {
        let pipeline = Self {
            inner: Arc::new(Inner {
                store,
                agent,
                attachments,
                history_messages,
                ring_bytes,
                seq_base: crate::events::seq_base(),
                sessions: Mutex::new(HashMap::new()),
                busy: AtomicUsize::new(0),
                idle: Notify::new(),
                hard_stop: CancellationToken::new(),
                closing: Default::default(),
                observers: Mutex::new(Vec::new()),
                tools: std::sync::OnceLock::new(),
                list_events: tokio::sync::broadcast::channel(listing::LIST_EVENTS).0,
                auto_title: Default::default(),
                archive_keep_days: std::sync::atomic::AtomicU64::new(30),
            }),
        };
        // Weak: the store outlives nothing here, and a strong reference
        // from it back to the pipeline would keep both alive forever.
        let weak = Arc::downgrade(&pipeline.inner);
        pipeline
            .inner
            .store
            .on_foreign(Arc::new(move |session_id, change| {
                if let Some(inner) = weak.upgrade() {
                    inner.foreign_change(session_id, change);
                }
            }));
        pipeline
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Gives runs these tools (once; a second call is ignored).
    pub fn set_tools(&self, tools: ToolRuntime) {
        let _ = self.inner.tools.set(Arc::new(tools));
    }

    pub fn tools(&self) -> Option<&ToolRuntime> {
        self.inner.tools.get().map(|t| &**t)
    }

    pub fn attachments(&self) -> &Attachments {
        &self.inner.attachments
    }

    pub fn agent_info(&self) -> AgentInfo {
        self.inner.agent.info()
    }

    /// The models a turn may name (Decision 80).
    pub fn models(&self) -> crate::agent::ModelsFuture {
        self.inner.agent.models()
    }

    /// The model a session's next turn uses when it names none; `None` for
    /// a backend without models.
    pub fn session_model(&self, transcript: &crate::store::Transcript) -> Option<String> {
        let info = self.inner.agent.info();
        info.model.as_ref()?;
        turn::origin_for(&info, None, transcript)
            .ok()
            .map(|o| o.model)
    }

    pub fn add_observer(&self, observer: Arc<dyn RunObserver>) {
        self.inner.observers.lock().push(observer);
    }

    /// The runtime of `key` if it was used since the relay started.
    pub fn existing_session(&self, key: &str) -> Option<Arc<SessionRuntime>> {
        self.inner.sessions.lock().get(key).cloned()
    }

    /// How many sessions have a turn running now.
    pub fn runs_in_flight(&self) -> usize {
        self.runtimes()
            .iter()
            .filter(|s| s.active_run().is_some())
            .count()
    }

    /// The sessions with a runtime now, taken out of the map so that each
    /// one's own locks are never taken under the map's.
    fn runtimes(&self) -> Vec<Arc<SessionRuntime>> {
        self.inner.sessions.lock().values().cloned().collect()
    }

    /// The seq every session's log starts from in this relay run.
    pub fn seq_base(&self) -> u64 {
        self.inner.seq_base
    }

    /// The runtime of `key`, created on first use (the session itself is
    /// only created in the store when a turn runs).
    pub fn session(&self, key: &str) -> Arc<SessionRuntime> {
        let mut sessions = self.inner.sessions.lock();
        if let Some(rt) = sessions.get(key) {
            return rt.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = Arc::new(SessionRuntime {
            key: key.to_owned(),
            events: Arc::new(EventLog::with_budget(
                self.inner.seq_base,
                self.inner.ring_bytes,
            )),
            approvals: Default::default(),
            queue: tx,
            state: Mutex::new(SessionState {
                idle_since: Some(Instant::now()),
                ..SessionState::default()
            }),
        });
        sessions.insert(key.to_owned(), rt.clone());
        tokio::spawn(turn::worker(self.inner.clone(), rt.clone(), rx));
        rt
    }

    /// Queues a turn. A request whose `client_id` was seen before gets the
    /// first turn's ticket back instead of a second turn.
    pub fn submit(&self, request: TurnRequest) -> Result<Ticket, TurnError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(TurnError::ShuttingDown);
        }
        if request.regenerate.is_some() {
            if !request.text.trim().is_empty()
                || !request.attachment_ids.is_empty()
                || request.parent_id.is_some()
            {
                return Err(TurnError::UnknownEntry(
                    "regenerate answers a stored message again: no text, attachments or parentId with it"
                        .into(),
                ));
            }
        } else if request.text.trim().is_empty() && request.attachment_ids.is_empty() {
            return Err(TurnError::EmptyText);
        }
        if request.attachment_ids.len() > loopchat_proto::MAX_ATTACHMENTS {
            return Err(TurnError::TooManyAttachments(request.attachment_ids.len()));
        }
        for id in &request.attachment_ids {
            if self.inner.attachments.path(id).is_none() {
                return Err(TurnError::UnknownAttachment(id.clone()));
            }
        }
        let rt = self.session(&request.session_key);
        let mut st = rt.state.lock();
        if let Some(known) = request.client_id.as_ref().and_then(|c| st.known.get(c)) {
            return Ok(Ticket {
                run_id: known.run_id.clone(),
                since: known.since,
                session: rt.clone(),
                outcome: known.outcome.clone(),
            });
        }
        if st.archiving {
            return Err(TurnError::Archiving(request.session_key.clone()));
        }
        if !request.queue && st.pending > 0 {
            return Err(TurnError::TurnInProgress(request.session_key.clone()));
        }
        let run_id = uuid::Uuid::new_v4().to_string();
        let cancel = self.inner.hard_stop.child_token();
        let (done, outcome) = watch::channel(None);
        let since = rt.events.last_seq();
        if let Some(client_id) = &request.client_id {
            st.known.insert(
                client_id.clone(),
                KnownTurn {
                    run_id: run_id.clone(),
                    since,
                    outcome: outcome.clone(),
                },
            );
            st.known_order.push_back(client_id.clone());
            if st.known_order.len() > REMEMBERED_TURNS
                && let Some(old) = st.known_order.pop_front()
            {
                st.known.remove(&old);
            }
        }
        st.pending += 1;
        st.idle_since = None;
        st.cancels.insert(run_id.clone(), cancel.clone());
        self.inner.busy.fetch_add(1, Ordering::SeqCst);
        // Sent under the state lock: queue order is submit order.
        let queued = QueuedTurn {
            run_id: run_id.clone(),
            request,
            cancel,
            done,
        };
        if rt.queue.send(queued).is_err() {
            st.pending -= 1;
            self.inner.turn_settled();
            return Err(TurnError::ShuttingDown);
        }
        drop(st);
        Ok(Ticket {
            run_id,
            since,
            session: rt,
            outcome,
        })
    }

    /// Deletes `key` to the archive. Refused while a turn of it is queued
    /// or running (stop it first): the turn would write to a transcript on
    /// its way out. Turns submitted meanwhile are refused.
    pub async fn archive(
        &self,
        key: &str,
    ) -> Result<(String, crate::store::ArchivedEntry), ArchiveRefused> {
        let rt = self.session(key);
        {
            let mut st = rt.state.lock();
            if st.pending > 0 {
                return Err(ArchiveRefused::Running(key.to_owned()));
            }
            if st.archiving {
                return Err(ArchiveRefused::Running(key.to_owned()));
            }
            st.archiving = true;
        }
        let result = self.inner.store.archive(key).await;
        rt.state.lock().archiving = false;
        let archived = result?;
        self.list_changed(key, loopchat_proto::SessionChange::Archived);
        Ok(archived)
    }

    /// Stops the running turn of `key` (or the queued/running turn
    /// `run_id`). Returns the run that was stopped.
    pub fn abort(&self, key: &str, run_id: Option<&str>) -> Option<String> {
        let rt = self.inner.sessions.lock().get(key)?.clone();
        let st = rt.state.lock();
        let target = match run_id {
            Some(id) => st.cancels.contains_key(id).then(|| id.to_owned())?,
            None => st.active.as_ref()?.run_id.clone(),
        };
        st.cancels.get(&target)?.cancel();
        Some(target)
    }

    /// Gives back what sessions without a turn for `idle` keep in memory for
    /// quick answers: the event replay ring, the remembered idempotency keys
    /// and the transcript's recent-message window. All of it is rebuilt on
    /// demand, as after a restart: a subscriber that missed events gets a
    /// `reset`, a retried key is found in the transcript. Returns how many
    /// sessions were trimmed.
    pub fn trim_idle(&self, idle: Duration) -> usize {
        let runtimes = self.runtimes();
        let mut trimmed = 0;
        for rt in runtimes {
            {
                let mut st = rt.state.lock();
                match st.idle_since {
                    Some(since) if since.elapsed() >= idle => {}
                    _ => continue,
                }
                st.idle_since = None;
                st.known = HashMap::new();
                st.known_order = VecDeque::new();
            }
            rt.events.trim();
            // A transcript nobody opened holds nothing to give back.
            if let Some(entry) = self.inner.store.session(&rt.key)
                && let Some(transcript) = self.inner.store.open_transcript(&entry.session_id)
            {
                transcript.release_recent();
            }
            trimmed += 1;
        }
        trimmed
    }

    /// Runs [`Pipeline::trim_idle`] every so often until `stop`.
    pub async fn trim_idle_sessions(self, idle: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(
            (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let trimmed = self.trim_idle(idle);
            if trimmed > 0 {
                tracing::debug!(trimmed, "trimmed idle sessions");
                give_back_free_memory().await;
            }
        }
    }

    /// Looks once for what other programs wrote: the session index, and the
    /// transcripts of the sessions someone is subscribed to (their lines
    /// become `message` events). One `stat` of the index and two system
    /// calls per watched session, so the cost follows the number of open
    /// streams, not the number of sessions; a session nobody watches is
    /// brought up to date when it is read or written. Blocking.
    pub fn check_foreign_writers(&self) {
        if let Err(e) = self.inner.store.refresh_index() {
            tracing::debug!(error = %e, "cannot look at the session index");
        }
        let watched = self
            .runtimes()
            .into_iter()
            .filter(|rt| rt.events.subscribers() > 0);
        for rt in watched {
            let key = &rt.key;
            if let Some(entry) = self.inner.store.session(key)
                && let Some(transcript) = self.inner.store.open_transcript(&entry.session_id)
                && let Err(e) = transcript.check_foreign()
            {
                tracing::debug!(session = %key, error = %e, "cannot look at a transcript");
            }
        }
    }

    /// Runs [`Pipeline::check_foreign_writers`] every `every` until `stop`.
    pub async fn watch_foreign_writers(self, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let pipeline = self.clone();
            let _ = tokio::task::spawn_blocking(move || pipeline.check_foreign_writers()).await;
        }
    }

    /// Graceful stop: refuse new turns, let running ones finish for `grace`,
    /// then abort the rest (stored as aborted) and flush the index.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closing.store(true, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.inner.wait_idle())
            .await
            .is_err()
        {
            tracing::info!("aborting turns still running after the grace period");
            self.inner.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.wait_idle()).await;
        }
        if let Err(e) = self.inner.store.flush().await {
            tracing::error!(error = %e, "could not flush the session index");
        }
    }
}

/// glibc keeps freed memory in its arenas for reuse, so dropping a session's
/// caches does not lower the relay's RSS by itself (measured: 140 MiB before
/// and after trimming 40 idle sessions). `malloc_trim` hands the free pages
/// back; it walks every arena, so it runs off the async threads.
async fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free heap pages; it touches no
        // memory the program uses.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

impl Inner {
    /// Another program's change to a transcript, as events of every
    /// session (with a log) whose key names that transcript.
    fn foreign_change(&self, session_id: &str, change: Foreign<'_>) {
        let keys = self.store.keys_of(session_id);
        let runtimes: Vec<_> = {
            let sessions = self.sessions.lock();
            keys.iter()
                .filter_map(|k| sessions.get(k).cloned())
                .collect()
        };
        // A backend that writes the transcript itself (pi) is the "other
        // program" here: its lines during a run are that run's messages.
        let own_writer = self.agent.writes_transcript();
        for rt in runtimes {
            match &change {
                Foreign::Message(m) => rt.events.publish(EventBody::Message {
                    message: m.message.clone(),
                    run_id: own_writer
                        .then(|| rt.active_run().map(|a| a.run_id))
                        .flatten(),
                }),
                // What clients have may no longer be in the file: they
                // reload, as after a reset they could not be replayed past.
                Foreign::Replaced => rt.events.publish(EventBody::Reset),
            };
        }
    }

    fn turn_settled(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, or a wake-up in between is lost.
            notified.as_mut().enable();
            if self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests;
