//! Checks every request passes before routing: Host and Origin (DNS
//! rebinding, other web pages in the user's browser), plus the security
//! headers every response carries.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use loopchat_proto::ErrorCode;

use super::AppState;
use super::error::ApiError;
use crate::auth::{host_allowed, origin_allowed, origin_matches_host};

const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn host_and_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let host = match host {
        Some(h) if host_allowed(h, &state.allowed_hosts) => h,
        _ => {
            return ApiError::new(
                ErrorCode::ForbiddenHost,
                "the Host header is not a loopback name (or a configured allowed_hosts entry)",
            )
            .into_response();
        }
    };
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, &state.allowed_hosts) && origin_matches_host(o, host));
        if !ok {
            return ApiError::new(
                ErrorCode::ForbiddenOrigin,
                "requests from this Origin are not allowed: only the relay's own page \
                 (the same host and port) may call it from a browser",
            )
            .into_response();
        }
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // API answers carry the token and transcripts: never cache them.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
