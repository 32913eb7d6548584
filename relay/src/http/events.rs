//! Live events: `GET /webchat/events` (SSE) and `GET /webchat/socket`
//! (WebSocket), both replaying from `since`/`Last-Event-ID` then going live.
//! Every stream also carries every notification (replayed from
//! `notifySince` when given) and every change of the session list (live
//! only); a stream without `session` carries only those.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, Stream, StreamExt};
use loopchat_proto::{Event, SessionKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Authed, SocketAuthed};
use super::notify::client_id;
use super::rpc::sse_event;
use crate::credentials::{Grant, Revocation};
use crate::events::Subscription;
use crate::live::{LiveGuard, Transport};
use crate::notify::{NotificationSubscription, PresenceLease};
use crate::pipeline::listing::ListSubscription;

/// Largest WebSocket frame or message a client may send (and the socket's
/// read buffer): a pong is a dozen bytes.
const CLIENT_FRAME_LIMIT: usize = 4096;

/// The close code of a socket whose token was rotated or revoked: 4401
/// mirrors HTTP 401 in the private-use range (as graphql-ws does), so a
/// client can tell "sign in again" from a policy close (1008) or a restart.
pub const CLOSE_REVOKED: u16 = 4401;
pub const CLOSE_REVOKED_REASON: &str = "credential revoked";

/// How long a revoked socket's close frame may take to leave.
const CLOSE_SEND_LIMIT: Duration = Duration::from_secs(1);

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The session whose events to carry; without it the stream carries
    /// only notifications.
    session: Option<SessionKey>,
    /// Replay the session's events after this seq, then go live
    /// (`Last-Event-ID` wins over it).
    since: Option<u64>,
    /// Replay the kept notifications after this seq first.
    notify_since: Option<u64>,
    /// Identifies a window (a uuid) for presence (see notifications).
    #[param(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)]
    client: Option<String>,
}

/// Where a subscriber starts: `Last-Event-ID` (the browser's own resume)
/// wins over `since`.
fn start_seq(headers: &HeaderMap, since: Option<u64>) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be a seq number")),
        _ => Ok(since),
    }
}

/// What one stream delivers: its session's events (if it named one) and
/// every notification, merged. Holds the window's presence while open.
struct Feed {
    session: Option<Subscription>,
    notifications: NotificationSubscription,
    list: ListSubscription,
    _presence: Option<PresenceLease>,
    /// Counts the stream in `/webchat/status` while it is open.
    _live: LiveGuard,
}

impl Feed {
    fn open(
        state: &AppState,
        q: &EventsQuery,
        headers: &HeaderMap,
        transport: Transport,
        grant: &Grant,
    ) -> Result<Self, ApiError> {
        let since = start_seq(headers, q.since)?;
        let session = q
            .session
            .as_ref()
            .map(|key| state.pipeline.session(key).events.subscribe(since));
        let presence = match &q.client {
            None => None,
            Some(raw) => Some(state.presence.attach(&client_id(raw)?)),
        };
        Ok(Self {
            session,
            notifications: state.notifications.subscribe(q.notify_since),
            list: state.pipeline.subscribe_list(),
            _presence: presence,
            _live: state.live.open(headers, transport, &grant.caller),
        })
    }

    /// The next event. Replayed notifications come first; after that,
    /// session events win a tie, so a notification posted when a run ends
    /// never overtakes that run's `run.end`. Cancel-safe.
    async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(e) = self.notifications.next_replayed() {
            return Some(e);
        }
        tokio::select! {
            biased;
            e = next_session_event(&mut self.session) => e,
            e = self.notifications.next() => e,
            e = self.list.next() => e,
        }
    }
}

/// Resolves when the stream's token is rotated or revoked. The loops poll
/// it before [`Feed::next`] (`biased`), so once the relay has seen the
/// change — which it has before it accepts a request with the new token —
/// nothing more reaches the old stream. Cancel-safe.
async fn revoked(revocation: &mut Revocation) {
    revocation.revoked().await;
    tracing::info!("closing a live stream: the token it was opened with was rotated or revoked");
}

async fn next_session_event(sub: &mut Option<Subscription>) -> Option<Arc<Event>> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

