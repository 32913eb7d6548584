//! `POST /webchat/approve`: the user's decision on a tool call that asks;
//! `GET /webchat/tools`: what the agent is offered, under which policy.

use axum::Json;
use axum::extract::State;
use loopchat_proto::{ApproveRequest, ErrorCode, ToolInfo, ToolsResponse};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authed, session_key};

#[utoipa::path(
    post,
    path = "/webchat/approve",
    tag = "chat",
    summary = "Approve or deny a tool call waiting for the user",
    description = "Answers a `tool.approval` event of the session's running turn: `approve` \
                   runs the call, `deny` refuses it (the model is told), `allowSession` runs it \
                   and lets this tool run without asking for the rest of the session (until \
                   the relay restarts). Only the main token may answer; a notify-only token \
                   gets 403. A call that is not waiting (already answered, expired, or its run \
                   ended) is a 404.",
    request_body(content = ApproveRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The decision was taken: `{\"ok\":true,\"callId\":…}`", body = Object),
        (status = 400, description = "`bad_request` (malformed JSON, unknown decision) or `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 403, description = "`forbidden`: a notify-only token", body = loopchat_proto::ErrorBody),
        (status = 404, description = "`not_found`: no such call is waiting in the session", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is larger than `body_limit`", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn approve(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ApproveRequest>,
) -> Result<Json<Value>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let rt = state.pipeline.existing_session(&key).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no tool call {:?} is waiting in session {key:?}",
                req.call_id
            ),
        )
    })?;
    rt.approvals
        .answer(&req.call_id, req.decision)
        .map_err(|e| ApiError::new(ErrorCode::NotFound, e.to_string()))?;
    tracing::info!(session = %key, call = %req.call_id, decision = ?req.decision, "tool call decided");
    Ok(Json(json!({"ok": true, "callId": req.call_id})))
}

#[utoipa::path(
    get,
    path = "/webchat/tools",
    tag = "chat",
    summary = "The agent's tools, their source and policy",
    description = "Every tool the relay knows, with its policy (`allow`, `ask`, `deny`: a denied \
                   tool is listed but not offered to the model), the workspace and whether the \
                   file tools are confined to it. `loopchat tools` prints it.",
    responses(
        (status = 200, description = "The tools", body = ToolsResponse),
        (status = 403, description = "`forbidden`: a notify-only token", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn tools(_: Authed, State(state): State<AppState>) -> Json<ToolsResponse> {
    let Some(t) = state.pipeline.tools() else {
        return Json(ToolsResponse {
            ok: true,
            enabled: false,
            workspace: None,
            confined: false,
            tools: Vec::new(),
        });
    };
    let ws = t.toolbox.workspace();
    Json(ToolsResponse {
        ok: true,
        enabled: true,
        workspace: Some(ws.root().display().to_string()),
        confined: ws.confined(),
        tools: t
            .toolbox
            .listing()
            .into_iter()
            .map(|t| ToolInfo {
                name: t.spec.name,
                source: t.source,
                policy: t.policy.as_str().into(),
                available: t.available,
                description: t.spec.description,
            })
            .collect(),
    })
}
