//! Read endpoints: info, history pages, the session list, health.

use axum::Json;
use axum::extract::State;
use loopchat_proto::{
    AttachmentLimits, ErrorBody, Health, HistoryResponse, InfoResponse, Message, ModelsResponse,
    RenameRequest, RenameResponse, SessionKey, SessionsResponse, TreeEntry, TreeResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authed, session_key};
use crate::store::{Page, Placement};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness and version",
    description = "Open without a token.",
    responses((status = 200, description = "The relay is up", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

// The bounds below are the ones `SessionKey` and `limit` enforce.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InfoQuery {
    /// The session key; `main` when absent.
    session: Option<SessionKey>,
    /// How many of the latest messages to include (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn limit(raw: Option<usize>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

fn messages(page: &Page) -> Vec<Message> {
    page.messages.iter().map(|m| m.message.clone()).collect()
}

#[utoipa::path(
    get,
    path = "/webchat/info",
    tag = "chat",
    summary = "Everything a window needs to open a session",
    description = "The session's latest messages, its `lastSeq` (subscribe to events with \
                   `since=lastSeq` to miss nothing) and the run in progress, if any. A \
                   session that does not exist yet is not an error: `sessionId` is null and \
                   there are no messages. Unknown query parameters are a 400.",
    params(InfoQuery),
    responses(
        (status = 200, description = "The session", body = InfoResponse),
        (status = 400, description = "`bad_request` (malformed query, `limit` out of range, \
                                      unknown parameter) or `invalid_session_key`", body = ErrorBody),
        (status = 500, description = "`internal`: the transcript could not be read", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn info(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InfoQuery>,
) -> Result<Json<InfoResponse>, ApiError> {
    let key = session_key(q.session.as_deref())?;
    let limit = limit(q.limit)?;
    let store = state.pipeline.store();
    let entry = store.session(&key);
    // Read the seq before the messages: an event after this point is either
    // in the messages or replayed to a subscriber starting at lastSeq.
    let runtime = state.pipeline.existing_session(&key);
    let last_seq = runtime
        .as_ref()
        .map_or(state.pipeline.seq_base(), |rt| rt.events.last_seq());
    let active_run = runtime.as_ref().and_then(|rt| rt.active_run());
    let pending_approvals = runtime
        .as_ref()
        .map(|rt| rt.approvals.pending())
        .unwrap_or_default();
    let (initial_messages, has_more, model) = match &entry {
        Some(e) => {
            let transcript = store.transcript(&e.session_id)?;
            let page = transcript.latest(limit)?;
            let model = state.pipeline.session_model(&transcript);
            (messages(&page), page.has_more, model)
        }
        None => (Vec::new(), false, state.pipeline.agent_info().model),
    };
    let attachments = state.pipeline.attachments();
    Ok(Json(InfoResponse {
        ok: true,
        base_url: state.base_url.clone(),
        port: state.port,
        token: state.credentials.main_token(),
        base_path: "/webchat/".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        welcome_version: loopchat_proto::WELCOME_VERSION,
        session_key: key,
        session_id: entry.as_ref().map(|e| e.session_id.clone()),
        thinking_level: entry.map(|e| e.thinking()).unwrap_or_default(),
        agent: state.pipeline.agent_info(),
        initial_messages,
        has_more,
        last_seq,
        active_run,
        pending_approvals,
        model,
        attachments: AttachmentLimits {
            max_bytes: state.attachment_limit as u64,
            max_count: loopchat_proto::MAX_ATTACHMENTS as u32,
            types: attachments.accepted_types(),
            max_text_chars: crate::attachments::MAX_FILE_TEXT_CHARS as u64,
        },
        import_limit: state.import_limit as u64,
    }))
}

#[utoipa::path(
    get,
    path = "/webchat/models",
    tag = "chat",
    summary = "The models a turn may choose from",
    description = "For the `openai` backend: `[agent.openai] models` when configured, else the \
                   server's `GET {base_url}/models`, asked with a 5 s timeout and kept for 60 s. \
                   A server that is down or answers something else is not an error here: \
                   `models` is empty and `error` says why (Decision 80). Other backends offer \
                   no choice (`source: none`).",
    responses(
        (status = 200, description = "The list", body = ModelsResponse),
    ),
    security(("bearer" = [])),
)]
pub async fn models(_: Authed, State(state): State<AppState>) -> Json<ModelsResponse> {
    Json(state.pipeline.models().await)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The session key; `main` when absent.
    session: Option<SessionKey>,
    /// A message id: the page ends just before it. Absent: the latest page.
    before: Option<String>,
    /// An entry id: the page is the end of the path to it (another branch
    /// than the conversation) instead of the leaf's. With `before`, the page
    /// is the one before that message, on whichever branch it is.
    leaf: Option<String>,
    /// A message id: the page holds that message with the ones around it
    /// (up to half of the page after it), on the conversation's path (or
    /// `leaf`'s). Not with `before` or `after`.
    around: Option<String>,
    /// A message id: the page holds the messages after it on the
    /// conversation's path (or `leaf`'s), for paging forward from a page
    /// `around` a message. Not with `before`.
    after: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/webchat/history",
    tag = "chat",
    summary = "A page of a session's messages, oldest first",
    description = "Unknown query parameters are a 400. A session that does not exist yet has \
                   no messages. `around` and `after` page forward as well as back: `hasNewer` \
                   says whether newer messages follow the page on its path.",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The page", body = HistoryResponse),
        (status = 400, description = "`bad_request` (malformed query, `limit` out of range, \
                                      unknown parameter, more than one of `before`, `around` and \
                                      `after`) or `invalid_session_key`", body = ErrorBody),
        (status = 404, description = "`not_found`: no message `before` in this session, or \
                                      `around`/`after` not on the path", body = ErrorBody),
        (status = 500, description = "`internal`: the transcript could not be read", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn history(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let key = session_key(q.session.as_deref())?;
    let limit = limit(q.limit)?;
    let store = state.pipeline.store();
    let Some(entry) = store.session(&key) else {
        return Ok(Json(HistoryResponse {
            ok: true,
            messages: Vec::new(),
            has_more: false,
            has_newer: false,
        }));
    };
    let anchors = [&q.before, &q.around, &q.after]
        .iter()
        .filter(|a| a.is_some())
        .count();
    if anchors > 1 {
        return Err(ApiError::bad_request(
            "before, around and after each place the page: give one of them",
        ));
    }
    let transcript = store.transcript(&entry.session_id)?;
    let placed = match (q.around.as_deref(), q.after.as_deref()) {
        (Some(id), _) => Some((id, Placement::Around)),
        (_, Some(id)) => Some((id, Placement::After)),
        _ => None,
    };
    if let Some((id, placement)) = placed {
        let (page, has_newer) = transcript
            .around(id, q.leaf.as_deref(), limit, placement)?
            .ok_or_else(|| {
                ApiError::not_found(format!("no message {id:?} on this path of session {key:?}"))
            })?;
        return Ok(Json(HistoryResponse {
            ok: true,
            messages: messages(&page),
            has_more: page.has_more,
            has_newer,
        }));
    }
    // Paging back walks the parents of `before`, which are the same on every
    // branch it is on: with `before`, `leaf` changes nothing.
    let page = match (q.before.as_deref(), q.leaf.as_deref()) {
        (None, None) => transcript.latest(limit)?,
        (Some(id), _) => transcript
            .before(id, limit)?
            .ok_or_else(|| ApiError::not_found(format!("no message {id:?} in session {key:?}")))?,
        (None, Some(id)) => transcript
            .path_to(id, limit)?
            .ok_or_else(|| ApiError::not_found(format!("no entry {id:?} in session {key:?}")))?,
    };
    Ok(Json(HistoryResponse {
        ok: true,
        messages: messages(&page),
        has_more: page.has_more,
        has_newer: false,
    }))
}

#[utoipa::path(
    get,
    path = "/webchat/sessions",
    tag = "chat",
    summary = "Every session: pinned first, then most recently updated",
    description = "Archived (deleted) sessions are not listed: see `GET /webchat/archived`. \
                   Changes are pushed to every event stream as `sessions` events.",
    responses((status = 200, description = "The sessions", body = SessionsResponse)),
    security(("bearer" = [])),
)]
pub async fn sessions(
    _: Authed,
    State(state): State<AppState>,
) -> Result<Json<SessionsResponse>, ApiError> {
    let pipeline = state.pipeline.clone();
    let sessions = tokio::task::spawn_blocking(move || pipeline.session_list())
        .await
        .map_err(|e| ApiError::new(loopchat_proto::ErrorCode::Internal, e.to_string()))?;
    Ok(Json(SessionsResponse { ok: true, sessions }))
}

/// Entries beyond which `GET /webchat/tree` answers `complete: false`.
const TREE_CAP: usize = 20_000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// The session key; `main` when absent.
    session: Option<SessionKey>,
}

#[utoipa::path(
    get,
    path = "/webchat/tree",
    tag = "chat",
    summary = "The shape of a session's tree (pi's id/parentId), for switching branches",
    description = "Reads the whole transcript: meant for a client showing `‹ 2/3 ›` switchers, not for every \
                   load. Above 20,000 entries it answers `complete: false` without entries.",
    params(TreeQuery),
    responses(
        (status = 200, description = "The tree", body = TreeResponse),
        (status = 400, description = "`bad_request` or `invalid_session_key`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn tree(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TreeQuery>,
) -> Result<Json<TreeResponse>, ApiError> {
    let key = session_key(q.session.as_deref())?;
    let store = state.pipeline.store();
    let Some(entry) = store.session(&key) else {
        return Ok(Json(TreeResponse {
            ok: true,
            leaf_id: None,
            complete: true,
            entries: Vec::new(),
        }));
    };
    let transcript = store.transcript(&entry.session_id)?;
    let skeleton = tokio::task::spawn_blocking(move || transcript.tree(TREE_CAP))
        .await
        .map_err(|e| ApiError::new(loopchat_proto::ErrorCode::Internal, e.to_string()))??;
    Ok(Json(match skeleton {
        None => TreeResponse {
            ok: true,
            leaf_id: None,
            complete: false,
            entries: Vec::new(),
        },
        Some(t) => TreeResponse {
            ok: true,
            leaf_id: t.leaf,
            complete: true,
            entries: t
                .entries
                .into_iter()
                .map(|(id, parent_id, role)| TreeEntry {
                    id,
                    parent_id,
                    role,
                })
                .collect(),
        },
    }))
}

/// Longest session name accepted.
const MAX_NAME_CHARS: usize = 200;

#[utoipa::path(
    post,
    path = "/webchat/rename",
    tag = "chat",
    summary = "Name a session",
    description = "Appends pi's `session_info` entry to the session's transcript (an empty name clears the title) \
                   and answers once it is durable. The name is the session's `title` in `GET /webchat/sessions`.",
    request_body = RenameRequest,
    responses(
        (status = 200, description = "Renamed", body = RenameResponse),
        (status = 400, description = "`bad_request`: a name too long or with control characters; `invalid_session_key`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session", body = ErrorBody),
        (status = 507, description = "`store_full`: the disk holding the store is full", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn rename(
    _: Authed,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> Result<Json<RenameResponse>, ApiError> {
    let key = session_key(req.session.as_deref())?;
    let name = req.name.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a session name is at most {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    let store = state.pipeline.store();
    let entry = store
        .session(&key)
        .ok_or_else(|| ApiError::not_found(format!("no session {key:?}")))?;
    let transcript = store.transcript(&entry.session_id)?;
    let generation = {
        let transcript = transcript.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || transcript.rename(&name))
            .await
            .map_err(|e| ApiError::new(loopchat_proto::ErrorCode::Internal, e.to_string()))??
    };
    transcript.durable(generation).await?;
    state
        .pipeline
        .list_changed(&key, loopchat_proto::SessionChange::Updated);
    Ok(Json(RenameResponse {
        ok: true,
        title: Some(name.to_owned()).filter(|n| !n.is_empty()),
    }))
}