#[utoipa::path(
    get,
    path = "/webchat/events",
    tag = "events",
    summary = "Live events (Server-Sent Events)",
    description = "Each event is one `data:` line holding an `Event` as JSON; session events also \
                   carry `id: <seq>`. Replays from `Last-Event-ID` or `since`, then goes live; \
                   a position that cannot be replayed starts with a `reset` event. A comment \
                   line is sent every 15 s to keep the connection open. Unknown query \
                   parameters are a 400.",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The browser's own resume position: \
                                                                a seq, preferred over `since`"),
    ),
    responses(
        (status = 200, description = "The event stream: `data: <Event JSON>` lines", content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request` (malformed query, unknown parameter, bad `client` \
                                      or `Last-Event-ID`) or `invalid_session_key`", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn sse(
    Authed { grant }: Authed,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let feed = Feed::open(&state, &q, &headers, Transport::Sse, &grant)?;
    let revocation = state.credentials.revocation(grant);
    let shutdown = state.shutdown.clone();
    // A revoked stream just ends: the client's reconnect then gets the 401
    // that says why, exactly as for a stream that was down during the change.
    let stream = futures_util::stream::unfold(
        (feed, revocation, shutdown),
        |(mut feed, mut revocation, shutdown)| async move {
            tokio::select! {
                biased;
                () = revoked(&mut revocation) => None,
                () = shutdown.cancelled() => None,
                e = feed.next() => e.map(|e| (Ok(sse_event(&e)), (feed, revocation, shutdown))),
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[utoipa::path(
    get,
    path = "/webchat/socket",
    tag = "events",
    summary = "Live events (WebSocket)",
    description = "A WebSocket upgrade. A browser, which cannot set `Authorization` on one, \
                   sends the token as a subprotocol: `Sec-WebSocket-Protocol: loopchat, \
                   bearer.<token>`; the relay answers `Sec-WebSocket-Protocol: loopchat` and \
                   never echoes the token. The socket carries the same events as `/webchat/events`, \
                   one JSON text frame each. Every 30 s the relay sends `{\"type\":\"ping\"}`; \
                   the client answers `{\"type\":\"pong\"}` (a Pong frame also counts) and is \
                   disconnected after three unanswered pings. Unknown query parameters are a 400.",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "A resume position, preferred over `since`"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "`bad_request` (not a WebSocket upgrade request, malformed \
                                      query, unknown parameter, bad `client` or `Last-Event-ID`) or \
                                      `invalid_session_key`", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = []), ("websocket_protocol" = [])),
)]
pub async fn socket(
    SocketAuthed { grant }: SocketAuthed,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // axum's own rejection is plain text; the protocol speaks JSON.
    let ws = ws
        .map_err(|e| ApiError::bad_request(format!("expected a WebSocket upgrade request: {e}")))?;
    let feed = Feed::open(&state, &q, &headers, Transport::WebSocket, &grant)?;
    let revocation = state.credentials.revocation(grant);
    let ping_every = state.ws_ping;
    let shutdown = state.shutdown.clone();
    Ok(ws
        // Only `loopchat` is ever selected: the `bearer.<token>` value a
        // browser offers must not come back in the answer.
        .protocols([crate::auth::WS_PROTOCOL])
        // Clients only ever send pongs. tungstenite zero-fills its whole
        // read buffer (128 KiB by default) on every read, so its size is
        // resident memory per socket: 1,000 windows would cost 128 MiB.
        .read_buffer_size(CLIENT_FRAME_LIMIT)
        .max_frame_size(CLIENT_FRAME_LIMIT)
        .max_message_size(CLIENT_FRAME_LIMIT)
        .on_upgrade(move |socket| run_socket(socket, feed, revocation, ping_every, shutdown))
        .into_response())
}

/// Pings every `ping_every`; a client that misses three pongs in a row is
/// gone (a half-open TCP connection would otherwise hold the socket open).
async fn run_socket(
    socket: WebSocket,
    mut feed: Feed,
    mut revocation: Revocation,
    ping_every: Duration,
    shutdown: CancellationToken,
) {
    let (mut tx, mut rx) = socket.split();
    // A client that stops reading fills its TCP window, and then a send
    // never completes: without this bound it would hold the socket (and its
    // count in `/webchat/status`) open forever, pings unsent.
    let stall = ping_every.saturating_mul(3);
    let send = async |tx: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
                      m: WsMessage|
           -> bool {
        matches!(tokio::time::timeout(stall, tx.send(m)).await, Ok(Ok(())))
    };
    let mut ticker = tokio::time::interval(ping_every);
    ticker.tick().await;
    let mut missed = 0u32;
    loop {
        // Revocation and shutdown first; the feed last, so that a busy
        // session cannot starve the pings and the client's pongs.
        tokio::select! {
            biased;
            () = revoked(&mut revocation) => {
                let close = WsMessage::Close(Some(CloseFrame {
                    code: CLOSE_REVOKED,
                    reason: CLOSE_REVOKED_REASON.into(),
                }));
                // A client that stopped reading cannot keep the socket open
                // by leaving the close frame unsent.
                let _ = tokio::time::timeout(CLOSE_SEND_LIMIT, tx.send(close)).await;
                break;
            }
            () = shutdown.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_SEND_LIMIT, tx.send(WsMessage::Close(None))).await;
                break;
            }
            _ = ticker.tick() => {
                if missed >= 3 {
                    tracing::debug!("closing a WebSocket: three pings unanswered");
                    let _ = tokio::time::timeout(CLOSE_SEND_LIMIT, tx.send(WsMessage::Close(None))).await;
                    break;
                }
                missed += 1;
                if !send(&mut tx, WsMessage::Text(r#"{"type":"ping"}"#.into())).await {
                    break;
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(WsMessage::Text(t))) => {
                    if serde_json::from_str::<serde_json::Value>(&t)
                        .ok()
                        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "pong"))
                        .unwrap_or(false)
                    {
                        missed = 0;
                    }
                }
                Some(Ok(WsMessage::Pong(_))) => missed = 0,
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            e = feed.next() => {
                let Some(e) = e else { break };
                let text = serde_json::to_string(&*e).unwrap_or_default();
                if !send(&mut tx, WsMessage::Text(text.into())).await {
                    break;
                }
            }
        }
    }
    // The window's presence ends before its socket does: a client that
    // sees the close can rely on it.
    drop(feed);
}
