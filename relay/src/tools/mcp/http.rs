//! MCP servers over streamable HTTP (`url` in `[[mcp_servers]]`).
//!
//! rmcp's own HTTP client is built on reqwest 0.13; the relay keeps one HTTP
//! client stack, so [`Client`] implements rmcp's [`StreamableHttpClient`] on
//! the relay's reqwest 0.12 and rmcp runs the protocol over it (sessions,
//! the server's event stream, re-initialising on a 404 for an expired
//! session).
//!
//! What a hostile or dead server can do is bounded here: one JSON answer or
//! one event of an event stream holds at most [`MAX_MESSAGE`] bytes (the
//! bound of every event stream the relay reads, `proto::sse`), an error
//! page is read for its first [`MAX_ERROR_TEXT`] bytes only, a connection
//! must be made within [`CONNECT_TIMEOUT`], no redirect is followed (the
//! configured headers never go to another place), and [`watch`] notices a
//! server that stops answering, so that the supervisor connects again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use loopchat_proto::sse::{MAX_EVENT_BYTES, SseStream};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{Peer, RoleClient};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::common::http_header::{
    EVENT_STREAM_MIME_TYPE, HEADER_LAST_EVENT_ID, HEADER_SESSION_ID, JSON_MIME_TYPE,
};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, SseError, StreamableHttpClient,
    StreamableHttpClientTransportConfig, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use super::McpServerConfig;

/// Longest JSON answer, and longest event of an event stream.
pub const MAX_MESSAGE: usize = MAX_EVENT_BYTES;
/// How much of an error answer is kept to say what went wrong.
const MAX_ERROR_TEXT: usize = 4 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connected server is asked whether it is still there.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

type Error = StreamableHttpError<HttpError>;

/// A failure of the HTTP client, without the URL (which may carry a key in
/// its query) and never with a header.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        Self(loopchat_proto::error_chain(&e.without_url()))
    }
}

fn client_error(e: reqwest::Error) -> Error {
    StreamableHttpError::Client(e.into())
}

/// The relay's reqwest client, as rmcp's HTTP backend.
#[derive(Clone)]
pub(super) struct Client {
    http: reqwest::Client,
}

impl Client {
    fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // An event stream's body is not always read to its end before
            // the connection would be reused; a fresh connection per request
            // costs little on loopback and avoids stalls on a half-read one.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {e}"))?;
        Ok(Self { http })
    }
}

/// The configured headers as a request carries them; `validate` names a
/// bad one.
pub(super) fn header_map(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HashMap<HeaderName, HeaderValue>, String> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("the header name {k:?} is not a valid HTTP header name"))?;
            if reserved(&name) {
                return Err(format!(
                    "the header {k} is set by the MCP client itself and cannot be configured"
                ));
            }
            // The value may be a secret: it is never quoted back.
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| format!("the value of the header {k} is not a valid header value"))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

fn reserved(name: &HeaderName) -> bool {
    [
        "accept",
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        HEADER_SESSION_ID,
        HEADER_LAST_EVENT_ID,
        "mcp-protocol-version",
    ]
    .iter()
    .any(|r| name.as_str().eq_ignore_ascii_case(r))
}

/// `url` may be `https://…`, or `http://…` on a loopback host: anything
/// else would send the configured headers and every tool call in clear over
/// a network.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("the url {url:?} is not a URL: {e}"))?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match u.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "the url {url:?} is plain http to another host: use https, or http on 127.0.0.1, ::1 or localhost"
        )),
        s => Err(format!(
            "the url {url:?} has the scheme {s}: use http or https"
        )),
    }
}

/// Starts the transport to the server; the caller initialises it.
pub(super) fn transport(
    c: &McpServerConfig,
) -> Result<StreamableHttpClientTransport<Client>, String> {
    let url = c.url.as_deref().ok_or("no url")?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(url)
        .custom_headers(header_map(&c.headers)?)
        .max_sse_event_size(MAX_MESSAGE)
        .max_json_response_size(MAX_MESSAGE)
        .max_error_response_size(MAX_ERROR_TEXT)
        .reinit_on_expired_session(true);
    // The server's own event stream is reopened a few times at most: a
    // server that is gone is noticed by `watch`, and the supervisor starts
    // over with its own backoff.
    let mut retry = ExponentialBackoff::default();
    retry.max_times = Some(3);
    config.retry_config = Arc::new(retry);
    Ok(StreamableHttpClientTransport::with_client(
        Client::new()?,
        config,
    ))
}

