//! The session worker and the steps of one turn.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use loopchat_proto::{
    ActiveRun, Content, EventBody, ReplyStats, Role, RunState, ThinkingLevel, ToolStatus, Usage,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tool_step;
use super::{
    Inner, QueuedTurn, SessionRuntime, ToolRuntime, TurnError, TurnOutcome, TurnRequest, TurnResult,
};
use crate::agent::{AgentError, AgentEvent, AgentRequest, ChatTurn, ImageFile, ToolCall};
use crate::attachments::{Attachments, Kind};
use crate::clock::now_millis;
use crate::store::{
    NewMessage, Origin, SessionHandle, StoreError, StoredMessage, ToolResultMeta, Transcript,
};
use crate::tools::ToolSpec;
use base64::Engine;

pub(super) async fn worker(
    inner: Arc<Inner>,
    rt: Arc<SessionRuntime>,
    mut queue: mpsc::UnboundedReceiver<QueuedTurn>,
) {
    while let Some(turn) = queue.recv().await {
        let QueuedTurn {
            run_id,
            request,
            cancel,
            done,
        } = turn;
        let (mut outcome, durable) = run(&inner, &rt, &run_id, &request, &cancel).await;
        {
            let mut st = rt.state.lock();
            st.active = None;
            st.pending -= 1;
            if st.pending == 0 {
                st.idle_since = Some(std::time::Instant::now());
            }
            st.cancels.remove(&run_id);
            if let Ok(r) = &mut outcome {
                r.more_queued = st.pending > 0;
            }
        }
        // Acknowledge only once durable, but let the next turn start now.
        let inner = inner.clone();
        let rt = rt.clone();
        let key = rt.key.clone();
        let client_id = request.client_id;
        tokio::spawn(async move {
            let mut outcome = outcome;
            if let Some((transcript, generation)) = durable
                && let Err(e) = transcript.durable(generation).await
            {
                tracing::error!(session = %key, error = %e, "reply could not be made durable");
                outcome = Err(TurnError::Store(e));
            }
            // A turn the store could not take (a full disk) is not an answer
            // to remember: a retry with the same id runs it again, as it
            // would after a restart, and finds its user message if that
            // was stored.
            if let (Err(TurnError::Store(_)), Some(client_id)) = (&outcome, &client_id) {
                rt.forget(client_id, &run_id);
            }
            let observers = inner.observers.lock().clone();
            for o in observers {
                o.run_finished(&key, &outcome);
            }
            let _ = done.send(Some(Arc::new(outcome)));
            inner.turn_settled();
        });
    }
}

/// Writes to wait for before the outcome may be acknowledged.
pub(super) type Durable = Option<(Arc<Transcript>, u64)>;

/// A message as appended, with the generation that makes it durable.
type Appended = (Arc<StoredMessage>, u64);

async fn run(
    inner: &Arc<Inner>,
    rt: &SessionRuntime,
    run_id: &str,
    request: &TurnRequest,
    cancel: &CancellationToken,
) -> (TurnOutcome, Durable) {
    let session = match inner.store.session_handle(&request.session_key).await {
        Ok(s) => s,
        Err(e) => return (Err(e.into()), None),
    };
    if inner.agent.writes_transcript() {
        return super::agent_written::run(inner, rt, run_id, request, cancel, &session).await;
    }
    let origin = match origin_for(
        &inner.agent.info(),
        request.model.as_deref(),
        session.transcript(),
    ) {
        Ok(o) => o,
        Err(e) => return (Err(e.into()), None),
    };
    let turn = Turn {
        inner,
        rt,
        run_id,
        request,
        cancel,
        session: &session,
        origin,
    };
    let asked = match turn.find_or_store_user_message() {
        Ok(Found::Answered(reply)) => return turn.replay(&reply),
        Ok(Found::Asked(asked)) => asked,
        Err(e) => return (Err(e), None),
    };
    publish_run_start(rt, run_id);
    let history = match turn.history(&asked) {
        Ok(history) => history,
        Err(e) => return end_with_error(rt, run_id, e.into()),
    };
    let parent = match turn.reply_parent(&asked.user_id) {
        Ok(parent) => parent,
        Err(e) => return end_with_error(rt, run_id, e.into()),
    };
    let mut generated = match turn.agent_loop(history, parent).await {
        Ok(generated) => generated,
        Err(e) => return end_with_error(rt, run_id, e.into()),
    };
    let reply = match turn.store_reply(&mut generated, asked.user_id) {
        Ok(reply) => reply,
        Err(e) => return end_with_error(rt, run_id, e.into()),
    };
    turn.finish(generated, reply, asked.first_title)
}

