//! A write runs to the end, whether or not its client waits for the answer.
//!
//! hyper drops a handler's future when its client hangs up, and a future
//! dropped at an `.await` stops there. For a read that is harmless. For a
//! write it is not: a page reloaded right after "Mark all read", or a
//! `curl` stopped with Ctrl-C during an archive, would leave the change
//! half made: the session marked as being archived for good, the new
//! version of an alert never delivered, a session list that other windows
//! never hear about. So every request that may change something (any
//! method but GET, HEAD and OPTIONS) is served on its own task, and the
//! connection only waits for it.

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use loopchat_proto::ErrorCode;
use tracing::Instrument;

use super::error::ApiError;

/// The middleware: reads pass through, anything else is spawned.
pub async fn writes_outlive_their_client(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // In the request's span, so that its logs still name the request.
    match tokio::spawn(next.run(req).in_current_span()).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request's handler failed");
            ApiError::new(
                ErrorCode::Internal,
                "the relay failed to handle this request",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_whose_client_hung_up_still_finishes() {
        let (started, go, finished) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        let handler = {
            let (started, go, finished) = (started.clone(), go.clone(), finished.clone());
            move || async move {
                started.notify_one();
                go.notified().await;
                finished.notify_one();
                "ok"
            }
        };
        let router = Router::new()
            .route("/w", post(handler))
            .layer(axum::middleware::from_fn(writes_outlive_their_client));
        let req = Request::post("/w").body(Body::empty()).unwrap();
        // The connection's task, dropped mid-handler as hyper does when the
        // client hangs up.
        let connection = tokio::spawn(router.oneshot(req));
        started.notified().await;
        connection.abort();
        assert!(connection.await.unwrap_err().is_cancelled());
        go.notify_one();
        tokio::time::timeout(Duration::from_secs(10), finished.notified())
            .await
            .expect("the write stopped when its client hung up");
    }
}
