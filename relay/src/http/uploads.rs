//! Attachments: upload (raw bytes) and download.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopchat_proto::{ErrorCode, UploadResponse};

use super::AppState;
use super::error::ApiError;
use super::extract::{Authed, read_body};
use crate::attachments::{AttachmentError, Attachments, Kind};

#[utoipa::path(
    post,
    path = "/webchat/attachments",
    tag = "attachments",
    summary = "Upload an image, a text file or a PDF",
    description = "The raw bytes of one PNG, JPEG, GIF or WebP image (magic bytes must match \
                   the declared Content-Type), UTF-8 text (`text/plain`, `text/markdown`, \
                   `text/csv`, `application/json`) or a PDF with a text layer, whose text is \
                   extracted now (Decision 82). The answer's `id` is what an rpc turn's \
                   `attachments` reference. At most `attachment_limit` bytes (10 MiB by default; \
                   `/webchat/info` gives it as `attachments.maxBytes`).",
    request_body(description = "The file's bytes", content(
        (super::Binary = "image/png"),
        (super::Binary = "image/jpeg"),
        (super::Binary = "image/gif"),
        (super::Binary = "image/webp"),
        (super::Binary = "text/plain"),
        (super::Binary = "text/markdown"),
        (super::Binary = "text/csv"),
        (serde_json::Value = "application/json"),
        (super::Binary = "application/pdf"),
    )),
    responses(
        (status = 200, description = "Stored (content-addressed: the same bytes get the same id)", body = UploadResponse),
        (status = 400, description = "`bad_request`: empty, not an image of the declared type, \
                                      not UTF-8 text, or a PDF that is not one, is encrypted, \
                                      broken or has no text", body = loopchat_proto::ErrorBody),
        (status = 408, description = "`request_timeout`: the request body stopped arriving", body = loopchat_proto::ErrorBody),
        (status = 413, description = "`payload_too_large`: larger than `attachment_limit`", body = loopchat_proto::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not one of the accepted types", body = loopchat_proto::ErrorBody),
        (status = 500, description = "`internal`: the file could not be written", body = loopchat_proto::ErrorBody),
        (status = 507, description = "`store_full`: the disk is full", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn upload(
    _: Authed,
    State(state): State<AppState>,
    req: Request,
) -> Result<Json<UploadResponse>, ApiError> {
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let limit = state.attachment_limit;
    let too_large = if limit >= 1024 * 1024 {
        format!(
            "the attachment is larger than {} MiB",
            limit / (1024 * 1024)
        )
    } else {
        format!("the attachment is larger than {limit} bytes")
    };
    let bytes = read_body(req, &state, limit, too_large).await?;
    let attachments = state.pipeline.attachments().clone();
    let saved = tokio::task::spawn_blocking(move || attachments.save(&mime, &bytes))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| match e {
            AttachmentError::UnsupportedType(..) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
            }
            AttachmentError::Io(io) => crate::durable::DiskError::from(io).into(),
            other => ApiError::bad_request(other.to_string()),
        })?;
    Ok(Json(UploadResponse {
        ok: true,
        url: format!("attachments/{}", saved.id),
        id: saved.id,
        mime_type: saved.mime_type,
        size: saved.size,
    }))
}

#[utoipa::path(
    get,
    path = "/webchat/attachments/{id}",
    tag = "attachments",
    summary = "Download an uploaded file",
    description = "Content-addressed, so cached for a year (`immutable`, in private caches only). \
                   Like every API call it needs `Authorization: Bearer`: the web UI fetches \
                   the bytes and shows them from a `blob:` URL.",
    params(
        ("id" = String, Path, description = "An upload's id: sha256 hex of the bytes plus the \
                                             type's extension; anything else is a 404",
         pattern = r"^[0-9a-f]{64}\.(png|jpg|gif|webp|txt|md|csv|json|pdf)$"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The ETag of a copy the client \
                                                                  has (`\"<id>\"`)"),
    ),
    responses(
        (status = 200, description = "The bytes", content(
            (super::Binary = "image/png"),
            (super::Binary = "image/jpeg"),
            (super::Binary = "image/gif"),
            (super::Binary = "image/webp"),
            (super::Binary = "text/plain"),
            (super::Binary = "text/markdown"),
            (super::Binary = "text/csv"),
            (serde_json::Value = "application/json"),
            (super::Binary = "application/pdf"),
        ), headers(
            ("ETag" = String, description = "`\"<id>\"`"),
            ("Cache-Control" = String, description = "`private, max-age=31536000, immutable`"),
            ("Content-Disposition" = String, description = "`attachment` for a file that is not an image"),
        )),
        (status = 304, description = "Not Modified: `If-None-Match` named this id"),
        (status = 404, description = "`not_found`: no such attachment", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn download(
    _: Authed,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // An id that does not even decode (invalid UTF-8) names no attachment;
    // axum's own rejection would be plain text.
    let Ok(Path(id)) = id else {
        return Err(ApiError::not_found("no such attachment"));
    };
    let etag = format!("\"{id}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let attachments = state.pipeline.attachments().clone();
    let lookup = id.clone();
    let bytes = tokio::task::spawn_blocking(move || attachments.read(&lookup))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found(format!("no attachment {id:?}")))?;
    let mut mime = Attachments::mime_of(&id).to_owned();
    if mime.starts_with("text/") {
        mime.push_str("; charset=utf-8");
    }
    // A file is for saving, never for rendering on the relay's origin.
    let disposition = match Attachments::kind_of(&id) {
        Kind::Image => "inline",
        Kind::File => "attachment",
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, disposition.to_owned()),
            // Content-addressed: the bytes behind an id never change.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
            (header::ETAG, etag),
        ],
        bytes,
    )
        .into_response())
}