/// One turn of the relay's own agent loop: what its steps share.
struct Turn<'a> {
    inner: &'a Arc<Inner>,
    rt: &'a SessionRuntime,
    run_id: &'a str,
    request: &'a TurnRequest,
    cancel: &'a CancellationToken,
    session: &'a SessionHandle,
    /// Who writes the reply, with the model it asks for.
    origin: Origin,
}

/// What the request leads to.
enum Found {
    /// A keyed turn answered before a restart: its stored reply.
    Answered(Arc<StoredMessage>),
    /// A user message to answer now.
    Asked(Asked),
}

/// The user message a turn answers.
struct Asked {
    /// What the reply's `replyTo` names.
    user_id: String,
    /// A keyed turn run again after a crash answers its own user message in
    /// the context it had then, not after turns that landed since.
    resumed: Option<Arc<StoredMessage>>,
    /// The title a new session got from its first message.
    first_title: Option<String>,
}

/// What the agent loop produced for the reply.
struct Generated {
    ended: Result<RunState, AgentError>,
    text: String,
    thought: String,
    /// The last request's counts and timings.
    meter: Meter,
    /// Tool steps taken.
    steps: usize,
    /// Where the next assistant entry hangs; `None`: at the leaf.
    parent: Option<String>,
}

impl Generated {
    /// How the run ended, as `run.end` and the reply say it.
    fn state(&self) -> (RunState, Option<String>) {
        match &self.ended {
            Ok(s) => (*s, None),
            Err(e) => (RunState::Error, Some(e.to_string())),
        }
    }
}

/// One request to the agent, streamed.
struct Response {
    ended: Result<RunState, AgentError>,
    /// The tools it asked for: run by the turn, not published as they come.
    calls: Vec<ToolCall>,
    text: String,
    thought: String,
    meter: Meter,
}

