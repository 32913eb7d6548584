//! `POST /webchat/rpc` (one turn) and `POST /webchat/abort`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use loopchat_proto::{
    AbortRequest, AbortResponse, EventBody, Payload, RpcRequest, RpcResponse, ThinkingLevel,
};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authed, session_key};
use crate::events::Subscription;
use crate::pipeline::{Ticket, TurnOutcome, TurnRequest, TurnResult};
use crate::render::markdown_to_html;

pub async fn rpc(
    _: Authed,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RpcRequest>,
) -> Result<Response, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let thinking = match req.thinking.as_deref() {
        None => None,
        Some(t) => Some(ThinkingLevel::parse(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "thinking must be one of off, minimal, low, medium, high, not {t:?}"
            ))
        })?),
    };
    if let Some(id) = &req.id
        && (id.is_empty() || id.len() > 200)
    {
        return Err(ApiError::bad_request("id must be 1 to 200 characters"));
    }
    let wants_stream = req.stream.unwrap_or(false)
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    let ticket = state.pipeline.submit(TurnRequest {
        session_key: key,
        text: req.text,
        thinking,
        attachment_ids: req.attachments.into_iter().map(|a| a.id).collect(),
        client_id: req.id,
        queue: req.queue.unwrap_or(true),
        deliver: req.deliver.unwrap_or(false),
    })?;
    if wants_stream {
        return Ok(stream_run(ticket).into_response());
    }
    let outcome = ticket.outcome().await;
    let result = outcome.as_ref().as_ref().map_err(ApiError::from)?;
    Ok(Json(response(result)).into_response())
}

fn response(r: &TurnResult) -> RpcResponse {
    let text = r.message.content.text();
    let html = r
        .message
        .html
        .clone()
        .unwrap_or_else(|| markdown_to_html(&text));
    RpcResponse {
        ok: true,
        session_key: r.session_key.clone(),
        session_id: r.session_id.clone(),
        run_id: r.run_id.clone(),
        payloads: vec![Payload { text, html }],
        message: r.message.clone(),
    }
}

fn final_event(outcome: &TurnOutcome) -> SseEvent {
    let data = match outcome {
        Ok(r) => {
            let mut v = serde_json::to_value(response(r)).unwrap_or_default();
            v["type"] = "done".into();
            v
        }
        Err(e) => {
            let mut v = serde_json::to_value(ApiError::from(e).body()).unwrap_or_default();
            v["type"] = "error".into();
            v
        }
    };
    SseEvent::default().data(data.to_string())
}

fn belongs_to(body: &EventBody, run_id: &str) -> bool {
    match body {
        EventBody::Message { run_id: r, .. } => r.as_deref() == Some(run_id),
        EventBody::RunStart { run_id: r }
        | EventBody::Delta { run_id: r, .. }
        | EventBody::Thinking { run_id: r, .. }
        | EventBody::RunEnd { run_id: r, .. } => r == run_id,
        EventBody::Notification { .. } | EventBody::Reset => false,
    }
}

/// The run's own events as they happen, then `done` or `error`. The stream
/// is a view: dropping it (client gone) does not touch the run.
fn stream_run(ticket: Ticket) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let run_id = ticket.run_id.clone();
    let sub = ticket.session.events.subscribe(Some(ticket.since));
    struct St {
        sub: Subscription,
        ticket: Option<Ticket>,
        run_id: String,
        ended: bool,
    }
    let st = St {
        sub,
        ticket: Some(ticket),
        run_id,
        ended: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if st.ended {
                let ticket = st.ticket.take()?;
                let outcome = ticket.outcome().await;
                return Some((Ok(final_event(&outcome)), st));
            }
            // A turn answered from the transcript (a retry after a restart)
            // publishes no events: the outcome alone ends the stream.
            let event = match st.ticket.as_mut() {
                // Every event of a settled run is already queued.
                Some(t) if t.is_settled() => match st.sub.try_next() {
                    Some(e) => e,
                    None => {
                        st.ended = true;
                        continue;
                    }
                },
                _ => {
                    tokio::select! {
                        e = st.sub.next() => match e { Some(e) => e, None => { st.ended = true; continue } },
                        () = settled(&mut st.ticket) => continue,
                    }
                }
            };
            if matches!(event.body, EventBody::Reset) {
                st.ended = true;
                continue;
            }
            if !belongs_to(&event.body, &st.run_id) {
                continue;
            }
            if matches!(event.body, EventBody::RunEnd { .. }) {
                st.ended = true;
            }
            let sse = sse_event(&event);
            return Some((Ok(sse), st));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn settled(ticket: &mut Option<Ticket>) {
    match ticket {
        Some(t) => t.settled().await,
        None => std::future::pending().await,
    }
}

/// An event as SSE: `id` = seq for session events, the JSON as data.
pub(crate) fn sse_event(event: &Arc<loopchat_proto::Event>) -> SseEvent {
    let data = serde_json::to_string(&**event).unwrap_or_else(|_| json!({}).to_string());
    let e = SseEvent::default().data(data);
    match event.body {
        EventBody::Notification { .. } => e,
        _ => e.id(event.seq.to_string()),
    }
}

pub async fn abort(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AbortRequest>,
) -> Result<Json<AbortResponse>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let run_id = state.pipeline.abort(&key, req.run_id.as_deref());
    Ok(Json(AbortResponse { ok: true, run_id }))
}