/// Returns (with the reason) once the server no longer answers a ping,
/// checked every [`PING_EVERY`] and whenever `nudge` is notified (a call
/// failed). A dead HTTP server, unlike a child process, ends nothing the
/// client would see by itself.
pub(super) async fn watch(peer: Peer<RoleClient>, nudge: &tokio::sync::Notify) -> String {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PING_EVERY) => {}
            () = nudge.notified() => {}
        }
        let ping = ClientRequest::PingRequest(Default::default());
        match tokio::time::timeout(PING_TIMEOUT, peer.send_request(ping)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("no answer to ping: {e}"),
            Err(_) => {
                return format!(
                    "no answer to ping within {} seconds",
                    PING_TIMEOUT.as_secs()
                );
            }
        }
    }
}

fn apply_headers(
    mut req: reqwest::RequestBuilder,
    auth: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
) -> reqwest::RequestBuilder {
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req
}

fn media_type_is(value: &HeaderValue, expected: &str) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// A 401 or 403 with a challenge, as rmcp's error for it.
fn auth_failure(status: StatusCode, headers: &HeaderMap) -> Option<Error> {
    let challenge = headers.get(WWW_AUTHENTICATE)?;
    let challenge = String::from_utf8_lossy(challenge.as_bytes()).into_owned();
    match status {
        StatusCode::UNAUTHORIZED => Some(StreamableHttpError::AuthRequired(
            AuthRequiredError::new(challenge),
        )),
        StatusCode::FORBIDDEN => Some(StreamableHttpError::InsufficientScope(
            InsufficientScopeError::new(challenge, None),
        )),
        _ => None,
    }
}

fn status_error(status: StatusCode, headers: &HeaderMap) -> Option<HttpStatusError> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after))
}