impl Turn<'_> {
    fn transcript(&self) -> &Arc<Transcript> {
        self.session.transcript()
    }

    fn result(&self, message: loopchat_proto::Message) -> TurnResult {
        TurnResult {
            session_key: self.request.session_key.clone(),
            session_id: self.session.session_id().to_owned(),
            run_id: self.run_id.to_owned(),
            message,
            deliver: self.request.deliver.clone(),
            replayed: false,
            more_queued: false,
        }
    }

    /// The user message of a retried key or of a regenerate, else the one
    /// this turn stores.
    fn find_or_store_user_message(&self) -> Result<Found, TurnError> {
        let transcript = self.transcript();
        // A retry of a turn this relay stored before a restart.
        let earlier = match &self.request.client_id {
            Some(c) => transcript.find_turn(c)?,
            None => None,
        };
        // Regenerating answers a stored user message again, like a resumed turn.
        let earlier = match (&self.request.regenerate, earlier) {
            (Some(id), None) => match transcript.message(id)? {
                Some(user) if user.message.role == Role::User => Some((user, None)),
                _ => {
                    return Err(TurnError::UnknownEntry(format!(
                        "no user message {id:?} in this session"
                    )));
                }
            },
            (_, earlier) => earlier,
        };
        Ok(match earlier {
            Some((_, Some(reply))) => Found::Answered(reply),
            Some((user, None)) => Found::Asked(Asked {
                user_id: user.message.id.clone(),
                resumed: Some(user),
                first_title: None,
            }),
            None => Found::Asked(self.store_user_message()?),
        })
    }

    /// The outcome of a keyed turn answered before a restart.
    fn replay(&self, reply: &StoredMessage) -> (TurnOutcome, Durable) {
        let replayed = TurnResult {
            replayed: true,
            ..self.result(reply.message.clone())
        };
        // Found in the file is not yet durable: the run that wrote it
        // may have died (or failed its flush) before the flush. Answer
        // only after one.
        let barrier = self.transcript().barrier();
        (Ok(replayed), Some((self.transcript().clone(), barrier)))
    }

    /// Stores the request's message, after what a crash left unfinished and
    /// below pi's settings entries; a new session is titled from it.
    fn store_user_message(&self) -> Result<Asked, TurnError> {
        let (request, origin, transcript) = (self.request, &self.origin, self.transcript());
        close_interrupted(transcript, self.rt)?;
        let mut new = NewMessage::new(
            Role::User,
            user_content(
                &request.text,
                &request.attachment_ids,
                &request.attachment_names,
                &self.inner.attachments,
            ),
            now_millis(),
        );
        new.client_id = request.client_id.clone();
        // pi's model_change / thinking_level_change entries before the
        // turn they apply to.
        let level = self.session.thinking(request.thinking);
        if let Some(parent) = &request.parent_id
            && transcript.message(parent)?.is_none()
        {
            return Err(TurnError::UnknownEntry(format!(
                "parentId {parent:?} names no message of this session"
            )));
        }
        // A branch hangs right under the chosen entry, a sibling of what
        // was there (as pi's /tree makes it); the settings above the fork
        // still hold on its path.
        new.parent_id = request.parent_id.clone();
        // An edit sent under another model: its `model_change` hangs at
        // the fork too, above the edited message.
        if let Some(parent) = &request.parent_id
            && self.changes_model()?
        {
            new.parent_id =
                Some(transcript.note_model_under(parent, &origin.provider, &origin.model)?);
        }
        let first = new.parent_id.is_none()
            && transcript
                .latest(1)
                .is_ok_and(|p| p.messages.is_empty() && !p.has_more);
        if new.parent_id.is_none() {
            transcript.note_settings(
                Some((&origin.provider, &origin.model)),
                Some(level.as_str()),
            )?;
        }
        let (stored, _) = append_published(transcript, self.rt, self.run_id, &new)?;
        let mut first_title = None;
        if first {
            let key = &request.session_key;
            // Durable with the reply (same file, earlier generation).
            first_title = super::listing::title_from(&request.text).filter(
                |title| match transcript.rename_if(None, title) {
                    Ok(written) => written.is_some(),
                    Err(e) => {
                        tracing::warn!(session = %key, error = %e, "could not title a new session");
                        false
                    }
                },
            );
            self.inner
                .list_changed(key, loopchat_proto::SessionChange::Created);
        }
        Ok(Asked {
            user_id: stored.message.id.clone(),
            resumed: None,
            first_title,
        })
    }

    /// The transcript is on another model than this turn's: pi's
    /// `model_change` must say so.
    fn changes_model(&self) -> Result<bool, StoreError> {
        let current = self.transcript().model()?;
        Ok(!current.is_some_and(|(provider, model)| {
            provider == self.origin.provider && model == self.origin.model
        }))
    }

    /// The conversation the agent is given.
    fn history(&self, asked: &Asked) -> Result<Vec<ChatTurn>, StoreError> {
        let limit = self.inner.history_messages;
        let page = match &asked.resumed {
            Some(user) => self.transcript().through(user, limit)?,
            None => self.transcript().latest_plain(limit)?,
        };
        Ok(page
            .messages
            .iter()
            .filter_map(|m| chat_turn(m, &self.inner.attachments))
            .collect())
    }

    /// Where the run's first assistant entry hangs.
    fn reply_parent(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        // A regenerated reply is a new child of the message it answers: the
        // first assistant entry of the run hangs there, the rest follow it. (A
        // turn resumed after a crash goes on at the leaf instead: hanging it
        // under its message would hide the turns that landed since.)
        if self.request.regenerate.is_none() {
            return Ok(None);
        }
        // Answered again under another model: pi's `model_change` goes between
        // the message and the new reply, so that the branch says which model
        // it is on (and a continuation by pi uses it).
        if self.changes_model()? {
            let origin = &self.origin;
            return self
                .transcript()
                .note_model_under(user_id, &origin.provider, &origin.model)
                .map(Some);
        }
        Ok(Some(user_id.to_owned()))
    }

    /// Asks the agent, runs the tools it calls and asks again with their
    /// results, until it answers without tools, fails or is stopped.
    async fn agent_loop(
        &self,
        mut history: Vec<ChatTurn>,
        mut parent: Option<String>,
    ) -> Result<Generated, StoreError> {
        let thinking = self.session.thinking(self.request.thinking);
        let tools = self.inner.tools.get().cloned();
        let specs: Arc<[ToolSpec]> = match &tools {
            Some(t) => t.toolbox.specs().into(),
            None => Arc::from(Vec::new()),
        };
        let mut steps = 0usize;
        let mut tools_ended_at = None;
        let (ended, text, thought, meter) = loop {
            let Response {
                ended,
                calls,
                text,
                thought,
                meter,
            } = self
                .ask_agent(&history, thinking, &specs, tools_ended_at.take())
                .await;
            let arrived = Instant::now();
            let Some(tools) = tools.as_deref() else {
                break (ended, text, thought, meter);
            };
            if !matches!(ended, Ok(RunState::Final)) || calls.is_empty() {
                break (ended, text, thought, meter);
            }
            // The model asked for tools: its message (text and toolCall
            // blocks, pi's shape), then one toolResult per call, each stored
            // as it is known.
            steps += 1;
            let mut new = NewMessage::new(
                Role::Assistant,
                tool_use_content(&text, &thought, &calls),
                now_millis(),
            );
            new.stop_reason = Some("toolUse".into());
            new.origin = Some(self.origin.clone());
            meter.finish(&mut new);
            new.parent_id = parent.take();
            append_published(self.transcript(), self.rt, self.run_id, &new)?;
            let mut turn = ChatTurn::new(Role::Assistant, text);
            turn.tool_calls = calls.clone();
            history.push(turn);
            let over = steps > tools.max_steps;
            self.run_tools(tools, &calls, arrived, over, &mut history)
                .await?;
            // What the reply holds is only what comes after the tool step.
            let (text, thought) = (String::new(), String::new());
            if self.cancel.is_cancelled() {
                break (Ok(RunState::Aborted), text, thought, meter);
            }
            if over {
                let error = AgentError::Failed(format!(
                    "the run stopped after {} tool steps: the model kept calling tools \
                     (raise [tools] max_steps to allow more)",
                    tools.max_steps
                ));
                break (Err(error), text, thought, meter);
            }
            tools_ended_at = Some(Instant::now());
        };
        Ok(Generated {
            ended,
            text,
            thought,
            meter,
            steps,
            parent,
        })
    }

    /// One request to the agent, its events published as they come.
    async fn ask_agent(
        &self,
        history: &[ChatTurn],
        thinking: ThinkingLevel,
        specs: &Arc<[ToolSpec]>,
        tools_ended_at: Option<Instant>,
    ) -> Response {
        let mut meter = Meter::start();
        let mut stream = self.inner.agent.run(AgentRequest {
            session_key: self.request.session_key.clone(),
            run_id: self.run_id.to_owned(),
            history: history.to_vec(),
            thinking,
            tools: specs.clone(),
            tools_ended_at,
            transcript: None,
            abort: self.cancel.clone(),
            model: Some(self.origin.model.clone()),
        });
        let (mut text, mut thought) = (String::new(), String::new());
        let mut calls: Vec<ToolCall> = Vec::new();
        let ended: Result<RunState, AgentError> = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break Ok(RunState::Aborted),
                item = stream.next() => match item {
                    Some(Ok(AgentEvent::ToolCall(c))) => calls.push(c),
                    Some(Ok(event)) => {
                        meter.saw(&event);
                        publish_agent_event(self.rt, self.run_id, event, &mut text, &mut thought);
                    }
                    Some(Err(e)) => break Err(e),
                    None => break Ok(RunState::Final),
                },
            }
        };
        // Dropping the stream is what stops the backend (closes the upstream
        // request, kills the command).
        drop(stream);
        Response {
            ended,
            calls,
            text,
            thought,
            meter,
        }
    }

    /// Runs one tool step's calls (or says why not), storing each result as
    /// it is known and adding it to the history.
    async fn run_tools(
        &self,
        tools: &ToolRuntime,
        calls: &[ToolCall],
        arrived: Instant,
        over: bool,
        history: &mut Vec<ChatTurn>,
    ) -> Result<(), StoreError> {
        let step = tool_step::Step {
            tools,
            rt: self.rt,
            run_id: self.run_id,
            cancel: self.cancel,
        };
        for call in calls {
            let result = if over {
                tool_step::not_run(
                    &step,
                    call,
                    ToolStatus::Error,
                    format!(
                        "Not run: this run reached its limit of {} tool steps.",
                        tools.max_steps
                    ),
                )
            } else if self.cancel.is_cancelled() {
                tool_step::not_run(&step, call, ToolStatus::Aborted, "Operation aborted".into())
            } else {
                step.run(call, arrived).await
            };
            let mut stored = NewMessage::new(
                Role::ToolResult,
                Content::Parts(result.content.clone()),
                now_millis(),
            );
            stored.tool_result = Some(ToolResultMeta {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                is_error: result.is_error,
            });
            append_published(self.transcript(), self.rt, self.run_id, &stored)?;
            history.push(tool_result_turn(&call.id, &stored.content));
        }
        Ok(())
    }

    /// Stores the reply, if there is one to keep.
    fn store_reply(
        &self,
        generated: &mut Generated,
        user_id: String,
    ) -> Result<Option<Appended>, StoreError> {
        let (state, error) = generated.state();
        // Keep what was generated: a complete or stopped reply always, a failed
        // one only if it produced something.
        // After tool steps, always: the transcript must not end in a tool
        // result, which reads as a run that was cut off.
        let keep = state != RunState::Error
            || !generated.text.is_empty()
            || !generated.thought.is_empty()
            || generated.steps > 0;
        if !keep {
            return Ok(None);
        }
        let mut new = NewMessage::new(
            Role::Assistant,
            assistant_content(&generated.text, &generated.thought),
            now_millis(),
        );
        new.reply_to = Some(user_id);
        new.stop_reason = (state != RunState::Final).then(|| state.as_str().to_owned());
        new.error_message = error;
        new.origin = Some(self.origin.clone());
        generated.meter.finish(&mut new);
        // A regenerated reply is a new child of the message it answers. (A
        // turn resumed after a crash goes on at the leaf instead: hanging it
        // under its message would hide the turns that landed since.)
        new.parent_id = generated.parent.take();
        append_published(self.transcript(), self.rt, self.run_id, &new).map(Some)
    }

    /// `run.end`, the session's activity, a new session's title from the
    /// model, and the outcome with the write it waits for.
    fn finish(
        &self,
        generated: Generated,
        reply: Option<Appended>,
        first_title: Option<String>,
    ) -> (TurnOutcome, Durable) {
        let (request, key) = (self.request, &self.request.session_key);
        let (state, error) = generated.state();
        publish_run_end(self.rt, self.run_id, state, error);
        self.session
            .touch(now_millis(), request.thinking.map(ThinkingLevel::as_str));
        self.inner
            .list_changed(key, loopchat_proto::SessionChange::Updated);
        if let (Some(title), Ok(_), Some((stored, _))) = (first_title, &generated.ended, &reply) {
            self.inner.auto_title(
                key,
                self.transcript().clone(),
                title,
                request.text.clone(),
                stored.message.content.text(),
            );
        }
        let durable = reply.as_ref().map(|(_, g)| (self.transcript().clone(), *g));
        let outcome = match (generated.ended, reply) {
            (Ok(_), Some((stored, _))) => Ok(self.result(stored.message.clone())),
            (Err(AgentError::Timeout(m)), _) => Err(TurnError::AgentTimeout(m)),
            (Err(AgentError::Failed(m)), _) => Err(TurnError::Agent(m)),
            (Ok(_), None) => Err(TurnError::Agent("the reply was not stored".into())),
        };
        (outcome, durable)
    }
}

