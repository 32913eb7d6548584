//! `POST /webchat/rpc` (one turn) and `POST /webchat/abort`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::Stream;
use loopchat_proto::{
    AbortRequest, AbortResponse, ErrorCode, EventBody, Payload, RpcRequest, RpcResponse,
    ThinkingLevel,
};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authed, session_key};
use crate::credentials::Revocation;
use crate::events::Subscription;
use crate::live::{LiveGuard, Transport};
use crate::notify::DeliveryTargets;
use crate::pipeline::{DeliverTo, Ticket, TurnOutcome, TurnRequest, TurnResult};
use crate::render::markdown_to_html;

#[utoipa::path(
    post,
    path = "/webchat/rpc",
    tag = "chat",
    summary = "Run one turn",
    description = "Stores the user message, runs the agent and answers once the reply is \
                   durable. A stopped run (abort) still answers 200, its `message` carrying \
                   `stopReason: aborted`. With `\"stream\": true` or `Accept: text/event-stream` \
                   the answer is an SSE stream of this run's events, ended by \
                   `data: {\"type\":\"done\",…RpcResponse}` or \
                   `data: {\"type\":\"error\",…ErrorBody}`. The body is read as JSON whatever its \
                   Content-Type; unknown fields are a 400.",
    request_body(content = loopchat_proto::RpcRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The turn's answer (JSON), or its events (SSE)", content(
            (loopchat_proto::RpcResponse = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "`bad_request` (malformed JSON, unknown field, bad `thinking` \
                                      or `id`, unknown or too many attachments, a bad attachment \
                                      name, a model the backend does not list), `invalid_session_key` or \
                                      `empty_text`", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is larger than `body_limit` (1 MiB by default)", body = loopchat_proto::ErrorBody),
        (status = 409, description = "`turn_in_progress`: `queue: false` and the session is busy", body = loopchat_proto::ErrorBody),
        (status = 500, description = "`internal`: the store could not be written", body = loopchat_proto::ErrorBody),
        (status = 502, description = "`agent_error`: the agent failed", body = loopchat_proto::ErrorBody),
        (status = 503, description = "`unavailable`: the relay is shutting down", body = loopchat_proto::ErrorBody),
        (status = 504, description = "`agent_timeout`: the agent did not answer in time", body = loopchat_proto::ErrorBody),
        (status = 507, description = "`store_full`: the disk holding the store is full", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn rpc(
    Authed { grant }: Authed,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RpcRequest>,
) -> Result<Response, ApiError> {
    let (key, thinking) = check_request(&req)?;
    let deliver = deliver_to(&req, &state.targets)?;
    if let Some(model) = &req.model {
        check_model(model, state.pipeline.models().await)?;
    }
    let attachment_names = req
        .attachments
        .iter()
        .filter_map(|a| Some((a.id.clone(), a.name.clone()?)))
        .collect();
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
        attachment_names,
        model: req.model,
        client_id: req.id,
        queue: req.queue.unwrap_or(true),
        deliver,
        parent_id: req.parent_id,
        regenerate: req.regenerate,
    })?;
    if wants_stream {
        let live = state.live.open(&headers, Transport::Sse, &grant.caller);
        let revocation = state.credentials.revocation(grant);
        return Ok(stream_run(ticket, revocation, live).into_response());
    }
    let outcome = ticket.outcome().await;
    let result = outcome.as_ref().as_ref().map_err(ApiError::from)?;
    Ok(Json(response(result)).into_response())
}

/// What `POST /webchat/rpc` checks before a turn is submitted: the session
/// key (`main` when absent), the thinking level and the idempotency id.
/// Pure, so that the rpc-body fuzz target runs exactly this.
pub(crate) fn check_request(req: &RpcRequest) -> Result<(String, Option<ThinkingLevel>), ApiError> {
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
        && (id.is_empty() || id.chars().count() > 200)
    {
        return Err(ApiError::bad_request("id must be 1 to 200 characters"));
    }
    for name in req.attachments.iter().filter_map(|a| a.name.as_deref()) {
        if name.chars().count() > loopchat_proto::MAX_ATTACHMENT_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(format!(
                "an attachment's name must be at most {} characters, without control characters",
                loopchat_proto::MAX_ATTACHMENT_NAME_CHARS
            )));
        }
    }
    if let Some(m) = &req.model
        && (m.is_empty() || m.chars().count() > 200)
    {
        return Err(ApiError::bad_request("model must be 1 to 200 characters"));
    }
    Ok((key, thinking))
}

/// A turn may name only a model the backend lists (or its configured one):
/// a typo must not reach the server as a request it may quietly serve with
/// another model.
fn check_model(model: &str, list: loopchat_proto::ModelsResponse) -> Result<(), ApiError> {
    if list.default.as_deref() == Some(model) || list.models.iter().any(|m| m == model) {
        return Ok(());
    }
    let why = match (&list.error, list.source.as_str()) {
        (Some(e), _) => format!("the model list could not be read ({e})"),
        (None, "none") => "this backend offers no choice of model".to_owned(),
        (None, _) => format!("the backend offers {}", list.models.join(", ")),
    };
    Err(ApiError::bad_request(format!(
        "unknown model {model:?}: {why}"
    )))
}

