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
use crate::credentials::Caller;
use crate::notify::hooks;
use crate::notify::hub::KEEP;
use crate::notify::{Draft, DraftError};

const DEFAULT_LIMIT: usize = 100;

#[utoipa::path(
    post,
    path = "/webchat/notify",
    tag = "notifications",
    summary = "Post a notification to every window and shell",
    description = "Accepts the main token or a token with the `notify` scope (`loopchat token \
                   create --scope notify`). Each token may post a burst, then one a second \
                   (429 with `Retry-After`). The body is read as JSON whatever its Content-Type; \
                   unknown fields are a 400. See docs/notifications.md.",
    request_body(content = NotifyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Posted and durable", body = NotifyResponse),
        (status = 400, description = "`bad_request` (malformed JSON, unknown field, both `title` and \
                                      `body` blank, a limit exceeded, bad `tags`, `click` or `id`; \
                                      `click` must be a path under `/webchat/`) or \
                                      `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is larger than `body_limit` (1 MiB by default)", body = loopchat_proto::ErrorBody),
        (status = 429, description = "`rate_limited`: too many notifications from this token", body = loopchat_proto::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "`internal`: the notification log could not be written", body = loopchat_proto::ErrorBody),
        (status = 507, description = "`store_full`: the disk is full", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
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
    if let Caller::Scoped { scope, .. } = &caller
        && let Some(name) = hooks::reserved_in(&draft)
    {
        let ids: Vec<String> = hooks::RESERVED.iter().map(|r| format!("{r}:…")).collect();
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{name:?} is reserved for the relay's own alerts (the ids {} and the tags {}); \
                 a token with the {} scope may not use them: pick another id or tag",
                ids.join(", "),
                hooks::RESERVED.join(", "),
                scope.as_str(),
            ),
        ));
    }
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
pub(crate) fn draft(mut body: Value) -> Result<Draft, ApiError> {
    if let Some(p) = body.get_mut("priority").filter(|p| !p.is_null()) {
        // JSON has one kind of number: `5.0` is the integer 5, as JSON
        // Schema (and the OpenAPI document) reads it.
        let integral = p.as_u64().or_else(|| {
            p.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        });
        match integral {
            Some(n @ 1..=5) => *p = n.into(),
            _ => {
                return Err(ApiError::bad_request(
                    DraftError::Priority(p.to_string()).to_string(),
                ));
            }
        }
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

// `limit`'s maximum is `KEEP`, the number of notifications kept.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only notifications with a higher seq, oldest first; without it, the
    /// latest `limit`.
    since: Option<u64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/webchat/notifications",
    tag = "notifications",
    summary = "The kept notifications (the last 500)",
    description = "Unknown query parameters are a 400.",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "The notifications, oldest first", body = NotificationsResponse),
        (status = 400, description = "`bad_request`: malformed query, `limit` out of range or an \
                                      unknown parameter", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
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

#[utoipa::path(
    post,
    path = "/webchat/presence",
    tag = "notifications",
    summary = "Report which session a window shows and whether it has focus",
    description = "The relay skips the \"reply ready\" notification for a session the user is \
                   looking at. The body is read as JSON whatever its Content-Type; unknown \
                   fields are a 400.",
    request_body(content = PresenceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded", body = OkResponse),
        (status = 400, description = "`bad_request` (malformed JSON, unknown field, bad `client`) or \
                                      `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is larger than `body_limit` (1 MiB by default)", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
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