/// Publishes one event of the agent's stream, adding text and thinking to
/// what the reply will hold.
pub(super) fn publish_agent_event(
    rt: &SessionRuntime,
    run_id: &str,
    event: AgentEvent,
    text: &mut String,
    thought: &mut String,
) {
    let run_id = run_id.to_owned();
    let body = match event {
        AgentEvent::Delta(d) => {
            text.push_str(&d);
            EventBody::Delta { run_id, text: d }
        }
        AgentEvent::Thinking(t) => {
            thought.push_str(&t);
            EventBody::Thinking { run_id, text: t }
        }
        AgentEvent::ToolArgs {
            call_id,
            name,
            delta,
        } => EventBody::ToolArgs {
            run_id,
            call_id,
            name,
            delta,
        },
        AgentEvent::ToolStart {
            call_id,
            name,
            args,
        } => EventBody::ToolStart {
            run_id,
            call_id,
            name,
            args,
        },
        AgentEvent::ToolOutput { call_id, text } => EventBody::ToolUpdate {
            run_id,
            call_id,
            text,
        },
        AgentEvent::ToolEnd {
            call_id,
            is_error,
            duration_ms,
        } => EventBody::ToolEnd {
            run_id,
            call_id,
            status: if is_error {
                ToolStatus::Error
            } else {
                ToolStatus::Ok
            },
            duration_ms,
        },
        // The relay's own tool loop takes complete calls (`run`); a backend
        // that runs its tools itself sends none.
        AgentEvent::ToolCall(_) => return,
        // Counted by the turn's `Meter`, stored with the reply.
        AgentEvent::Usage { .. } => return,
    };
    rt.events.publish(body);
}