/// `deliver` and `to`: `to` names a configured target and implies
/// delivery, so only `deliver: false` beside it is a contradiction.
fn deliver_to(req: &RpcRequest, targets: &DeliveryTargets) -> Result<DeliverTo, ApiError> {
    match (&req.to, req.deliver) {
        (None, Some(true)) => Ok(DeliverTo::Windows),
        (None, _) => Ok(DeliverTo::Nowhere),
        (Some(_), Some(false)) => Err(ApiError::bad_request(
            "to names where to deliver the reply, but deliver is false; drop one of them",
        )),
        (Some(name), _) if targets.contains(name) => Ok(DeliverTo::Target(name.clone())),
        (Some(name), _) => {
            let names = targets.names();
            Err(ApiError::bad_request(if names.is_empty() {
                format!(
                    "no delivery target {name:?}: none is configured ([targets.NAME] in config.toml)"
                )
            } else {
                format!(
                    "no delivery target {name:?}; configured: {}",
                    names.join(", ")
                )
            }))
        }
    }
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

/// The last event of a streaming rpc whose token was rotated or revoked:
/// the view ends, the run does not.
fn revoked_event() -> SseEvent {
    let e = ApiError::new(
        ErrorCode::Unauthorized,
        "the token this stream was opened with was rotated or revoked; the run goes on \
         without this stream (read its outcome with the new token)",
    );
    let mut v = serde_json::to_value(e.body()).unwrap_or_default();
    v["type"] = "error".into();
    SseEvent::default().data(v.to_string())
}

fn belongs_to(body: &EventBody, run_id: &str) -> bool {
    match body {
        EventBody::Message { run_id: r, .. } => r.as_deref() == Some(run_id),
        EventBody::RunStart { run_id: r }
        | EventBody::Delta { run_id: r, .. }
        | EventBody::Thinking { run_id: r, .. }
        | EventBody::ToolArgs { run_id: r, .. }
        | EventBody::ToolApproval { run_id: r, .. }
        | EventBody::ToolApprovalResolved { run_id: r, .. }
        | EventBody::ToolStart { run_id: r, .. }
        | EventBody::ToolUpdate { run_id: r, .. }
        | EventBody::ToolEnd { run_id: r, .. }
        | EventBody::RunEnd { run_id: r, .. } => r == run_id,
        EventBody::Notification { .. } | EventBody::Reset | EventBody::Sessions { .. } => false,
    }
}

/// The run's own events as they happen, then `done` or `error`. The stream
/// is a view: dropping it (client gone, token revoked) does not touch the
/// run.
fn stream_run(
    ticket: Ticket,
    revocation: Revocation,
    live: LiveGuard,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let run_id = ticket.run_id.clone();
    let sub = ticket.session.events.subscribe(Some(ticket.since));
    struct St {
        sub: Subscription,
        /// `None` once the last event is sent.
        ticket: Option<Ticket>,
        run_id: String,
        ended: bool,
        revocation: Revocation,
        _live: LiveGuard,
    }
    let st = St {
        sub,
        ticket: Some(ticket),
        run_id,
        ended: false,
        revocation,
        _live: live,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            // Checked before every event, so that nothing more leaves once
            // the relay has seen the change.
            if st.revocation.revoked().now_or_never().is_some() {
                // Dropping the ticket leaves the run to the relay.
                drop(st.ticket.take()?);
                return Some((Ok(revoked_event()), st));
            }
            if st.ended {
                let ticket = st.ticket.take()?;
                tokio::select! {
                    biased;
                    () = st.revocation.revoked() => return Some((Ok(revoked_event()), st)),
                    outcome = ticket.outcome() => return Some((Ok(final_event(&outcome)), st)),
                }
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
                        biased;
                        () = st.revocation.revoked() => continue,
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
        // Not positions in the session's log: a resume must not start there.
        EventBody::Notification { .. } | EventBody::Sessions { .. } => e,
        _ => e.id(event.seq.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/webchat/abort",
    tag = "chat",
    summary = "Stop a session's running turn",
    description = "Stops the run in progress (only if it is `runId`, when given). The body is \
                   read as JSON whatever its Content-Type.",
    request_body(content = loopchat_proto::AbortRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The run that was stopped, or null", body = loopchat_proto::AbortResponse),
        (status = 400, description = "`bad_request` (malformed JSON) or `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is larger than `body_limit` (1 MiB by default)", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn abort(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AbortRequest>,
) -> Result<Json<AbortResponse>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let run_id = state.pipeline.abort(&key, req.run_id.as_deref());
    Ok(Json(AbortResponse { ok: true, run_id }))
}
