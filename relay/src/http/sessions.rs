//! Tidying the session list: delete (to the archive), the archive's list,
//! restore, purge, pin. Each change is pushed to every stream as a
//! `sessions` event.

use axum::Json;
use axum::extract::State;
use loopchat_proto::{
    ArchiveRequest, ArchiveResponse, ArchivedResponse, ErrorBody, ErrorCode, PinRequest,
    PurgeRequest, PurgeResponse, RestoreRequest, SessionChange, SessionResponse,
};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authed, session_key};
use crate::store::Purge;

fn session_id(raw: &str) -> Result<String, ApiError> {
    if crate::store::is_safe_session_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::bad_request(
            "sessionId must be 1-128 characters of A-Z, a-z, 0-9, - and _",
        ))
    }
}

fn joined(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

#[utoipa::path(
    post,
    path = "/webchat/archive",
    tag = "sessions",
    summary = "Delete a session: move it to the archive",
    description = "Moves the session's index entry and transcript to the home's archive; it leaves the \
                   list and can be restored until it is purged (`archive_keep_days`, or `POST \
                   /webchat/purge`). Its images stay in the attachments store, so a restored \
                   transcript's references still resolve. Refused while a turn of it runs or waits: \
                   stop it first.",
    request_body = ArchiveRequest,
    responses(
        (status = 200, description = "Archived", body = ArchiveResponse),
        (status = 400, description = "`bad_request` or `invalid_session_key`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session (or archived already)", body = ErrorBody),
        (status = 409, description = "`turn_in_progress`: a turn runs or waits; `conflict`: a foreign \
                                      store (`--store pi|openclaw`), whose files loopchat does not move", body = ErrorBody),
        (status = 507, description = "`store_full`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn archive(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ArchiveRequest>,
) -> Result<Json<ArchiveResponse>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let (id, entry) = state.pipeline.archive(&key).await?;
    Ok(Json(ArchiveResponse {
        ok: true,
        archived: state.pipeline.archived_row(id, &entry),
    }))
}

#[utoipa::path(
    get,
    path = "/webchat/archived",
    tag = "sessions",
    summary = "The archived (deleted) sessions, most recently archived first",
    responses(
        (status = 200, description = "The archive", body = ArchivedResponse),
        (status = 409, description = "`conflict`: a foreign store has no archive", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn archived(
    _: Authed,
    State(state): State<AppState>,
) -> Result<Json<ArchivedResponse>, ApiError> {
    let pipeline = state.pipeline.clone();
    let sessions = tokio::task::spawn_blocking(move || pipeline.archived_list())
        .await
        .map_err(joined)??;
    Ok(Json(ArchivedResponse { ok: true, sessions }))
}

#[utoipa::path(
    post,
    path = "/webchat/restore",
    tag = "sessions",
    summary = "Put an archived session back under its key",
    description = "The transcript comes back byte for byte. Refused when the key is in use again \
                   (a new session was started under it): archive or rename that one first.",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored", body = SessionResponse),
        (status = 400, description = "`bad_request`: a malformed sessionId", body = ErrorBody),
        (status = 404, description = "`not_found`: no such archived session", body = ErrorBody),
        (status = 409, description = "`conflict`: the key is in use again, or a foreign store", body = ErrorBody),
        (status = 507, description = "`store_full`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn restore(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let id = session_id(&req.session_id)?;
    let entry = state.pipeline.store().restore(&id).await?;
    let key = entry.key.clone();
    let pipeline = state.pipeline.clone();
    let session = tokio::task::spawn_blocking(move || pipeline.summary(entry))
        .await
        .map_err(joined)?;
    state.pipeline.list_changed(&key, SessionChange::Restored);
    Ok(Json(SessionResponse { ok: true, session }))
}

#[utoipa::path(
    post,
    path = "/webchat/purge",
    tag = "sessions",
    summary = "Delete archived sessions for good",
    description = "Exactly one of `sessionId` (one archived session) and `all: true` (every one).",
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "Purged", body = PurgeResponse),
        (status = 400, description = "`bad_request`: neither or both of `sessionId` and `all`, or a \
                                      malformed sessionId", body = ErrorBody),
        (status = 404, description = "`not_found`: no such archived session", body = ErrorBody),
        (status = 409, description = "`conflict`: a foreign store has no archive", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn purge(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PurgeRequest>,
) -> Result<Json<PurgeResponse>, ApiError> {
    let which = match (req.session_id.as_deref(), req.all) {
        (Some(id), false) => Purge::One(session_id(id)?),
        (None, true) => Purge::All,
        _ => {
            return Err(ApiError::bad_request(
                "name one archived session (sessionId) or all of them (all: true)",
            ));
        }
    };
    let purged = state.pipeline.store().purge(which).await?;
    Ok(Json(PurgeResponse { ok: true, purged }))
}

#[utoipa::path(
    post,
    path = "/webchat/pin",
    tag = "sessions",
    summary = "Pin a session to the top of the list, or unpin it",
    description = "Stored as `pinned: true` in the session's `sessions.json` entry.",
    request_body = PinRequest,
    responses(
        (status = 200, description = "The session as the list now shows it", body = SessionResponse),
        (status = 400, description = "`bad_request` or `invalid_session_key`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session", body = ErrorBody),
        (status = 409, description = "`conflict`: a foreign store, whose index loopchat does not add to", body = ErrorBody),
        (status = 507, description = "`store_full`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn pin(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PinRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let entry = state.pipeline.store().set_pinned(&key, req.pinned).await?;
    let pipeline = state.pipeline.clone();
    let session = tokio::task::spawn_blocking(move || pipeline.summary(entry))
        .await
        .map_err(joined)?;
    state.pipeline.list_changed(&key, SessionChange::Pinned);
    Ok(Json(SessionResponse { ok: true, session }))
}