/// `run.start`, and the run is the session's active one.
pub(super) fn publish_run_start(rt: &SessionRuntime, run_id: &str) {
    let start = rt.events.publish(EventBody::RunStart {
        run_id: run_id.to_owned(),
    });
    rt.state.lock().active = Some(ActiveRun {
        run_id: run_id.to_owned(),
        start_seq: start.seq,
    });
}

pub(super) fn end_with_error(
    rt: &SessionRuntime,
    run_id: &str,
    error: TurnError,
) -> (TurnOutcome, Durable) {
    publish_run_end(rt, run_id, RunState::Error, Some(error.to_string()));
    (Err(error), None)
}

/// The run is no longer active *before* anyone can see `run.end`: a client
/// that reads `/webchat/info` after the event must not find the run still
/// going (the worker's own bookkeeping comes later).
pub(super) fn publish_run_end(
    rt: &SessionRuntime,
    run_id: &str,
    state: RunState,
    error: Option<String>,
) {
    rt.state.lock().active = None;
    rt.events.publish(EventBody::RunEnd {
        run_id: run_id.to_owned(),
        state,
        error,
    });
}

/// Who wrote an assistant message, in pi's terms (`api` as pi names the
/// OpenAI chat completions protocol; the other backends are loopchat's).
fn origin_of(agent: &loopchat_proto::AgentInfo) -> Origin {
    let api = match agent.backend.as_str() {
        "openai" => "openai-completions".to_owned(),
        other => format!("loopchat-{other}"),
    };
    Origin {
        api,
        provider: format!("loopchat-{}", agent.backend),
        model: agent.model.clone().unwrap_or_else(|| agent.backend.clone()),
    }
}

