//! `GET /webchat/status` and `loopchat status` against the real relay:
//! live counts follow streams opening and closing, a WebSocket client that
//! stops answering pings is dropped and counted out, and only the main
//! token may read it.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use loopchat_tests::{Api, Relay, RelayOptions, loopchat_bin};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

async fn cli(home: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(loopchat_bin())
        .args(args)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run loopchat")
}

async fn status(api: &Api) -> Value {
    let (code, body) = api.get_json("/webchat/status").await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls the status until `pred` holds: a stream is counted out when the
/// relay notices the close, which no client-side event announces.
async fn status_until(api: &Api, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(api).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: last status {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kind(s: &Value, k: &str) -> u64 {
    s["connections"]["byKind"][k].as_u64().unwrap()
}

fn total(s: &Value) -> u64 {
    s["connections"]["total"].as_u64().unwrap()
}

async fn ws(
    relay: &Relay,
    user_agent: Option<&str>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://127.0.0.1:{}/webchat/socket", relay.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", relay.token).parse().unwrap(),
    );
    if let Some(ua) = user_agent {
        req.headers_mut().insert("user-agent", ua.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test]
async fn counts_go_up_and_down_as_streams_open_and_close() {
    let relay = Relay::start();
    let api = relay.client();
    let s = status(&api).await;
    assert_eq!(s["ok"], true);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["agent"]["backend"], "echo");
    assert_eq!(total(&s), 0, "{s}");
    assert_eq!(
        s["checks"],
        serde_json::json!({"ok": 0, "failing": 0, "running": 0})
    );
    assert_eq!(s["runsInFlight"], 0);

    // Counted once the answer (SSE) or the upgrade (WebSocket) is back.
    let sse1 = api
        .get("/webchat/events?session=main")
        .send()
        .await
        .unwrap();
    assert_eq!(sse1.status(), 200);
    let sse2 = api.get("/webchat/events").send().await.unwrap();
    let sock = ws(&relay, None).await;
    let shell = ws(&relay, Some("loopchat-shell/0.1.0")).await;
    let s = status(&api).await;
    assert_eq!(
        (
            kind(&s, "sse"),
            kind(&s, "websocket"),
            kind(&s, "shell"),
            kind(&s, "cli")
        ),
        (2, 1, 1, 0),
        "{s}"
    );
    assert_eq!(total(&s), 4);
    assert_eq!(s["connections"]["byToken"], serde_json::json!({"main": 4}));

    drop(sse1);
    status_until(&api, "a closed SSE stream is counted out", |s| {
        kind(s, "sse") == 1
    })
    .await;
    drop(sock);
    status_until(&api, "a closed WebSocket is counted out", |s| {
        kind(s, "websocket") == 0
    })
    .await;
    drop(sse2);
    drop(shell);
    let s = status_until(&api, "every stream counted out", |s| total(s) == 0).await;
    assert_eq!(s["connections"]["byToken"], serde_json::json!({}), "{s}");

    // Sessions and the journal grow with use.
    api.rpc(serde_json::json!({"text": "hi", "session": "a"}))
        .await;
    let n = api
        .post("/webchat/notify")
        .json(&serde_json::json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(n.status(), 200);
    let s = status(&api).await;
    assert_eq!(s["sessions"], 1, "{s}");
    // The notification, and whatever the turn itself raised.
    assert!(s["journal"]["entries"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["journal"]["bytes"].as_u64().unwrap() > 0, "{s}");
}

#[tokio::test]
async fn a_websocket_that_stops_answering_pings_is_dropped_and_counted_out() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_WS_PING_SECS", "1"));
    let api = relay.client();
    let mut live = ws(&relay, None).await;
    // Half-dead: the TCP connection stays open, nothing is read or answered.
    let silent = ws(&relay, None).await;
    let s = status(&api).await;
    assert_eq!(kind(&s, "websocket"), 2, "{s}");
    // The answering client keeps its place meanwhile.
    let answering = async {
        while let Some(Ok(m)) = live.next().await {
            if let tungstenite::Message::Text(t) = &m
                && t.contains("\"ping\"")
            {
                live.send(tungstenite::Message::Text(r#"{"type":"pong"}"#.into()))
                    .await
                    .unwrap();
            }
        }
    };
    let watch = status_until(&api, "the silent socket is counted out", |s| {
        kind(s, "websocket") == 1
    });
    tokio::select! {
        s = watch => assert_eq!(total(&s), 1, "{s}"),
        () = answering => panic!("the answering socket was closed"),
    }
    drop(silent);
}

#[tokio::test]
async fn only_the_main_token_reads_the_status_and_the_cli_shows_the_same() {
    let relay = Relay::start();
    let anonymous = Api {
        token: None,
        ..relay.client()
    };
    let r = anonymous.get("/webchat/status").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let out = cli(
        &relay.home,
        &["token", "create", "--scope", "notify", "--name", "ci"],
    )
    .await;
    assert!(out.status.success());
    let scoped = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let notify_only = Api {
        token: Some(scoped),
        ..relay.client()
    };
    let (code, body) = notify_only.get_json("/webchat/status").await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["code"], "forbidden");

    let api = relay.client();
    let _sse = api.get("/webchat/events").send().await.unwrap();
    let out = cli(&relay.home, &["status", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut from_cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut from_http = status(&api).await;
    // The only field that moves between the two reads.
    from_cli["uptimeSecs"] = 0.into();
    from_http["uptimeSecs"] = 0.into();
    assert_eq!(from_cli, from_http);
    assert_eq!(kind(&from_cli, "sse"), 1);

    let human = cli(&relay.home, &["status"]).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("connections  1 (sse 1, websocket 0, shell 0, cli 0)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cli_stream_counts_as_cli() {
    let relay = Relay::start();
    let api = relay.client();
    // A CLI-made streaming rpc: its User-Agent says what it is.
    let r = api
        .post("/webchat/rpc")
        .header("user-agent", "loopchat/0.1.0")
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = status(&api).await;
    // The run may already be over; the stream is counted until it is read.
    assert_eq!(kind(&s, "cli"), 1, "{s}");
    drop(r);
    status_until(&api, "the CLI stream is counted out", |s| total(s) == 0).await;
}
