//! Hostile input over real sockets. Every case must end in a 4xx or a
//! closed connection: never a 5xx, a hang, or a dead relay. The bytes are
//! written by hand because an HTTP client library would refuse to send most
//! of them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use loopchat_tests::{Relay, RelayOptions, assert_store_readable};

/// Short timeouts so that the slow-client cases finish quickly; the
/// defaults (30 s) are the same code path.
const CONFIG: &str =
    "header_read_timeout_secs = 2\nbody_read_timeout_secs = 2\nmax_connections = 24\n";

/// Longest wait for any answer. A relay that neither answers nor closes
/// within it is hanging on the client, which is itself a failure.
const PATIENCE: Duration = Duration::from_secs(20);

fn start() -> Relay {
    Relay::start_with(RelayOptions::default().config(CONFIG))
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16, String),
    Closed,
}

fn connect(relay: &Relay) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", relay.port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s
}

/// Writes `bytes` and reads until the relay closes the connection. Write
/// errors are fine: a relay may close before taking everything.
fn exchange(relay: &Relay, bytes: &[u8]) -> Outcome {
    let mut s = connect(relay);
    let _ = s.write_all(bytes);
    read_outcome(&mut s)
}

fn read_outcome(s: &mut TcpStream) -> Outcome {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // Enough of a response to judge; keep-alive connections
                // would otherwise stay open until the idle timeout.
                if response_complete(&got) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the relay neither answered nor closed within {:?} ({e}); got {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    parse_outcome(&got)
}

fn response_complete(got: &[u8]) -> bool {
    let Some(head_end) = find(got, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => got.len() >= head_end + 4 + n,
        None => false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_outcome(got: &[u8]) -> Outcome {
    if got.is_empty() {
        return Outcome::Closed;
    }
    let text = String::from_utf8_lossy(got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Outcome::Status(status, body)
}

#[track_caller]
fn assert_refused(case: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Closed => {}
        Outcome::Status(code, body) => assert!(
            (400..500).contains(code),
            "{case}: expected a 4xx or a closed connection, got {code}: {body}"
        ),
    }
}

/// A 4xx with the protocol's JSON error body and the given code.
#[track_caller]
fn assert_api_error(case: &str, outcome: &Outcome, status: u16, code: &str) {
    let Outcome::Status(got, body) = outcome else {
        panic!("{case}: expected {status} {code}, the connection was closed");
    };
    assert_eq!(*got, status, "{case}: {body}");
    let json: serde_json::Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("{case}: error body is not JSON ({e}): {body:?}"));
    assert_eq!(json["ok"], false, "{case}: {json}");
    assert_eq!(json["code"], code, "{case}: {json}");
}

fn post(relay: &Relay, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        relay.port,
        relay.token,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn get(relay: &Relay, target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        relay.port, relay.token
    )
    .into_bytes()
}

/// The relay is still alive and serving after whatever the test threw at
/// it, did not log a panic, and its store still parses.
fn assert_still_serving(relay: &Relay) {
    let ok = exchange(
        relay,
        &post(relay, "/webchat/rpc", br#"{"text":"still there?"}"#),
    );
    let Outcome::Status(200, body) = &ok else {
        panic!("a normal turn after the hostile input failed: {ok:?}");
    };
    assert!(body.contains("still there?"), "{body}");
    assert!(
        !relay.logs().contains("panicked"),
        "the relay panicked:\n{}",
        relay.logs()
    );
    assert_store_readable(&relay.home);
}

#[test]
fn malformed_bodies_are_400_with_a_json_error() {
    let relay = start();
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_in_field = format!(
        r#"{{"text":"x","thinking":{}{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", br#"{"text":"hi""#.to_vec()),
        ("not JSON", b"text=hello".to_vec()),
        ("JSON array", b"[1,2,3]".to_vec()),
        ("wrong type for text", br#"{"text":5}"#.to_vec()),
        (
            "wrong type for session",
            br#"{"text":"x","session":["a"]}"#.to_vec(),
        ),
        (
            "wrong type for stream",
            br#"{"text":"x","stream":"yes"}"#.to_vec(),
        ),
        (
            "attachments not a list",
            br#"{"text":"x","attachments":"a"}"#.to_vec(),
        ),
        ("deeply nested array", deep_array.into_bytes()),
        ("deeply nested field", deep_in_field.into_bytes()),
        ("invalid UTF-8", b"{\"text\":\"\xff\xfe\xc3\x28\"}".to_vec()),
        ("lone surrogate", br#"{"text":"\ud800"}"#.to_vec()),
        ("raw NUL outside a string", b"{\"text\":\"x\"\0}".to_vec()),
        (
            "raw control character in a string",
            b"{\"text\":\"a\x01b\"}".to_vec(),
        ),
        ("empty body", Vec::new()),
        (
            "huge number",
            format!(r#"{{"text":"x","id":{}}}"#, "9".repeat(5000)).into_bytes(),
        ),
    ];
    for (case, body) in &cases {
        let outcome = exchange(&relay, &post(&relay, "/webchat/rpc", body));
        assert_api_error(case, &outcome, 400, "bad_request");
    }
    for (case, body) in &cases {
        let outcome = exchange(&relay, &post(&relay, "/webchat/notify", body));
        assert_api_error(&format!("notify: {case}"), &outcome, 400, "bad_request");
    }
    assert_still_serving(&relay);
}

#[test]
fn hostile_text_is_stored_faithfully_or_refused() {
    let relay = start();
    // Escaped NUL, an escaped surrogate pair, bidi overrides and a line
    // separator are valid JSON strings: they must round-trip through the
    // store without breaking its line format.
    let text = "nul:\u{0}; pair:\u{1F600}; bidi:\u{202E}abc; ls:\u{2028}; crlf:\r\n end";
    let body =
        serde_json::to_vec(&serde_json::json!({"text": text, "session": "hostile"})).expect("json");
    let outcome = exchange(&relay, &post(&relay, "/webchat/rpc", &body));
    let Outcome::Status(200, reply) = outcome else {
        panic!("a turn with unusual but valid text failed: {outcome:?}");
    };
    let reply: serde_json::Value = serde_json::from_str(reply.trim()).expect("json reply");
    assert_eq!(reply["ok"], true);
    let history = exchange(&relay, &get(&relay, "/webchat/history?session=hostile"));
    let Outcome::Status(200, history) = history else {
        panic!("history failed: {history:?}");
    };
    let history: serde_json::Value = serde_json::from_str(history.trim()).expect("json");
    let user = &history["messages"][0];
    let stored = user["content"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| user["content"][0]["text"].as_str().map(str::to_owned))
        .expect("user text");
    assert_eq!(stored, text, "the store changed the text");
    assert_still_serving(&relay);
}

#[test]
fn bad_session_keys_and_paging_values_are_refused() {
    let relay = start();
    for key in [
        "..%2F..%2Fetc%2Fpasswd",
        "../sessions",
        "a%00b",
        "%2Fetc%2Fpasswd",
        "a%20b",
        "%C0%AE%C0%AE",
        &"k".repeat(5000),
    ] {
        let outcome = exchange(
            &relay,
            &get(&relay, &format!("/webchat/info?session={key}")),
        );
        assert_api_error(
            &format!("info session={key}"),
            &outcome,
            400,
            "invalid_session_key",
        );
        let outcome = exchange(
            &relay,
            &get(&relay, &format!("/webchat/history?session={key}")),
        );
        assert_api_error(
            &format!("history session={key}"),
            &outcome,
            400,
            "invalid_session_key",
        );
    }
    // Paging is judged against a session that exists.
    let first = exchange(
        &relay,
        &post(&relay, "/webchat/rpc", br#"{"text":"page me"}"#),
    );
    assert!(matches!(first, Outcome::Status(200, _)), "{first:?}");
    let body = br#"{"text":"x","session":"../../etc/passwd"}"#;
    let outcome = exchange(&relay, &post(&relay, "/webchat/rpc", body));
    assert_api_error(
        "rpc session traversal",
        &outcome,
        400,
        "invalid_session_key",
    );

    for query in [
        "limit=-1",
        "limit=0",
        "limit=1001",
        "limit=99999999999999999999999",
        "limit=abc",
        "limit=1e3",
        "limit=",
        "limit=1&limit=2",
        "before=",
        "before=%00",
        "since=-5",
        "session=main&session=other",
    ] {
        for path in ["/webchat/info", "/webchat/history"] {
            let outcome = exchange(&relay, &get(&relay, &format!("{path}?{query}")));
            assert_refused(&format!("{path}?{query}"), &outcome);
        }
    }
    // A `before` that names no message is a 404, not an empty page.
    let outcome = exchange(
        &relay,
        &get(
            &relay,
            &format!("/webchat/history?before={}", "x".repeat(300)),
        ),
    );
    assert_refused("unknown before", &outcome);
    let outcome = exchange(
        &relay,
        &get(&relay, "/webchat/events?since=-1&session=..%2F"),
    );
    assert_refused("events with a bad key", &outcome);
    assert_still_serving(&relay);
}

#[test]
fn path_traversal_never_leaves_the_bundled_assets() {
    let relay = start();
    let secret = std::fs::read_to_string(relay.home.join("token")).expect("token file");
    for target in [
        "/webchat/../../../../etc/passwd",
        "/webchat/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/webchat/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/webchat/....//....//etc/passwd",
        "/webchat/..\\..\\..\\etc\\passwd",
        "/webchat/%252e%252e/%252e%252e/etc/passwd",
        "/webchat/../token",
        "/webchat/..%2ftoken",
        "/webchat/attachments/..%2f..%2ftoken",
        "/webchat/attachments/../../token",
        "/webchat/attachments/%2e%2e%2ftoken",
        "/webchat/index.html%00.png",
        "/webchat//etc/passwd",
        "//etc/passwd",
        "/webchat/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    ] {
        let outcome = exchange(&relay, &get(&relay, target));
        match &outcome {
            Outcome::Status(200, body) | Outcome::Status(304, body) => {
                // Only the UI's own index may come back (a SPA fallback);
                // never a file from outside the bundle.
                assert!(!body.contains("root:"), "{target} leaked /etc/passwd");
                assert!(!body.contains(secret.trim()), "{target} leaked the token");
                assert!(body.contains("<!doctype html") || body.contains("<!DOCTYPE html"));
            }
            Outcome::Status(301..=308, _) => {}
            other => assert_refused(target, other),
        }
    }
    assert_still_serving(&relay);
}

#[test]
fn broken_http_framing_gets_a_4xx_or_a_closed_connection() {
    let relay = start();
    let host = format!("127.0.0.1:{}", relay.port);
    let auth = format!("Authorization: Bearer {}", relay.token);
    // A TLS 1.3 ClientHello's first bytes, as a browser sends to https://.
    let tls_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xde, 0xad, 0xbe, 0xef,
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
    ];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("TLS ClientHello on the plain port", tls_hello.to_vec()),
        ("binary garbage", (0u8..=255).cycle().take(4096).collect()),
        ("NUL in the request line", b"GET /web\0chat/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "NUL in a header value",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n").into_bytes(),
        ),
        (
            "header without a colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nnonsense\r\n\r\n").into_bytes(),
        ),
        (
            "unknown HTTP version",
            format!("GET /healthz HTTP/9.9\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "oversized header",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200 * 1024)
            )
            .into_bytes(),
        ),
        (
            "ten thousand headers",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
                (0..10_000).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "oversized request target",
            format!("GET /webchat/info?{} HTTP/1.1\r\nHost: {host}\r\n\r\n", "a=b&".repeat(40_000))
                .into_bytes(),
        ),
        (
            "Content-Length and Transfer-Encoding together",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 4\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 4\r\n\
                 Content-Length: 9\r\n\r\n{{}}{{}}"
            )
            .into_bytes(),
        ),
        (
            "negative Content-Length",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: -5\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "Content-Length past u64",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\
                 Content-Length: 99999999999999999999999\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "bad chunk size",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\
                 Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "body shorter than its Content-Length, then EOF",
            format!(
                "POST /webchat/rpc HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: 100\r\n\r\n{{\"text\""
            )
            .into_bytes(),
        ),
    ];
    for (case, bytes) in &cases {
        let mut s = connect(&relay);
        let _ = s.write_all(bytes);
        if case.contains("then EOF") {
            let _ = s.shutdown(Shutdown::Write);
        }
        let outcome = read_outcome(&mut s);
        assert_refused(case, &outcome);
    }
    let outcome = exchange(
        &relay,
        format!(
            "GET /webchat/info?{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            "a".repeat(100_000)
        )
        .as_bytes(),
    );
    assert_refused("long query", &outcome);
    assert_still_serving(&relay);
}

#[test]
fn declared_oversized_body_is_refused_before_it_is_sent() {
    let relay = start();
    // Ten gigabytes declared, nothing sent: the relay must answer from the
    // header alone instead of waiting for (or buffering) the body.
    let head = format!(
        "POST /webchat/rpc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 10737418240\r\n\r\n",
        relay.port, relay.token
    );
    let outcome = exchange(&relay, head.as_bytes());
    assert_api_error("declared 10 GB", &outcome, 413, "payload_too_large");

    // Really sent, chunked so that no length warns the relay.
    let mut s = connect(&relay);
    let head = format!(
        "POST /webchat/rpc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        relay.port, relay.token
    );
    let _ = s.write_all(head.as_bytes());
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..40 {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if s.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    assert_api_error(
        "2.5 MB chunked",
        &read_outcome(&mut s),
        413,
        "payload_too_large",
    );
    assert_still_serving(&relay);
}

#[test]
fn unknown_methods_are_405_or_400() {
    let relay = start();
    for (method, path) in [
        ("DELETE", "/webchat/info"),
        ("PUT", "/webchat/rpc"),
        ("PATCH", "/webchat/notify"),
        ("GET", "/webchat/rpc"),
        ("BREW", "/webchat/rpc"),
        ("TRACE", "/webchat/info"),
        ("CONNECT", "/webchat/info"),
        ("PROPFIND", "/webchat/"),
    ] {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            relay.port, relay.token
        );
        let outcome = exchange(&relay, req.as_bytes());
        assert_refused(&format!("{method} {path}"), &outcome);
    }
    let req = format!(
        "DELETE /webchat/info HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        relay.port, relay.token
    );
    let outcome = exchange(&relay, req.as_bytes());
    assert_api_error("DELETE info", &outcome, 405, "method_not_allowed");
    assert_still_serving(&relay);
}

#[test]
fn a_stalled_body_gets_408_and_frees_the_connection() {
    let relay = start();
    let mut s = connect(&relay);
    let head = format!(
        "POST /webchat/rpc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100\r\n\r\n{{\"text\":",
        relay.port, relay.token
    );
    s.write_all(head.as_bytes()).expect("write");
    // The socket stays open and silent: only the relay's body timeout can
    // end this exchange.
    let outcome = read_outcome(&mut s);
    assert_api_error("stalled body", &outcome, 408, "request_timeout");
    assert_still_serving(&relay);
}

/// A body is read only after the token is checked, so a client without one
/// cannot hold a connection by trickling a body. The body timeout here is an
/// hour, far beyond PATIENCE: an answer can only come from not waiting for
/// the body at all.
#[test]
fn a_body_without_a_token_is_refused_before_it_is_read() {
    let relay =
        Relay::start_with(RelayOptions::default().config("body_read_timeout_secs = 3600\n"));
    for path in [
        "/webchat/rpc",
        "/webchat/abort",
        "/webchat/attachments",
        "/webchat/notify",
        "/webchat/presence",
    ] {
        let mut s = connect(&relay);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000\r\n\r\n{{\"text\":",
            relay.port
        );
        s.write_all(head.as_bytes()).expect("write");
        let outcome = read_outcome(&mut s);
        assert_api_error(path, &outcome, 401, "unauthorized");
    }
    assert_still_serving(&relay);
}

/// Slowloris: more slow clients than the relay has connection slots, each
/// dribbling a header byte now and then. Without a header timeout they
/// would hold every slot for ever and the honest request below would never
/// be served.
#[test]
fn slow_clients_cannot_hold_up_other_users() {
    let relay = start();
    let slots = 24;
    let mut slow: Vec<TcpStream> = (0..slots + 8).map(|_| connect(&relay)).collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
    }
    let dribbler = {
        let mut clones: Vec<TcpStream> =
            slow.iter().map(|s| s.try_clone().expect("clone")).collect();
        std::thread::spawn(move || {
            // Keeps the slow clients "active" well past the header timeout;
            // stops once the relay has closed all of them.
            for _ in 0..40 {
                let mut open = 0;
                for s in &mut clones {
                    if s.write_all(b"a").is_ok() {
                        open += 1;
                    }
                }
                if open == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let outcome = exchange(
        &relay,
        &post(&relay, "/webchat/rpc", br#"{"text":"an honest turn"}"#),
    );
    let Outcome::Status(200, body) = &outcome else {
        panic!("the honest request was not served while slow clients were connected: {outcome:?}");
    };
    assert!(body.contains("an honest turn"));
    // Every slow client was cut off by the relay (EOF or reset), not left
    // hanging: the header timeout, or giving way to a newer connection when
    // the slots ran out, is what freed the slots.
    for (i, s) in slow.iter_mut().enumerate() {
        let outcome = read_outcome(s);
        match outcome {
            Outcome::Closed => {}
            Outcome::Status(code, _) => {
                assert!((400..500).contains(&code), "slow client {i} got {code}")
            }
        }
    }
    dribbler.join().expect("dribbler");
    assert_still_serving(&relay);
}

#[test]
fn the_relay_survives_a_flood_of_connections() {
    let relay = start();
    // Far more connections than slots, opened and abandoned at once: the
    // extra ones wait in the backlog, and the relay recovers afterwards.
    let mut flood = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(("127.0.0.1", relay.port)) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    assert!(flood.len() > 24, "could not open a flood of connections");
    drop(flood);
    assert_still_serving(&relay);
}

/// The header timeout bounds slow requests and idle connections, never a
/// response in progress: a live event stream outlasts it.
#[tokio::test]
async fn a_live_stream_outlasts_the_header_timeout() {
    let relay = start();
    let api = relay.client();
    let response = api
        .get("/webchat/events?session=main")
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let mut events = loopchat_tests::SseReader::new(response);
    // Longer than header_read_timeout_secs (2 s in CONFIG): a timer that
    // wrongly covered streaming responses would have cut the stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, _) = api.rpc(serde_json::json!({"text": "after the wait"})).await;
    assert_eq!(s, 200);
    let got = events.until("run.end").await;
    assert!(
        got.iter()
            .any(|e| e["type"] == "message" && e["message"]["role"] == "user"),
        "the stream missed the turn: {got:?}"
    );
}

/// Raises this process's open-file limit towards `wanted` (never lowers
/// it): the flood below needs more sockets than the common soft limit.
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
}

/// Open descriptors of process `pid` (its sockets among them).
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A connection that has sent part of a request head and trickles more of
/// it; `None` if the relay's backlog did not take it within a second.
fn half_open(port: u16) -> Option<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Whether the relay has closed `s` (EOF or reset); never blocks.
fn closed_by_relay(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Issue 12, item 6: more half-open connections than there are slots
/// (1,100 for 1,024), each trickling a header byte and reconnecting at once
/// when cut, with no token. The header timeout is 60 s here, so a relay that
/// only waits for it to free a slot leaves the owner waiting about a minute;
/// the owner must instead be answered well within `BOUND` (a failure
/// detector, not a performance target: the figure is in benchmarks.md). The
/// owner's event stream, opened before the flood, is serving a request and
/// must survive it and carry the turn.
#[test]
fn half_open_connections_cannot_starve_the_owner() {
    const HOSTILE: usize = 1_100;
    const BOUND: Duration = Duration::from_secs(10);
    raise_fd_limit(8_192);
    let relay =
        Relay::start_with(RelayOptions::default().config("header_read_timeout_secs = 60\n"));

    let mut events = connect(&relay);
    events
        .write_all(&get(&relay, "/webchat/events?session=flood"))
        .expect("events request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while find(&seen, b"\r\n\r\n").is_none() {
        let n = events.read(&mut buf).expect("events head");
        assert!(n > 0, "the event stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );

    let baseline = open_fds(relay.pid());
    let mut flood: Vec<TcpStream> = (0..HOSTILE).filter_map(|_| half_open(relay.port)).collect();
    assert!(
        flood.len() > 1_024,
        "opened only {} connections",
        flood.len()
    );
    // The relay holds every slot it has (the stream has one) before the
    // owner asks; polled, as nothing announces it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds(relay.pid()) < baseline + 1_023 {
        assert!(
            Instant::now() < deadline,
            "the relay took only {} of the half-open connections",
            open_fds(relay.pid()).saturating_sub(baseline)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        let port = relay.port;
        std::thread::spawn(move || {
            let mut reconnects = 0usize;
            // Bounded: ends by itself even if the test fails.
            for _ in 0..120 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                for s in &mut flood {
                    if closed_by_relay(s) {
                        if let Some(fresh) = half_open(port) {
                            *s = fresh;
                            reconnects += 1;
                        }
                    } else {
                        let _ = s.write_all(b"a");
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            reconnects
        })
    };

    let started = Instant::now();
    let mut owner = TcpStream::connect(("127.0.0.1", relay.port)).expect("owner connects");
    owner.set_read_timeout(Some(BOUND)).expect("timeout");
    owner
        .write_all(&post(
            &relay,
            "/webchat/rpc",
            br#"{"text":"owner under siege","session":"flood"}"#,
        ))
        .expect("owner's request");
    let mut got = Vec::new();
    while !response_complete(&got) {
        match owner.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "the owner had no answer after {:?} ({e}) while {HOSTILE} half-open \
                 connections held the slots",
                started.elapsed()
            ),
        }
    }
    let waited = started.elapsed();
    let outcome = parse_outcome(&got);
    let Outcome::Status(200, body) = &outcome else {
        panic!("the owner's request failed during the flood: {outcome:?}");
    };
    assert!(body.contains("owner under siege"), "{body}");
    assert!(waited < BOUND, "the owner waited {waited:?}");

    // The stream was serving, so it was never closed to make room.
    events.set_read_timeout(Some(PATIENCE)).expect("timeout");
    while find(&seen, b"run.end").is_none() {
        let n = events
            .read(&mut buf)
            .expect("the owner's event stream broke during the flood");
        assert!(
            n > 0,
            "the owner's event stream was closed during the flood"
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(find(&seen, b"owner under siege").is_some());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reconnects = trickler.join().expect("trickler");
    eprintln!("owner answered after {waited:?}; {reconnects} hostile reconnects");
    assert_still_serving(&relay);
}