/// Who writes this turn's reply, with the model it asks for: the request's
/// choice, else the newest one this backend was given on the conversation's
/// path, else the configured one (Decision 80).
pub(super) fn origin_for(
    agent: &loopchat_proto::AgentInfo,
    chosen: Option<&str>,
    transcript: &Transcript,
) -> Result<Origin, crate::store::StoreError> {
    let mut origin = origin_of(agent);
    match chosen {
        Some(m) => origin.model = m.to_owned(),
        None => {
            if let Some((provider, model)) = transcript.model()?
                && provider == origin.provider
            {
                origin.model = model;
            }
        }
    }
    Ok(origin)
}

/// What one request of a turn took, for the reply's `usage` and `stats`
/// (Decision 81).
struct Meter {
    started: std::time::Instant,
    first: Option<std::time::Instant>,
    pieces: u64,
    usage: Option<(u64, u64, Option<f64>)>,
}

impl Meter {
    fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
            first: None,
            pieces: 0,
            usage: None,
        }
    }

    fn saw(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::Delta(_) | AgentEvent::Thinking(_) => {
                self.first.get_or_insert_with(std::time::Instant::now);
                self.pieces += 1;
            }
            AgentEvent::Usage {
                input,
                output,
                tokens_per_sec,
            } => self.usage = Some((*input, *output, *tokens_per_sec)),
            _ => {}
        }
    }

    /// Puts the counts and timings on the message that ends this request.
    fn finish(&self, new: &mut NewMessage) {
        let end = std::time::Instant::now();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // Tokens after the first one over the time they took: the first
        // one's wait is the prompt's, shown as the time to first token.
        let rate = |output: u64| {
            let secs = end.duration_since(self.first?).as_secs_f64();
            (output > 1 && secs > 0.0).then(|| (output - 1) as f64 / secs)
        };
        let mut stats = ReplyStats {
            ttft_ms: self.first.map(|f| ms(f.duration_since(self.started))),
            duration_ms: Some(ms(end.duration_since(self.started))),
            ..ReplyStats::default()
        };
        match self.usage {
            Some((input, output, server_rate)) => {
                let usage = Usage {
                    input,
                    output,
                    total_tokens: input + output,
                };
                new.extra
                    .insert("usage".into(), crate::store::usage_value(&usage));
                stats.source = "server".into();
                stats.output = Some(output);
                stats.context_tokens = Some(input + output);
                stats.tokens_per_sec = server_rate.or_else(|| rate(output));
            }
            None => {
                stats.source = "relay".into();
                stats.output = Some(self.pieces);
                stats.tokens_per_sec = rate(self.pieces);
            }
        }
        new.stats = Some(stats);
    }
}

