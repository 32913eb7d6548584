//! `POST /webchat/notify`, `GET /webchat/notifications` and
//! `POST /webchat/presence`: thin handlers over [`crate::notify`].

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use loopchat_proto::{
    AskAlertRequest, AskAlertResponse, ErrorCode, MAX_ALERT_IMAGE_BYTES, MarkReadRequest,
    MarkReadResponse, NotificationDetailResponse, NotificationsResponse, NotifyImage,
    NotifyRequest, NotifyResponse, OkResponse, PresenceRequest,
};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authed, NotifyCaller};
use crate::attachments::{AttachmentError, Attachments};
use crate::credentials::Caller;
use crate::notify::hooks;
use crate::notify::hub::KEEP;
use crate::notify::images::ImageError;
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
    let mut body = body;
    let image = take_image(&mut body)?;
    let mut draft = draft(body)?;
    draft.source = Some(match &caller {
        Caller::Main => "main".to_owned(),
        Caller::Scoped { id, .. } => format!("token:{id}"),
    });
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
    // Held until the alert is submitted: nothing refers to the file before.
    let _pin = match image {
        Some(image) => {
            let pin = save_image(&state, image).await?;
            draft.image = Some(pin.id.clone());
            Some(pin)
        }
        None => None,
    };
    let n = state.notifications.post(draft).await?;
    Ok(Json(NotifyResponse {
        ok: true,
        id: n.id,
        seq: n.seq,
    })
    .into_response())
}

/// The `image` member, decoded; taken out of `body` so that the rest is an
/// ordinary notification.
fn take_image(body: &mut Value) -> Result<Option<(String, Vec<u8>)>, ApiError> {
    use base64::Engine;
    let Some(raw) = body.as_object_mut().and_then(|o| o.remove("image")) else {
        return Ok(None);
    };
    if raw.is_null() {
        return Ok(None);
    }
    let image: NotifyImage = serde_json::from_value(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid image: {e}; expected {{\"mimeType\": \"image/png\", \"data\": \"<base64>\"}}"
        ))
    })?;
    // Refused before decoding: 4/3 of the cap is the longest base64 of it.
    if image.data.len() > MAX_ALERT_IMAGE_BYTES.div_ceil(3) * 4 + 4 {
        return Err(ImageError::TooLarge(image.data.len() / 4 * 3).into());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(image.data.trim())
        .map_err(|e| ApiError::bad_request(format!("image data is not valid base64: {e}")))?;
    Ok(Some((image.mime_type, bytes)))
}

async fn save_image(
    state: &AppState,
    (mime, bytes): (String, Vec<u8>),
) -> Result<crate::notify::images::Pin, ApiError> {
    let images = state.notifications.images().clone();
    let (pin, _) = tokio::task::spawn_blocking(move || images.save(&mime, &bytes))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    Ok(pin)
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::TooLarge(_) => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string()),
            ImageError::Attachment(AttachmentError::UnsupportedType(..)) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
            }
            ImageError::Attachment(AttachmentError::Io(io)) => {
                crate::durable::DiskError::from(io).into()
            }
            other => ApiError::bad_request(other.to_string()),
        }
    }
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
        .map_err(|e| super::extract::decode_error("invalid notification", e))?;
    Draft::try_from(req).map_err(|e| ApiError::bad_request(e.to_string()))
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
    let session = req.session.map(String::from);
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

