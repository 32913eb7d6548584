//! A turn whose backend writes the transcript itself (pi).
//!
//! The relay writes nothing into the file while the backend owns it: pi
//! appends the user's message, its replies and tool results, and the relay
//! reads them through the store's foreign-writer path, which publishes them
//! as `message` events of this run. "Acknowledged means durable" still
//! holds: the outcome waits for an `fdatasync` of the file (pi never syncs),
//! like any turn's.
//!
//! One exception keeps the user's message when pi dies: pi writes a new
//! session's first user message only together with the first reply, so a
//! crash before then would lose it. Once the backend has failed (and its
//! process is gone) the file has no other writer, and the relay appends the
//! message itself.

use std::sync::Arc;

use futures_util::StreamExt;
use loopchat_proto::{EventBody, Role, RunState, ThinkingLevel};
use tokio_util::sync::CancellationToken;

use super::turn::{
    Durable, end_with_error, publish_agent_event, publish_run_end, publish_run_start, user_content,
};
use super::{Inner, SessionRuntime, TurnError, TurnOutcome, TurnRequest, TurnResult};
use crate::agent::{AgentError, AgentRequest, ChatTurn, ImageFile};
use crate::attachments::{Attachments, Kind};
use crate::clock::now_millis;
use crate::store::{NewMessage, SessionHandle, StoredMessage};

/// Messages looked at for what the backend wrote in one turn.
const TURN_WINDOW: usize = 256;

pub(super) async fn run(
    inner: &Inner,
    rt: &SessionRuntime,
    run_id: &str,
    request: &TurnRequest,
    cancel: &CancellationToken,
    session: &SessionHandle,
) -> (TurnOutcome, Durable) {
    let key = &request.session_key;
    let transcript = session.transcript();
    // Everything up to here was there before the turn.
    let before = match transcript
        .check_foreign()
        .and_then(|()| transcript.latest_plain(1))
    {
        Ok(page) => page.messages.last().map(|m| m.message.id.clone()),
        Err(e) => return (Err(e.into()), None),
    };

    publish_run_start(rt, run_id);
    let thinking = session.thinking(request.thinking);
    let images = request
        .attachment_ids
        .iter()
        .filter(|id| Attachments::kind_of(id) == Kind::Image)
        .filter_map(|id| {
            Some(ImageFile {
                mime_type: Attachments::mime_of(id).to_owned(),
                path: inner.attachments.path(id)?,
            })
        })
        .collect();
    let mut stream = inner.agent.run(AgentRequest {
        session_key: key.clone(),
        run_id: run_id.to_owned(),
        // The backend keeps its own context, from the file.
        history: vec![ChatTurn {
            images,
            ..ChatTurn::new(Role::User, prompt_with_files(inner, request))
        }],
        thinking,
        transcript: Some(transcript.path().to_owned()),
        abort: cancel.clone(),
        // pi offers its own tools.
        tools: std::sync::Arc::from(Vec::new()),
        tools_ended_at: None,
        model: None,
    });
    let (mut text, mut thought) = (String::new(), String::new());
    // Not cut short on abort: the backend is told through `cancel`, stops,
    // writes what it has and ends the stream.
    let ended: Result<(), AgentError> = loop {
        match stream.next().await {
            Some(Ok(event)) => publish_agent_event(rt, run_id, event, &mut text, &mut thought),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    drop(stream);

    // What the backend wrote, read now so that its messages are published
    // (as this run's) before `run.end`.
    let written = match transcript
        .check_foreign()
        .and_then(|()| transcript.latest(TURN_WINDOW))
    {
        Ok(page) => since(page.messages, before.as_deref()),
        Err(e) => return end_with_error(rt, run_id, e.into()),
    };
    let state = match (&ended, cancel.is_cancelled()) {
        (Err(_), _) => RunState::Error,
        (Ok(()), true) => RunState::Aborted,
        (Ok(()), false) => RunState::Final,
    };
    let error = ended.as_ref().err().map(ToString::to_string);
    if ended.is_err() && !written.iter().any(|m| m.message.role == Role::User) {
        let new = NewMessage {
            client_id: request.client_id.clone(),
            ..NewMessage::new(
                Role::User,
                user_content(
                    &request.text,
                    &request.attachment_ids,
                    &request.attachment_names,
                    &inner.attachments,
                ),
                now_millis(),
            )
        };
        let kept = transcript.append_then(&new, |stored| {
            rt.events.publish(EventBody::Message {
                message: stored.message.clone(),
                run_id: Some(run_id.to_owned()),
            });
        });
        if let Err(e) = kept {
            tracing::error!(session = %key, error = %e, "cannot keep the user's message after the agent failed");
        }
    }
    publish_run_end(rt, run_id, state, error);
    session.touch(now_millis(), request.thinking.map(ThinkingLevel::as_str));
    inner.list_changed(key, loopchat_proto::SessionChange::Updated);
    // pi never syncs: the ack waits for the relay's fdatasync of its file.
    let durable = Some((transcript.clone(), transcript.barrier()));
    let reply = written
        .iter()
        .rev()
        .find(|m| m.message.role == Role::Assistant);
    let outcome = match (ended, reply) {
        (Err(AgentError::Timeout(m)), _) => Err(TurnError::AgentTimeout(m)),
        (Err(AgentError::Failed(m)), _) => Err(TurnError::Agent(m)),
        (Ok(()), Some(reply)) => Ok(TurnResult {
            session_key: key.clone(),
            session_id: session.session_id().to_owned(),
            run_id: run_id.to_owned(),
            message: reply.message.clone(),
            deliver: request.deliver.clone(),
            replayed: false,
            more_queued: false,
        }),
        (Ok(()), None) => Err(TurnError::Agent(
            "the agent ended the turn without writing a reply".into(),
        )),
    };
    (outcome, durable)
}

/// The messages after the one with id `before` (all of them if it is not
/// among them, or there was none).
fn since(messages: Vec<Arc<StoredMessage>>, before: Option<&str>) -> Vec<Arc<StoredMessage>> {
    let Some(before) = before else {
        return messages;
    };
    match messages.iter().rposition(|m| m.message.id == before) {
        Some(i) => messages[i + 1..].to_vec(),
        None => messages,
    }
}

/// The prompt with each file attachment's framed text after it (pi stores
/// the prompt as it is given, so the files reach its model and its file).
fn prompt_with_files(inner: &Inner, request: &super::TurnRequest) -> String {
    let mut text = request.text.clone();
    for id in &request.attachment_ids {
        if Attachments::kind_of(id) != Kind::File {
            continue;
        }
        let name = super::turn::attachment_name(id, &request.attachment_names);
        let body = inner.attachments.text_of(id).unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&super::turn::framed_file(
            &name,
            Attachments::mime_of(id),
            &body,
        ));
    }
    text
}
