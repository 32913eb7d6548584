//! Attachments: upload (raw bytes) and download.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loopchat_proto::{ErrorCode, UploadResponse};

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
use crate::attachments::{AttachmentError, Attachments};

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
    let bytes = Bytes::from_request(req, &state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the attachment is larger than {} MiB",
                    limit / (1024 * 1024)
                ),
            )
        } else {
            ApiError::bad_request(format!("could not read the upload: {e}"))
        }
    })?;
    let attachments = state.pipeline.attachments().clone();
    let saved = tokio::task::spawn_blocking(move || attachments.save(&mime, &bytes))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| match e {
            AttachmentError::UnsupportedType(_) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
            }
            AttachmentError::Io(io) => crate::store::StoreError::from(io).into(),
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

pub async fn download(
    _: Authed,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    Ok((
        [
            (header::CONTENT_TYPE, Attachments::mime_of(&id).to_owned()),
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
