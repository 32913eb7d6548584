//! `POST /webchat/notify`, `GET /webchat/notifications` and
//! `POST /webchat/presence`: thin handlers over [`crate::notify`].

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use loopchat_proto::{
    ErrorCode, NotificationsResponse, NotifyRequest, NotifyResponse, OkResponse, PresenceRequest,
};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authed, NotifyCaller, session_key};
use crate::notify::hub::KEEP;
use crate::notify::{Draft, DraftError};

const DEFAULT_LIMIT: usize = 100;

pub async fn notify(
    NotifyCaller(caller): NotifyCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    if let Err(wait) = state.notify_limit.check(&caller.rate_key(), Instant::now()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many notifications from this token: at most {} at once, then one a second; \
                 retry in {secs} s",
                crate::notify::rate::BURST
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(response);
    }
    let draft = draft(body)?;
    let n = state.notifications.post(draft).await?;
    Ok(Json(NotifyResponse {
        ok: true,
        id: n.id,
        seq: n.seq,
    })
    .into_response())
}

/// The body as a [`Draft`]. `priority` is looked at before the typed parse
/// so that `9` or `300` or `"high"` get the same clear sentence rather than
/// a serde message about `u8`.
fn draft(body: Value) -> Result<Draft, ApiError> {
    if let Some(p) = body.get("priority").filter(|p| !p.is_null())
        && !p.as_u64().is_some_and(|p| (1..=5).contains(&p))
    {
        return Err(ApiError::bad_request(
            DraftError::Priority(p.to_string()).to_string(),
        ));
    }
    let req: NotifyRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid notification: {e}")))?;
    Draft::try_from(req).map_err(|e| {
        let code = match e {
            DraftError::SessionKey(_) => ErrorCode::InvalidSessionKey,
            _ => ErrorCode::BadRequest,
        };
        ApiError::new(code, e.to_string())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

pub async fn notifications(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationsResponse>, ApiError> {
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=KEEP).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {KEEP}, not {n}"
            )));
        }
    };
    Ok(Json(NotificationsResponse {
        ok: true,
        notifications: state.notifications.list(q.since, limit),
    }))
}

pub async fn presence(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PresenceRequest>,
) -> Result<Json<OkResponse>, ApiError> {
    let client = client_id(&req.client)?;
    let session = match &req.session {
        Some(raw) => Some(session_key(Some(raw))?),
        None => None,
    };
    state
        .presence
        .report(&client, session, req.focused, Instant::now());
    Ok(Json(OkResponse { ok: true }))
}

/// A window's client id (`client=` on streams, `client` in presence): the
/// session-key alphabet, so a uuid fits and nothing odd reaches the logs.
pub(super) fn client_id(raw: &str) -> Result<String, ApiError> {
    loopchat_proto::validate_session_key(raw).map_err(|_| {
        ApiError::bad_request(
            "client must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-' (a uuid)",
        )
    })?;
    Ok(raw.to_owned())
}