/// The whole body, refused once it is longer than `max`.
async fn read_bounded(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.try_next().await.map_err(client_error)? {
        if chunk.len() > max - body.len() {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `max` bytes of the body, as text to quote in an error.
async fn read_start(resp: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while body.len() < max {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let n = chunk.len().min(max - body.len());
                body.extend_from_slice(&chunk[..n]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An event-stream body as rmcp's events, read by the relay's one reader of
/// event streams (bounded per event).
fn events(resp: reqwest::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    events_of(resp.bytes_stream())
}

fn events_of<S>(bytes: S) -> BoxStream<'static, Result<Sse, SseError>>
where
    S: Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    SseStream::<_, loopchat_proto::sse::Event>::with_ids(bytes)
        .map(|r| match r {
            Ok(e) => Ok(Sse::default()
                .data(e.data)
                .id_opt((!e.id.is_empty()).then_some(e.id))),
            Err(e) => Err(SseError::Body(Box::new(HttpError(e.to_string())))),
        })
        .boxed()
}

/// `Sse` has builder methods for set values only.
trait IdOpt {
    fn id_opt(self, id: Option<String>) -> Self;
}

impl IdOpt for Sse {
    fn id_opt(self, id: Option<String>) -> Self {
        match id {
            Some(id) => self.id(id),
            None => self,
        }
    }
}

impl StreamableHttpClient for Client {
    type Error = HttpError;

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let mut req = self.http.get(uri.as_ref()).header(
            ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        if let Some(s) = session_id {
            req = req.header(HEADER_SESSION_ID, s.as_ref());
        }
        if let Some(id) = last_event_id {
            req = req.header(HEADER_LAST_EVENT_ID, id);
        }
        let resp = apply_headers(req, auth, headers)
            .send()
            .await
            .map_err(client_error)?;
        let status = resp.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = auth_failure(status, resp.headers()) {
            return Err(e);
        }
        if let Some(e) = status_error(status, resp.headers()) {
            return Err(e.into());
        }
        if !status.is_success() {
            let text = read_start(resp, MAX_ERROR_TEXT).await;
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {text}"),
            )));
        }
        match resp.headers().get(CONTENT_TYPE) {
            Some(ct)
                if media_type_is(ct, EVENT_STREAM_MIME_TYPE)
                    || media_type_is(ct, JSON_MIME_TYPE) => {}
            other => {
                return Err(StreamableHttpError::UnexpectedContentType(
                    other.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                ));
            }
        }
        Ok(events(resp))
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        _max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        // The bound is the reader's own (`MAX_MESSAGE`, which the transport
        // is configured with).
        self.get_stream(uri, session_id, last_event_id, auth, headers)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let req = self
            .http
            .delete(uri.as_ref())
            .header(HEADER_SESSION_ID, session_id.as_ref());
        let resp = apply_headers(req, auth, headers)
            .send()
            .await
            .map_err(client_error)?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        resp.error_for_status().map_err(client_error)?;
        Ok(())
    }

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth,
            headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut req = self.http.post(uri.as_ref()).header(
            ACCEPT,
            format!("{EVENT_STREAM_MIME_TYPE}, {JSON_MIME_TYPE}"),
        );
        let attached = session_id.is_some();
        if let Some(s) = session_id {
            req = req.header(HEADER_SESSION_ID, s.as_ref());
        }
        let resp = apply_headers(req, auth, headers)
            .json(&message)
            .send()
            .await
            .map_err(client_error)?;
        let status = resp.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        // rmcp answers this by initialising a new session and sending again.
        if status == StatusCode::NOT_FOUND && attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        if let Some(e) = auth_failure(status, resp.headers()) {
            return Err(e);
        }
        let content_type = resp.headers().get(CONTENT_TYPE).cloned();
        let is = |mime: &str| {
            content_type
                .as_ref()
                .is_some_and(|ct| media_type_is(ct, mime))
        };
        let new_session = resp
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Nothing is waiting for an answer to a notification or a reply.
        let awaits_nothing = !matches!(message, JsonRpcMessage::Request(_));
        if !status.is_success() {
            let failure = status_error(status, resp.headers());
            // A JSON-RPC error is the server's own words for the caller.
            if is(JSON_MIME_TYPE) && status != StatusCode::TOO_MANY_REQUESTS {
                let body = match read_bounded(resp, limits.max_json_response_size).await {
                    Ok(body) => body,
                    Err(e) => return Err(failure.map(Into::into).unwrap_or(e)),
                };
                if let Ok(m @ JsonRpcMessage::Error(_)) =
                    serde_json::from_slice::<ServerJsonRpcMessage>(&body)
                {
                    return Ok(StreamableHttpPostResponse::Json(m, new_session));
                }
                if let Some(e) = failure {
                    return Err(e.into());
                }
                let n = body.len().min(limits.max_error_response_size);
                return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..n])),
                )));
            }
            if let Some(e) = failure {
                return Err(e.into());
            }
            let text = read_start(resp, limits.max_error_response_size).await;
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {text}"),
            )));
        }
        if awaits_nothing && resp.content_length() == Some(0) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if is(EVENT_STREAM_MIME_TYPE) {
            return Ok(StreamableHttpPostResponse::Sse(events(resp), new_session));
        }
        if is(JSON_MIME_TYPE) {
            let body = read_bounded(resp, limits.max_json_response_size).await?;
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(m) => Ok(StreamableHttpPostResponse::Json(m, new_session)),
                Err(_) if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
                Err(e) => Err(StreamableHttpError::Deserialize(e)),
            };
        }
        if awaits_nothing {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(
            content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback() {
        for ok in [
            "http://127.0.0.1:3001/mcp",
            "http://[::1]:80/mcp",
            "http://localhost/mcp",
            "https://mcp.example.com/mcp",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://mcp.example.com/mcp",
            "http://10.0.0.1/mcp",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_checked_and_never_quoted() {
        let h = |k: &str, v: &str| std::collections::BTreeMap::from([(k.into(), v.into())]);
        let ok = header_map(&h("Authorization", "Bearer s3cret")).unwrap();
        assert!(ok.values().all(HeaderValue::is_sensitive));
        let e = header_map(&h("X-Key", "s3cret\nInjected: 1")).unwrap_err();
        assert!(e.contains("X-Key") && !e.contains("s3cret"), "{e}");
        assert!(header_map(&h("Mcp-Session-Id", "x")).is_err());
        assert!(header_map(&h("bad name", "x")).is_err());
    }

    #[tokio::test]
    async fn events_are_read_with_their_ids_and_bounded() {
        let chunks: Vec<Result<bytes::Bytes, reqwest::Error>> = vec![
            Ok("id: 7\ndata: {\"a\"".into()),
            Ok(":1}\n\ndata: x\n\n".into()),
        ];
        let got: Vec<_> = events_of(futures_util::stream::iter(chunks))
            .map(|r| r.map(|e| (e.id, e.data)).map_err(|e| e.to_string()))
            .collect()
            .await;
        assert_eq!(
            got,
            vec![
                Ok((Some("7".into()), Some("{\"a\":1}".into()))),
                // The last id holds for later events, as in the spec.
                Ok((Some("7".into()), Some("x".into()))),
            ]
        );
        let huge = format!("data: {}", "x".repeat(MAX_MESSAGE + 1));
        let chunks: Vec<Result<bytes::Bytes, reqwest::Error>> = vec![Ok(huge.into())];
        let got: Vec<_> = events_of(futures_util::stream::iter(chunks))
            .collect()
            .await;
        assert!(matches!(got.as_slice(), [Err(_)]), "{}", got.len());
    }
}