/// How a file attachment's text is given to the model (Decision 82): one
/// block naming the file, so that the model can tell it from the message
/// and from other files.
pub(super) fn framed_file(name: &str, mime: &str, text: &str) -> String {
    format!("<file name=\"{name}\" type=\"{mime}\">\n{text}\n</file>")
}

/// The name an attachment is shown and framed with: the user's, or one made
/// from its type. Quotes and angle brackets would break the framing.
pub(super) fn attachment_name(
    id: &str,
    names: &std::collections::HashMap<String, String>,
) -> String {
    let ext = id.rsplit('.').next().unwrap_or("bin");
    let name: String = names
        .get(id)
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>'))
                .collect()
        })
        .unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        format!("attachment.{ext}")
    } else {
        name.to_owned()
    }
}

/// The user's message in pi's block form. An image is pi's `image` block
/// (its bytes as `data`, which pi sends to its model) and also names the
/// attachment it was saved as, which loopchat serves and reads instead. A
/// text file or PDF is a `text` block holding its framed text (what pi and
/// the relay send to the model), naming the file it came from.
pub(super) fn user_content(
    text: &str,
    attachment_ids: &[String],
    names: &std::collections::HashMap<String, String>,
    attachments: &Attachments,
) -> Content {
    let mut parts = Vec::new();
    if !text.trim().is_empty() || attachment_ids.is_empty() {
        parts.push(json!({"type": "text", "text": text}));
    }
    for id in attachment_ids {
        if Attachments::kind_of(id) == Kind::File {
            let name = attachment_name(id, names);
            let mime = Attachments::mime_of(id);
            let body = attachments.text_of(id).unwrap_or_default();
            let size = attachments
                .path(id)
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            parts.push(json!({
                "type": "text",
                "text": framed_file(&name, mime, &body),
                "attachment": id,
                "url": format!("attachments/{id}"),
                "mimeType": mime,
                "name": name,
                "size": size,
            }));
            continue;
        }
        let mut part = json!({
            "type": "image",
            "mimeType": Attachments::mime_of(id),
            "attachment": id,
            "url": format!("attachments/{id}"),
        });
        if let Some(bytes) = attachments.read(id) {
            part["data"] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
        }
        parts.push(part);
    }
    Content::Parts(parts)
}

/// A transcript that ends inside a tool step belongs to a run the relay
/// did not finish (it was killed, or the machine went down): that run is
/// marked interrupted before the next turn, and nothing of it is resumed.
/// Each call left without a result gets one ("not run"), so that the
/// history stays valid for the model and for pi, then an assistant message
/// with `stopReason: "error"` says what happened.
fn close_interrupted(
    transcript: &Transcript,
    rt: &SessionRuntime,
) -> Result<(), crate::store::StoreError> {
    let page = transcript.latest_plain(64)?;
    let Some(last) = page.messages.last() else {
        return Ok(());
    };
    let dangling = last.message.role == Role::ToolResult
        || last.message.stop_reason.as_deref() == Some("toolUse");
    if !dangling {
        return Ok(());
    }
    let Some(pos) = page
        .messages
        .iter()
        .rposition(|m| m.message.stop_reason.as_deref() == Some("toolUse"))
    else {
        return Ok(());
    };
    let answered: std::collections::HashSet<&str> = page.messages[pos + 1..]
        .iter()
        .filter_map(|m| m.message.tool_call_id.as_deref())
        .collect();
    let mut marks: Vec<NewMessage> = tool_calls_of(&page.messages[pos].message.content)
        .into_iter()
        .filter(|c| !answered.contains(c.id.as_str()))
        .map(|c| NewMessage {
            tool_result: Some(ToolResultMeta {
                tool_call_id: c.id,
                tool_name: c.name,
                is_error: true,
            }),
            ..NewMessage::new(
                Role::ToolResult,
                Content::Parts(vec![
                    json!({"type": "text", "text": "Not run: the relay stopped before this call ran."}),
                ]),
                now_millis(),
            )
        })
        .collect();
    marks.push(NewMessage {
        stop_reason: Some(RunState::Error.as_str().to_owned()),
        error_message: Some(INTERRUPTED.to_owned()),
        ..NewMessage::new(Role::Assistant, Content::Text(String::new()), now_millis())
    });
    for m in &marks {
        transcript.append_then(m, |stored| {
            rt.events.publish(EventBody::Message {
                message: stored.message.clone(),
                run_id: None,
            });
        })?;
    }
    tracing::info!(session = %rt.key, "a run cut off in a tool step was marked interrupted");
    Ok(())
}

