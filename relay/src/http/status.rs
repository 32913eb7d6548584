//! `GET /webchat/status`: live counts for the status area and `loopchat status`.

use axum::Json;
use axum::extract::State;
use loopchat_proto::{JournalSize, StatusResponse};

use super::AppState;
use super::extract::Authed;

#[utoipa::path(
    get,
    path = "/webchat/status",
    tag = "meta",
    summary = "What the relay is doing now",
    description = "Version, uptime, agent backend; the live streams (SSE, WebSocket, streaming \
                   rpc) by kind and by token; sessions, runs in flight, checks and the \
                   notification journal's size. A stream's kind is `shell` when its \
                   `User-Agent` starts with `loopchat-shell/`, `cli` when it starts with \
                   `loopchat/`, else its transport (`sse` or `websocket`). Checks count by \
                   their last run (`ok`, `failing`) and `running`. Main token only (a scoped token gets 403).",
    responses(
        (status = 200, description = "The status", body = StatusResponse),
        (status = 401, description = "`unauthorized`: no token or an unknown one", body = loopchat_proto::ErrorBody),
        (status = 403, description = "`forbidden`: a scoped (notify-only) token", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn status(_: Authed, State(state): State<AppState>) -> Json<StatusResponse> {
    let (bytes, entries) = state.notifications.journal_size();
    Json(StatusResponse {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: state.started.elapsed().as_secs(),
        agent: state.pipeline.agent_info(),
        connections: state.live.snapshot(),
        sessions: state.pipeline.store().sessions().len() as u64,
        runs_in_flight: state.pipeline.runs_in_flight() as u64,
        checks: state.checks.counts(),
        journal: JournalSize {
            bytes,
            entries: entries as u64,
        },
    })
}
