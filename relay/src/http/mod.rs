//! The HTTP surface: routing, the guards every request passes, and thin
//! handlers that call into the pipeline and the store.

mod approve;
mod assets;
mod bundle;
mod chat;
mod checks;
pub mod conn;
mod detach;
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
use loopchat_proto::ErrorCode;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

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

// A schema only, for the handlers' annotations; its doc comment is its
// description in the document.
/// Raw bytes (an image upload, a file of the UI).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// The request body limits, bytes, that the routes' layers set.
#[derive(Clone, Copy)]
pub(crate) struct BodyLimits {
    pub json: usize,
    pub attachment: usize,
    pub import: usize,
}

/// Every documented route, each declared once with its operation: `routes!`
/// takes the path and methods from the handler's `#[utoipa::path]`, so the
/// router and the OpenAPI document (`openapi::document`) cannot disagree.
/// Declared in the document's order. A path ending in a catch-all is written
/// as axum spells it (`{*path}`); the document spells it `{path}`.
pub(crate) fn routes(limits: BodyLimits) -> OpenApiRouter<AppState> {
    let open = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(assets::root))
        .routes(routes!(chat::healthz))
        // Open: the API's description holds no secret (docs/protocol.md).
        .routes(routes!(openapi::serve))
        .routes(routes!(assets::webchat))
        .routes(routes!(assets::index))
        .routes(routes!(assets::asset));
    // The JSON limit covers the API; the two routes that take files set
    // their own, and the innermost `DefaultBodyLimit` is the one that holds.
    let api = OpenApiRouter::default()
        .routes(routes!(chat::info))
        .routes(routes!(chat::models))
        .routes(routes!(chat::history))
        .routes(routes!(chat::sessions))
        .routes(routes!(chat::rename))
        .routes(routes!(sessions::archive))
        .routes(routes!(sessions::archived))
        .routes(routes!(sessions::restore))
        .routes(routes!(sessions::purge))
        .routes(routes!(sessions::pin))
        .routes(routes!(chat::tree))
        .routes(routes!(transfer::export))
        .routes(routes!(transfer::import).layer(DefaultBodyLimit::max(limits.import)))
        .routes(routes!(search::search))
        .routes(routes!(status::status))
        .routes(routes!(rpc::rpc))
        .routes(routes!(rpc::abort))
        .routes(routes!(approve::approve))
        .routes(routes!(approve::tools))
        .routes(routes!(events::sse))
        .routes(routes!(events::socket))
        .routes(routes!(uploads::upload).layer(DefaultBodyLimit::max(limits.attachment)))
        .routes(routes!(uploads::download))
        .routes(routes!(notify::notify))
        .routes(routes!(notify::notifications))
        .routes(routes!(notify::presence))
        .routes(routes!(notify::detail))
        .routes(routes!(notify::image))
        .routes(routes!(notify::mark_read))
        .routes(routes!(notify::dismiss))
        .routes(routes!(notify::ask))
        .routes(routes!(checks::list))
        .routes(routes!(checks::detail))
        .routes(routes!(checks::run))
        .layer(DefaultBodyLimit::max(limits.json));
    open.merge(api)
}

/// The relay's whole HTTP surface: [`routes`], the JSON fallbacks, and the
/// guard and the other layers around all of it. A test fails for a route
/// served without a document (a plain axum `route`) or the reverse.
///
/// `body_read_timeout` is the longest pause between two pieces of a request
/// body; a client that stalls longer gets `408 request_timeout`.
pub fn router(state: AppState, body_read_timeout: Duration) -> Router {
    assets::warm();
    let limits = BodyLimits {
        json: state.body_limit,
        attachment: state.attachment_limit,
        import: state.import_limit,
    };
    // The document is served from `openapi::json`, which needs no state.
    let (routes, _) = routes(limits).split_for_parts();
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
        })
        .layer(axum::middleware::from_fn(detach::writes_outlive_their_client))
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
