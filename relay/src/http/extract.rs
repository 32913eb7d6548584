//! Extractors whose rejections speak the protocol's JSON error shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use loopchat_proto::{DEFAULT_SESSION, ErrorCode, SessionKey, validate_session_key};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth;
use crate::credentials::{Caller, Grant};
use crate::notify::tokens::Scope;

/// A JSON body. Any content type is accepted (`curl -d` sends a form type);
/// browsers cannot post cross-origin here anyway (Origin check, token).
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(
            req,
            state,
            state.body_limit,
            "the request body is larger than the relay accepts",
        )
        .await?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// A request body as JSON, the way [`ApiJson`] reads it once the bytes are
/// in (also the entry point of the request-body fuzz targets).
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; expected JSON",
        ));
    }
    // Every body of the protocol is an object; serde would also read a
    // struct from an array of its fields (`[null, null]`).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| decode_error("invalid JSON body", e))
}

/// A body or query that did not decode: `invalid_session_key` when what
/// failed is a session key ([`SessionKey`] checks itself as it is read),
/// else `bad_request`.
pub(crate) fn decode_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    let message = e.to_string();
    if SessionKey::is_refusal(&message) {
        ApiError::new(ErrorCode::InvalidSessionKey, message)
    } else {
        ApiError::bad_request(format!("{what}: {message}"))
    }
}

/// A request body of at most `limit` bytes (the route's `DefaultBodyLimit`
/// enforces the same while reading). Refused with `too_large` (413) as soon
/// as the announced length is over, 408 when it stalls, 400 when broken.
pub async fn read_body(
    req: Request,
    state: &AppState,
    limit: usize,
    too_large: impl Into<String>,
) -> Result<Bytes, ApiError> {
    if declared_length(&req).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, too_large));
    }
    Bytes::from_request(req, state)
        .await
        .map_err(|e| body_read_error(e, too_large))
}

/// The body size the client announced. Checked before reading, so that a
/// client announcing gigabytes gets its `413` at once rather than after the
/// relay has read up to the limit (or waited for bytes that never come).
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Why a body could not be read, in the protocol's terms: too large (413),
/// too slow (408, from the router's body timeout), or broken (400).
fn body_read_error(e: BytesRejection, too_large: impl Into<String>) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::PayloadTooLarge, too_large);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body stopped arriving; the relay gave up waiting",
            );
        }
        source = err.source();
    }
    ApiError::bad_request(format!("could not read the request body: {e}"))
}

/// Query parameters; a malformed query is a 400, not axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| decode_error("invalid query", e))
    }
}

/// Proof that the request carries the relay's main token: full access.
/// A scoped (notify-only) token gets 403 here, an unknown one 401.
/// `grant` names the token it was, so that a stream can end when that
/// token is rotated away (`Credentials::revocation`).
pub struct Authed {
    pub grant: Grant,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        main_only(caller(auth::presented_token(&parts.headers), state)?)
    }
}

/// [`Authed`] for a WebSocket upgrade, where a browser cannot send
/// `Authorization`: the token may also come as the subprotocol
/// `bearer.<token>` (next to `loopchat`, the one the relay echoes). Only
/// this route reads it, so the token in that header buys nothing elsewhere.
pub struct SocketAuthed {
    pub grant: Grant,
}

impl FromRequestParts<AppState> for SocketAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = auth::presented_token(&parts.headers)
            .or_else(|| auth::subprotocol_token(&parts.headers));
        main_only(caller(token, state)?).map(|Authed { grant }| SocketAuthed { grant })
    }
}

fn main_only(grant: Grant) -> Result<Authed, ApiError> {
    match grant.caller {
        Caller::Main => Ok(Authed { grant }),
        Caller::Scoped { scope, .. } => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this token has the {} scope: it may only post notifications \
                 (POST /webchat/notify)",
                scope.as_str()
            ),
        )),
    }
}

/// Any caller allowed to post notifications: the main token or a token
/// with the notify scope.
pub struct NotifyCaller(pub Caller);

impl FromRequestParts<AppState> for NotifyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match caller(auth::presented_token(&parts.headers), state)?.caller {
            c @ (Caller::Main
            | Caller::Scoped {
                scope: Scope::Notify,
                ..
            }) => Ok(NotifyCaller(c)),
        }
    }
}

fn caller(token: Option<&str>, state: &AppState) -> Result<Grant, ApiError> {
    let Some(token) = token else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a token is required: send Authorization: Bearer <token> (see `loopchat info`)",
        ));
    };
    state
        .credentials
        .grant(token)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "the token is not valid"))
}

/// A session key from a request, validated; `main` when absent.
pub fn session_key(raw: Option<&str>) -> Result<String, ApiError> {
    let key = raw.unwrap_or(DEFAULT_SESSION);
    validate_session_key(key).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidSessionKey,
            format!("{}{e}", SessionKey::REFUSAL),
        )
    })?;
    Ok(key.to_owned())
}

/// A path segment (an alert id, a check name). One that does not even
/// decode (invalid UTF-8) names nothing: 404 in the protocol's JSON, where
/// axum's own rejection would be plain text.
pub fn path_segment(
    raw: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    raw.map(|axum::extract::Path(s)| s)
        .map_err(|_| ApiError::not_found("no such alert or check"))
}
