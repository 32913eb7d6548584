//! The session worker and the steps of one turn.

use std::sync::Arc;

use futures_util::StreamExt;
use loopchat_proto::{ActiveRun, Content, EventBody, Role, RunState, ThinkingLevel};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Inner, QueuedTurn, SessionRuntime, TurnError, TurnOutcome, TurnResult};
use crate::agent::{AgentError, AgentEvent, AgentRequest, ChatTurn, ImageFile};
use crate::attachments::Attachments;
use crate::clock::now_millis;
use crate::store::{NewMessage, Origin, StoredMessage, Transcript};
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
            let mut st = rt.state.lock().unwrap_or_else(|e| e.into_inner());
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
            let observers = inner
                .observers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
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

async fn run(
    inner: &Inner,
    rt: &SessionRuntime,
    run_id: &str,
    request: &super::TurnRequest,
    cancel: &tokio_util::sync::CancellationToken,
) -> (TurnOutcome, Durable) {
    let key = &request.session_key;
    let entry = match inner.store.get_or_create(key).await {
        Ok(e) => e,
        Err(e) => return (Err(e.into()), None),
    };
    let transcript = match inner.store.transcript(&entry.session_id) {
        Ok(t) => t,
        Err(e) => return (Err(e.into()), None),
    };
    let result = |message: loopchat_proto::Message| TurnResult {
        session_key: key.clone(),
        session_id: entry.session_id.clone(),
        run_id: run_id.to_owned(),
        message,
        deliver: request.deliver.clone(),
        replayed: false,
        more_queued: false,
    };

    if inner.agent.writes_transcript() {
        return super::agent_written::run(inner, rt, run_id, request, cancel, &entry, transcript)
            .await;
    }

    // A retry of a turn this relay stored before a restart.
    let earlier = match &request.client_id {
        Some(c) => match transcript.find_turn(c) {
            Ok(found) => found,
            Err(e) => return (Err(e.into()), None),
        },
        None => None,
    };
    // Regenerating answers a stored user message again, like a resumed turn.
    let earlier = match (&request.regenerate, earlier) {
        (Some(id), None) => match transcript.message(id) {
            Ok(Some(user)) if user.message.role == Role::User => Some((user, None)),
            Ok(_) => {
                let e = TurnError::UnknownEntry(format!("no user message {id:?} in this session"));
                return (Err(e), None);
            }
            Err(e) => return (Err(e.into()), None),
        },
        (_, earlier) => earlier,
    };
    // A keyed turn run again after a crash answers its own user message in
    // the context it had then, not after turns that landed since.
    let mut resumed = None;
    let user_id = match earlier {
        Some((_, Some(reply))) => {
            let replayed = TurnResult {
                replayed: true,
                ..result(reply.message.clone())
            };
            // Found in the file is not yet durable: the run that wrote it
            // may have died (or failed its flush) before the flush. Answer
            // only after one.
            let barrier = transcript.barrier();
            return (Ok(replayed), Some((transcript.clone(), barrier)));
        }
        Some((user, None)) => {
            let id = user.message.id.clone();
            resumed = Some(user);
            id
        }
        None => {
            let mut new = NewMessage::new(
                Role::User,
                user_content(&request.text, &request.attachment_ids, &inner.attachments),
                now_millis(),
            );
            new.client_id = request.client_id.clone();
            // pi's model_change / thinking_level_change entries before the
            // turn they apply to.
            let agent = inner.agent.info();
            let origin = origin_of(&agent);
            let level = request
                .thinking
                .or_else(|| ThinkingLevel::parse(&entry.thinking_level))
                .unwrap_or_default();
            if let Some(parent) = &request.parent_id {
                match transcript.message(parent) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let e = TurnError::UnknownEntry(format!(
                            "parentId {parent:?} names no message of this session"
                        ));
                        return (Err(e), None);
                    }
                    Err(e) => return (Err(e.into()), None),
                }
            }
            // A branch hangs right under the chosen entry, a sibling of what
            // was there (as pi's /tree makes it); the settings above the fork
            // still hold on its path.
            new.parent_id = request.parent_id.clone();
            if new.parent_id.is_none()
                && let Err(e) = transcript.note_settings(
                    Some((&origin.provider, &origin.model)),
                    Some(level.as_str()),
                )
            {
                return (Err(e.into()), None);
            }
            let published = transcript.append_then(&new, |stored| {
                rt.events.publish(EventBody::Message {
                    message: stored.message.clone(),
                    run_id: Some(run_id.to_owned()),
                });
            });
            match published {
                Ok((stored, _)) => stored.message.id.clone(),
                Err(e) => return (Err(e.into()), None),
            }
        }
    };

    let start = rt.events.publish(EventBody::RunStart {
        run_id: run_id.to_owned(),
    });
    rt.state.lock().unwrap_or_else(|e| e.into_inner()).active = Some(ActiveRun {
        run_id: run_id.to_owned(),
        start_seq: start.seq,
    });

    let thinking = request
        .thinking
        .or_else(|| ThinkingLevel::parse(&entry.thinking_level))
        .unwrap_or_default();
    let context = match &resumed {
        Some(user) => transcript.through(user, inner.history_messages),
        None => transcript.latest_plain(inner.history_messages),
    };
    let history = match context {
        Ok(page) => page
            .messages
            .iter()
            .filter_map(|m| chat_turn(m, &inner.attachments))
            .collect(),
        Err(e) => {
            return end_with_error(rt, run_id, e.into());
        }
    };
    let mut stream = inner.agent.run(AgentRequest {
        session_key: key.clone(),
        run_id: run_id.to_owned(),
        history,
        thinking,
        transcript: None,
        abort: cancel.clone(),
    });

    let mut text = String::new();
    let mut thought = String::new();
    let ended: Result<RunState, AgentError> = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ok(RunState::Aborted),
            item = stream.next() => match item {
                Some(Ok(event)) => publish_agent_event(rt, run_id, event, &mut text, &mut thought),
                Some(Err(e)) => break Err(e),
                None => break Ok(RunState::Final),
            },
        }
    };
    // Dropping the stream is what stops the backend (closes the upstream
    // request, kills the command).
    drop(stream);

    let (state, error) = match &ended {
        Ok(s) => (*s, None),
        Err(e) => (RunState::Error, Some(e.to_string())),
    };
    // Keep what was generated: a complete or stopped reply always, a failed
    // one only if it produced something.
    let keep = state != RunState::Error || !text.is_empty() || !thought.is_empty();
    let mut reply = None;
    if keep {
        let mut new = NewMessage::new(
            Role::Assistant,
            assistant_content(&text, &thought),
            now_millis(),
        );
        new.reply_to = Some(user_id);
        new.stop_reason = (state != RunState::Final).then(|| state.as_str().to_owned());
        new.error_message = error.clone();
        new.origin = Some(origin_of(&inner.agent.info()));
        // A regenerated reply is a new child of the message it answers. (A
        // turn resumed after a crash goes on at the leaf instead: hanging it
        // under its message would hide the turns that landed since.)
        if request.regenerate.is_some() {
            new.parent_id = new.reply_to.clone();
        }
        let published = transcript.append_then(&new, |stored| {
            rt.events.publish(EventBody::Message {
                message: stored.message.clone(),
                run_id: Some(run_id.to_owned()),
            });
        });
        match published {
            Ok((stored, generation)) => {
                reply = Some((stored, generation));
            }
            Err(e) => return end_with_error(rt, run_id, e.into()),
        }
    }
    publish_run_end(rt, run_id, state, error.clone());
    inner.store.touch(
        key,
        now_millis(),
        request.thinking.map(ThinkingLevel::as_str),
    );
    let durable = reply.as_ref().map(|(_, g)| (transcript.clone(), *g));
    let outcome = match (ended, reply) {
        (Ok(_), Some((stored, _))) => Ok(result(stored.message.clone())),
        (Err(AgentError::Timeout(m)), _) => Err(TurnError::AgentTimeout(m)),
        (Err(AgentError::Failed(m)), _) => Err(TurnError::Agent(m)),
        (Ok(_), None) => Err(TurnError::Agent("the reply was not stored".into())),
    };
    (outcome, durable)
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
        AgentEvent::ToolUpdate {
            call_id,
            name,
            output,
        } => EventBody::ToolUpdate {
            run_id,
            call_id,
            name,
            output,
        },
        AgentEvent::ToolEnd {
            call_id,
            name,
            output,
            is_error,
        } => EventBody::ToolEnd {
            run_id,
            call_id,
            name,
            output,
            is_error,
        },
    };
    rt.events.publish(body);
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
    rt.state.lock().unwrap_or_else(|e| e.into_inner()).active = None;
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

/// The user's message in pi's block form. An image is pi's `image` block
/// (its bytes as `data`, which pi sends to its model) and also names the
/// attachment it was saved as, which loopchat serves and reads instead.
pub(super) fn user_content(
    text: &str,
    attachment_ids: &[String],
    attachments: &Attachments,
) -> Content {
    let mut parts = Vec::new();
    if !text.trim().is_empty() || attachment_ids.is_empty() {
        parts.push(json!({"type": "text", "text": text}));
    }
    for id in attachment_ids {
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
    if !matches!(role, Role::User | Role::Assistant | Role::System) {
        return None;
    }
    let text = m.message.content.text();
    let images: Vec<ImageFile> = match &m.message.content {
        Content::Parts(parts) => parts
            .iter()
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
    if text.is_empty() && images.is_empty() {
        return None;
    }
    Some(ChatTurn { role, text, images })
}
