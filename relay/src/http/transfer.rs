//! `GET /webchat/export` and `POST /webchat/import` (`crate::transfer`).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use loopchat_proto::{ErrorCode, ExportFormat, ImportFormat, ImportResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Authed, read_body, session_key};
use crate::transfer::export::{self, Meta};
use crate::transfer::import::{self, ImportError};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The session key; `main` when absent.
    #[param(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)]
    session: Option<String>,
    /// `md` (the current branch as Markdown), `html` (the current branch as one
    /// self-contained page) or `jsonl` (the transcript as stored, every branch).
    #[param(inline)]
    format: ExportFormat,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

#[utoipa::path(
    get,
    path = "/webchat/export",
    tag = "chat",
    summary = "Download a session as a file",
    description = "Markdown and HTML hold the conversation (the current branch), images inlined as `data:` \
                   URIs; the HTML page has no script and a CSP of `default-src 'none'`, so it fetches nothing \
                   when opened. `jsonl` is the session's pi transcript byte for byte, every branch. Sent as \
                   an attachment named after the key. Main token only.",
    params(ExportQuery),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/markdown"),
            (String = "text/html"),
            (String = "application/x-ndjson"),
        ), headers(
            ("Content-Disposition" = String, description = "`attachment; filename=\"<key>.<md|html|jsonl>\"`"),
        )),
        (status = 400, description = "`bad_request` (no or an unknown `format`, unknown parameter) or \
                                      `invalid_session_key`", body = loopchat_proto::ErrorBody),
        (status = 403, description = "`forbidden`: a scoped (notify-only) token", body = loopchat_proto::ErrorBody),
        (status = 404, description = "`not_found`: no such session", body = loopchat_proto::ErrorBody),
        (status = 500, description = "`internal`: the transcript could not be read", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn export(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let key = session_key(q.session.as_deref())?;
    let store = state.pipeline.store();
    let entry = store
        .session(&key)
        .ok_or_else(|| ApiError::not_found(format!("no session {key:?}")))?;
    let transcript = store.transcript(&entry.session_id)?;
    let attachments = state.pipeline.attachments().clone();
    let format = q.format;
    let name = format.file_name(&key);
    let bytes = tokio::task::spawn_blocking(move || {
        let title = transcript.name()?;
        export::export(
            &transcript,
            format,
            &Meta {
                key: &key,
                title: title.as_deref(),
                exported_at_ms: crate::clock::now_millis(),
            },
            &|id| attachments.read(id),
        )
    })
    .await
    .map_err(internal)??;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// What the file is: `auto` (default: `[` starts a ChatGPT export, `{` a
    /// session file), `pi` or `chatgpt`.
    #[param(inline)]
    format: Option<ImportFormat>,
}

#[utoipa::path(
    post,
    path = "/webchat/import",
    tag = "chat",
    summary = "Import a file as new sessions",
    description = "The body is the file: a pi/loopchat session file (JSON lines, any version the store \
                   reads; brought to v3) or ChatGPT's `conversations.json` (one session per conversation, \
                   its current branch). Everything is checked first: a broken file is refused with where it \
                   is wrong (a line, a conversation's index) and nothing is written. Each session gets a \
                   new key. At most `import_limit` bytes (`importLimit` in info). Main token only.",
    params(ImportQuery),
    request_body(description = "The file's bytes", content(
        (super::Binary = "application/x-ndjson"),
        (super::Binary = "application/json"),
    )),
    responses(
        (status = 200, description = "The sessions created, in the file's order", body = ImportResponse),
        (status = 400, description = "`bad_request`: the file is not one this relay imports, or is broken \
                                      (the message says where), or the relay serves another tool's store",
         body = loopchat_proto::ErrorBody),
        (status = 403, description = "`forbidden`: a scoped (notify-only) token", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: larger than `import_limit`", body = loopchat_proto::ErrorBody),
        (status = 500, description = "`internal`: the store could not be written", body = loopchat_proto::ErrorBody),
        (status = 507, description = "`store_full`: the disk is full; nothing was stored", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn import(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    req: Request,
) -> Result<Json<ImportResponse>, ApiError> {
    let limit = state.import_limit;
    let too_large = format!(
        "the file is larger than the import limit ({limit} bytes, import_limit in config.toml)"
    );
    let bytes = read_body(req, &state, limit, too_large).await?;
    let sessions = import::import(
        state.pipeline.store(),
        bytes.to_vec(),
        q.format.unwrap_or_default(),
    )
    .await
    .map_err(|e| match e {
        ImportError::Store(e) => ApiError::from(e),
        other => ApiError::bad_request(format!("cannot import the file: {other}")),
    })?;
    tracing::info!(sessions = sessions.len(), "imported sessions");
    Ok(Json(ImportResponse { ok: true, sessions }))
}