#[utoipa::path(
    get,
    path = "/webchat/notifications/{id}/image",
    tag = "notifications",
    summary = "The image of a kept alert",
    description = "Main token only: a notify-only token may attach an image but not read it \
                   back (403). Content-addressed, so cached privately for a year.",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The bytes", content(
            (super::Binary = "image/png"),
            (super::Binary = "image/jpeg"),
            (super::Binary = "image/gif"),
            (super::Binary = "image/webp"),
        )),
        (status = 403, description = "`forbidden`: a scoped (notify-only) token", body = loopchat_proto::ErrorBody),
        (status = 404, description = "`not_found`: no such kept alert, or it has no image", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn image(
    _: Authed,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = super::extract::path_segment(id)?;
    let image = state
        .notifications
        .get(&id)
        .and_then(|n| n.image)
        .ok_or_else(|| ApiError::not_found(format!("no kept alert {id:?} with an image")))?;
    let images = state.notifications.images().clone();
    let lookup = image.clone();
    let bytes = tokio::task::spawn_blocking(move || images.read(&lookup))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("the alert's image is gone"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                Attachments::mime_of(&image).to_owned(),
            ),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/webchat/notifications/read",
    tag = "notifications",
    summary = "Mark alerts read, for every window and shell",
    description = "Each alert marked read gets a new version (same id, next seq, `read: true`) \
                   that every stream delivers, so read state is the same everywhere. Unknown \
                   ids are skipped. Main token only.",
    request_body(content = MarkReadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Marked", body = MarkReadResponse),
        (status = 400, description = "`bad_request`: malformed JSON or an unknown field", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn mark_read(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<MarkReadRequest>,
) -> Result<Json<MarkReadResponse>, ApiError> {
    let ids = if req.all {
        state.notifications.ids()
    } else {
        req.ids
    };
    let mut pending = Vec::new();
    for id in ids {
        let amended = state.notifications.amend(&id, |n| {
            let was = n.read;
            n.read = true;
            !was
        })?;
        pending.extend(amended);
    }
    let marked = pending.len() as u64;
    // One flush covers them all: commit the last, the rest are published with it.
    if let Some(last) = pending.pop() {
        drop(pending);
        state.notifications.commit(last).await?;
    }
    Ok(Json(MarkReadResponse { ok: true, marked }))
}

#[utoipa::path(
    post,
    path = "/webchat/notifications/{id}/dismiss",
    tag = "notifications",
    summary = "Dismiss one alert",
    description = "It is no longer listed, its image goes, and every stream delivers a last \
                   version with `dismissed: true` so that open windows drop it. Main token only.",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "Dismissed", body = OkResponse),
        (status = 404, description = "`not_found`: no such kept alert", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn dismiss(
    _: Authed,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<OkResponse>, ApiError> {
    let id = super::extract::path_segment(id)?;
    let pending = state
        .notifications
        .amend(&id, |n| {
            n.dismissed = true;
            true
        })?
        .ok_or_else(|| ApiError::not_found(format!("no kept alert {id:?}")))?;
    state.notifications.commit(pending).await?;
    Ok(Json(OkResponse { ok: true }))
}

#[utoipa::path(
    post,
    path = "/webchat/notifications/{id}/ask",
    tag = "notifications",
    summary = "Ask the agent about an alert",
    description = "Starts a turn in `session` (or a new `alert-…` session) whose message carries \
                   the alert: title, body, priority, time, source, the check's exit code, \
                   duration and output, and its image (attached to the turn). Answers once the \
                   turn is queued; the reply arrives on the session's stream. The alert gets a \
                   new version with `investigatedIn` (and `read`). Main token only.",
    params(("id" = String, Path, description = "The alert's id")),
    request_body(content = AskAlertRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The turn has started", body = AskAlertResponse),
        (status = 400, description = "`bad_request` or `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 404, description = "`not_found`: no such kept alert", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn ask(
    _: Authed,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<AskAlertRequest>,
) -> Result<Json<AskAlertResponse>, ApiError> {
    let id = super::extract::path_segment(id)?;
    let alert = state
        .notifications
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no kept alert {id:?}")))?;
    let key = match req.session {
        Some(key) => key.into_string(),
        None => format!("alert-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    // The image goes to the agent as an ordinary attachment of the turn.
    let mut attachment_ids = Vec::new();
    if let Some(image) = &alert.image {
        let images = state.notifications.images().clone();
        let attachments = state.pipeline.attachments().clone();
        let image = image.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let bytes = images.read(&image)?;
            attachments.save(Attachments::mime_of(&image), &bytes).ok()
        })
        .await
        .ok()
        .flatten();
        attachment_ids.extend(saved.map(|s| s.id));
    }
    let text = crate::notify::ask::prompt(&alert, !attachment_ids.is_empty());
    let ticket = state.pipeline.submit(crate::pipeline::TurnRequest {
        session_key: key.clone(),
        text,
        thinking: None,
        attachment_ids,
        client_id: None,
        queue: true,
        deliver: Default::default(),
        parent_id: None,
        regenerate: None,
        model: None,
        attachment_names: Default::default(),
    })?;
    let linked = key.clone();
    if let Some(p) = state.notifications.amend(&id, move |n| {
        n.investigated_in = Some(linked);
        n.read = true;
        true
    })? {
        state.notifications.commit(p).await?;
    }
    Ok(Json(AskAlertResponse {
        ok: true,
        session: key,
        run_id: ticket.run_id,
    }))
}

#[utoipa::path(
    get,
    path = "/webchat/notifications/{id}",
    // `detail` alone is also the other module's: an operation id is the document's, not the module's
    operation_id = "notification_detail",
    tag = "notifications",
    summary = "One kept alert, with its body rendered",
    description = "For the detail view: the alert and its body as sanitized HTML (markdown, \
                   through the allow-list of assistant messages, without images). Main token only.",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert", body = NotificationDetailResponse),
        (status = 404, description = "`not_found`: no such kept alert", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn detail(
    _: Authed,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<NotificationDetailResponse>, ApiError> {
    let id = super::extract::path_segment(id)?;
    let notification = state
        .notifications
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no kept alert {id:?}")))?;
    let body_html = crate::render::alert_markdown_to_html(&notification.body);
    Ok(Json(NotificationDetailResponse {
        ok: true,
        notification,
        body_html,
    }))
}
