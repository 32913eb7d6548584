//! `GET /webchat/search`: full-text search across every session.

use axum::Json;
use axum::extract::State;
use loopchat_proto::{
    ErrorBody, ErrorCode, SEARCH_LIMIT_MAX, SEARCH_QUERY_MAX_BYTES, SearchHit, SearchResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Authed, session_key};
use crate::search::SearchError;

const DEFAULT_LIMIT: usize = 20;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words to look for, all of which a message must hold (letters and
    /// digits, case ignored; other characters only separate words).
    #[param(min_length = 1, max_length = 256)]
    q: String,
    /// Only this session's messages.
    #[param(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)]
    session: Option<String>,
    /// How many hits at most (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/webchat/search",
    tag = "chat",
    summary = "Messages of every session holding all the words of a query, best first",
    description = "User messages and assistant replies are searched (not tool results, thinking \
                   or summaries). The query is plain words: no operators, every word must match. \
                   Each hit names its session and message (open it with \
                   `history?session=K&around=messageId`) and carries a snippet, as text and as \
                   escaped HTML whose only markup is `<mark>`. `complete` is false while the \
                   index is still catching up after a start. A session that does not exist has \
                   no hits.",
    params(SearchQuery),
    responses(
        (status = 200, description = "The hits", body = SearchResponse),
        (status = 400, description = "`bad_request` (no word in `q`, `q` over 256 bytes, `limit` \
                                      out of range, malformed query, unknown parameter) or \
                                      `invalid_session_key`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a notify-only token", body = ErrorBody),
        (status = 500, description = "`internal`: the index could not be read", body = ErrorBody),
        (status = 503, description = "`unavailable`: the index could not be opened at start", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn search(
    _: Authed,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResponse>, ApiError> {
    if q.q.len() > SEARCH_QUERY_MAX_BYTES {
        return Err(ApiError::bad_request(format!(
            "q is longer than {SEARCH_QUERY_MAX_BYTES} bytes"
        )));
    }
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=SEARCH_LIMIT_MAX).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {SEARCH_LIMIT_MAX}, not {n}"
            )));
        }
    };
    let store = state.pipeline.store().clone();
    let session_id = match q.session.as_deref() {
        None => None,
        Some(raw) => {
            let key = session_key(Some(raw))?;
            match store.session(&key) {
                Some(entry) => Some(entry.session_id),
                None => {
                    return Ok(Json(SearchResponse {
                        ok: true,
                        hits: Vec::new(),
                        complete: state.search.as_ref().is_none_or(|s| s.complete()),
                    }));
                }
            }
        }
    };
    let Some(index) = state.search.clone() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "search is off: its index could not be opened when the relay started",
        ));
    };
    let complete = index.complete();
    let hits = tokio::task::spawn_blocking(move || {
        let found = index.search(&q.q, session_id.as_deref(), limit)?;
        let hits = found
            .into_iter()
            .filter_map(|f| {
                // A session no key names any more (removed) is not shown.
                let mut keys = store.keys_of(&f.session_id);
                keys.sort();
                let session = keys.into_iter().next()?;
                let title = store
                    .transcript(&f.session_id)
                    .ok()
                    .and_then(|t| t.name().ok().flatten());
                Some(SearchHit {
                    session,
                    title,
                    message_id: f.message_id,
                    role: f.role,
                    timestamp: f.timestamp,
                    snippet: f.snippet,
                    snippet_html: f.snippet_html,
                })
            })
            .collect::<Vec<_>>();
        Ok::<_, SearchError>(hits)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a search failed");
        ApiError::new(ErrorCode::Internal, "the search failed")
    })?
    .map_err(|e| match e {
        SearchError::NoWords | SearchError::TooLong => {
            ApiError::bad_request(format!("{e}: give one or more words (letters or digits)"))
        }
        e => {
            tracing::error!(error = %e, "a search failed");
            ApiError::new(ErrorCode::Internal, "the search index could not be read")
        }
    })?;
    Ok(Json(SearchResponse {
        ok: true,
        hits,
        complete,
    }))
}