pub(crate) const INTERRUPTED: &str =
    "interrupted: the relay stopped during this run's tool step; nothing of it was resumed";

/// Appends `new` and publishes it as the run's `message` event.
fn append_published(
    transcript: &Transcript,
    rt: &SessionRuntime,
    run_id: &str,
    new: &NewMessage,
) -> Result<Appended, StoreError> {
    transcript.append_then(new, |stored| {
        rt.events.publish(EventBody::Message {
            message: stored.message.clone(),
            run_id: Some(run_id.to_owned()),
        });
    })
}

/// An assistant message that ends in tool calls, in pi's shape: thinking,
/// text, then one `toolCall` block per call with its arguments as an
/// object. Arguments that are not a JSON object are kept as they came in
/// `rawArguments` (pi reads `arguments` only), so the transcript shows what
/// the model sent.
fn tool_use_content(text: &str, thought: &str, calls: &[ToolCall]) -> Content {
    let mut parts = Vec::new();
    if !thought.is_empty() {
        parts.push(json!({"type": "thinking", "thinking": thought}));
    }
    if !text.is_empty() {
        parts.push(json!({"type": "text", "text": text}));
    }
    for c in calls {
        let raw = if c.arguments.trim().is_empty() {
            "{}"
        } else {
            &c.arguments
        };
        let mut block = json!({"type": "toolCall", "id": c.id, "name": c.name});
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v @ serde_json::Value::Object(_)) => block["arguments"] = v,
            _ => {
                block["arguments"] = json!({});
                block["rawArguments"] = c.arguments.clone().into();
            }
        }
        parts.push(block);
    }
    Content::Parts(parts)
}

/// The calls of a stored assistant message, as the model made them.
fn tool_calls_of(content: &Content) -> Vec<ToolCall> {
    let Content::Parts(parts) = content else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("toolCall"))
        .filter_map(|p| {
            let arguments = match p.get("rawArguments").and_then(|r| r.as_str()) {
                Some(raw) => raw.to_owned(),
                None => p
                    .get("arguments")
                    .map_or_else(|| "{}".to_owned(), |a| a.to_string()),
            };
            Some(ToolCall {
                id: p.get("id")?.as_str()?.to_owned(),
                name: p.get("name")?.as_str()?.to_owned(),
                arguments,
            })
        })
        .collect()
}

/// A tool result as history: its text, and its images as `data:` URLs.
fn tool_result_turn(call_id: &str, content: &Content) -> ChatTurn {
    let mut turn = ChatTurn::new(Role::ToolResult, content.text());
    turn.tool_call_id = Some(call_id.to_owned());
    if let Content::Parts(parts) = content {
        turn.data_images = parts
            .iter()
            .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("image"))
            .filter_map(|p| {
                let mime = p.get("mimeType")?.as_str()?;
                let data = p.get("data")?.as_str()?;
                Some(format!("data:{mime};base64,{data}"))
            })
            .collect();
    }
    turn
}

fn assistant_content(text: &str, thought: &str) -> Content {
    if thought.is_empty() {
        return Content::Text(text.to_owned());
    }
    Content::Parts(vec![
        json!({"type": "thinking", "thinking": thought}),
        json!({"type": "text", "text": text}),
    ])
}

/// A stored message as history for the agent; `None` for what a model
/// should not see again (empty stopped replies, tool plumbing).
fn chat_turn(m: &StoredMessage, attachments: &Attachments) -> Option<ChatTurn> {
    let role = m.message.role;
    if role == Role::ToolResult {
        let id = m.message.tool_call_id.as_deref()?;
        return Some(tool_result_turn(id, &m.message.content));
    }
    let tool_calls = if role == Role::Assistant {
        tool_calls_of(&m.message.content)
    } else {
        Vec::new()
    };
    let text = m.message.content.text();
    let images: Vec<ImageFile> = match &m.message.content {
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("image"))
            .filter_map(|p| p.get("attachment")?.as_str())
            .filter_map(|id| {
                Some(ImageFile {
                    mime_type: Attachments::mime_of(id).to_owned(),
                    path: attachments.path(id)?,
                })
            })
            .collect(),
        Content::Text(_) => Vec::new(),
    };
    if text.is_empty() && images.is_empty() && tool_calls.is_empty() {
        return None;
    }
    let mut turn = ChatTurn::new(role, text);
    turn.images = images;
    turn.tool_calls = tool_calls;
    Some(turn)
}
