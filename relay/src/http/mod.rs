//! The HTTP surface: routing, the guards every request passes, and thin
//! handlers that call into the pipeline and the store.

mod approve;
mod assets;
mod bundle;
mod chat;
mod checks;
pub mod conn;
pub mod error;
mod events;
pub(crate) mod extract;
mod guard;
pub(crate) mod notify;
pub mod openapi;
pub(crate) mod rpc;
mod search;
mod sessions;
mod status;
mod transfer;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::{get, post};
use loopchat_proto::ErrorCode;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::credentials::Credentials;
use crate::notify::{DeliveryTargets, NotificationHub, Presence, RateLimiter};
use crate::pipeline::Pipeline;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    /// The accepted tokens, kept in step with the token files.
    pub credentials: Arc<Credentials>,
    pub notifications: NotificationHub,
    pub checks: crate::checks::Checks,
    pub presence: Arc<Presence>,
    /// Burst limit of `POST /webchat/notify`, per token.
    pub notify_limit: Arc<RateLimiter>,
    pub allowed_hosts: Arc<[String]>,
    pub port: u16,
    pub base_url: String,
    /// Limit for JSON request bodies, bytes.
    pub body_limit: usize,
    pub attachment_limit: usize,
    /// Limit for one imported file, bytes.
    pub import_limit: usize,
    pub ws_ping: Duration,
    /// The open live streams, for `/webchat/status`.
    pub live: Arc<crate::live::LiveStreams>,
    /// When the relay started serving, for the uptime.
    pub started: std::time::Instant,
    /// Where rpc `to` may send a reply.
    pub targets: Arc<DeliveryTargets>,
    /// Cancelled when the relay starts shutting down: ends live streams so
    /// that the graceful shutdown does not wait on them forever.
    pub shutdown: CancellationToken,
    /// Full-text search; `None` when its index could not be opened.
    pub search: Option<crate::search::SearchIndex>,
}

/// Every route is documented in the OpenAPI document (`openapi.rs`): its
/// handler has a `#[utoipa::path]` listed in `ApiDoc`, and a test fails for a
/// route or method that is not there.
///
/// `body_read_timeout` is the longest pause between two pieces of a request
/// body; a client that stalls longer gets `408 request_timeout`.
pub fn router(state: AppState, body_read_timeout: Duration) -> Router {
    assets::warm();
    let assets = Router::new()
        .route("/webchat/", get(assets::index))
        .route("/webchat/{*path}", get(assets::asset));
    let uploads = Router::new()
        .route("/webchat/attachments", post(uploads::upload))
        .layer(DefaultBodyLimit::max(state.attachment_limit));
    let imports = Router::new()
        .route("/webchat/import", post(transfer::import))
        .layer(DefaultBodyLimit::max(state.import_limit));
    let api = Router::new()
        .route("/webchat/info", get(chat::info))
        .route("/webchat/models", get(chat::models))
        .route("/webchat/status", get(status::status))
        .route("/webchat/history", get(chat::history))
        .route("/webchat/sessions", get(chat::sessions))
        .route("/webchat/search", get(search::search))
        .route("/webchat/rename", post(chat::rename))
        .route("/webchat/archive", post(sessions::archive))
        .route("/webchat/archived", get(sessions::archived))
        .route("/webchat/restore", post(sessions::restore))
        .route("/webchat/purge", post(sessions::purge))
        .route("/webchat/pin", post(sessions::pin))
        .route("/webchat/tree", get(chat::tree))
        .route("/webchat/export", get(transfer::export))
        .route("/webchat/rpc", post(rpc::rpc))
        .route("/webchat/abort", post(rpc::abort))
        .route("/webchat/approve", post(approve::approve))
        .route("/webchat/tools", get(approve::tools))
        .route("/webchat/events", get(events::sse))
        .route("/webchat/socket", get(events::socket))
        .route("/webchat/attachments/{id}", get(uploads::download))
        .route("/webchat/notify", post(notify::notify))
        .route("/webchat/notifications", get(notify::notifications))
        .route("/webchat/notifications/read", post(notify::mark_read))
        .route("/webchat/notifications/{id}", get(notify::detail))
        .route("/webchat/notifications/{id}/image", get(notify::image))
        .route("/webchat/notifications/{id}/dismiss", post(notify::dismiss))
        .route("/webchat/presence", post(notify::presence))
        .route("/webchat/notifications/{id}/ask", post(notify::ask))
        .route("/webchat/checks", get(checks::list))
        .route("/webchat/checks/{name}", get(checks::detail))
        .route("/webchat/checks/{name}/run", post(checks::run))
        .layer(DefaultBodyLimit::max(state.body_limit));
    Router::new()
        .route("/", get(assets::root))
        .route("/webchat", get(assets::webchat))
        .route("/healthz", get(chat::healthz))
        // Open: the API's description holds no secret (docs/protocol.md).
        .route("/webchat/openapi.json", get(openapi::serve))
        .merge(api)
        .merge(uploads)
        .merge(imports)
        .merge(assets)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::host_and_origin,
        ))
        .layer(RequestBodyTimeoutLayer::new(body_read_timeout))
        .layer(
            // Logs the path only: query strings may carry the token.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
                })
                // Logged under loopchat's own target, so that `RUST_LOG=debug`
                // shows the requests without turning on tower_http and every
                // other dependency (see `crate::logging`).
                .on_request(|_: &Request<_>, _: &tracing::Span| tracing::trace!("request"))
                .on_response(
                    |res: &axum::response::Response, latency: Duration, _: &tracing::Span| {
                        tracing::debug!(
                            status = res.status().as_u16(),
                            ms = latency.as_secs_f64() * 1000.0,
                            "response"
                        )
                    },
                ),
        )
        .with_state(state)
}
