//! The bundled web UI, embedded in the binary, and the token → cookie
//! exchange on `/webchat/?token=…`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use rust_embed::RustEmbed;

use super::AppState;
use crate::auth::{COOKIE_NAME, token_matches};

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../webchat-dist"]
struct WebchatDist;

pub async fn index(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(response) = exchange_token(&state, &uri) {
        return response;
    }
    serve("index.html", &headers)
}

pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// `?token=` in the URL: set the HttpOnly cookie and redirect to the same
/// URL without it, so the token leaves the address bar and history at once.
/// A wrong token is dropped without a cookie; the page then shows that it
/// is not authorized.
fn exchange_token(state: &AppState, uri: &Uri) -> Option<Response> {
    let query = uri.query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let token = pairs.iter().find(|(k, _)| k == "token")?.1.clone();
    let rest: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "token").collect();
    let mut location = uri.path().to_owned();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&serde_urlencoded::to_string(&rest).unwrap_or_default());
    }
    let mut response = Redirect::to(&location).into_response();
    *response.status_mut() = StatusCode::FOUND;
    if token_matches(&state.token, &token) {
        let cookie = format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/webchat");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
    } else {
        tracing::info!("a browser presented a wrong token; no cookie set");
    }
    Some(response)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = WebchatDist::get(path) else {
        return super::error::ApiError::not_found(format!("no asset {path:?}")).into_response();
    };
    let etag = format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(file.metadata.sha256_hash())
    );
    let is_index = path == "index.html";
    // Assets are not fingerprinted, so they are revalidated (cheap: 304);
    // the page itself is never cached so an upgrade shows at once.
    let cache = if is_index { "no-store" } else { "no-cache" };
    if !is_index
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
        )
            .into_response();
    }
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = if mime.type_() == "text" || mime.subtype() == "javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_owned()),
        ],
        file.data,
    )
        .into_response()
}
