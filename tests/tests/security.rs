//! Secrets at rest and in logs: what `docs/security.md` promises about the
//! home's file modes and about tokens never being written to a log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use loopchat_tests::{Relay, RelayOptions, loopchat_bin};
use serde_json::json;

/// The most verbose logging there is. A bare `trace` reaches loopchat's own
/// crates only (see `relay/src/logging.rs`), so the dependencies on the
/// paths a token takes are named.
const EVERYTHING_AT_TRACE: &str = "trace,tower_http=trace,tower=trace,axum=trace,hyper=trace,\
     hyper_util=trace,reqwest=trace,h2=trace,rustls=trace,tungstenite=trace,\
     tokio_tungstenite=trace,html5ever=trace,ammonia=trace";

/// The CLI with the most verbose logging there is, so that a token that
/// reaches any log line at all shows up.
fn cli(home: &Path, args: &[&str]) -> Output {
    Command::new(loopchat_bin())
        .args(args)
        .env("LOOPCHAT_HOME", home)
        .env("RUST_LOG", EVERYTHING_AT_TRACE)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .output()
        .expect("run loopchat")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path that handles a token, with trace logging on in the relay and
/// the CLI, dependencies included; afterwards no log holds any token, old or new, main or scoped.
#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let mut relay = Relay::start_with(RelayOptions::default().env("RUST_LOG", EVERYTHING_AT_TRACE));
    let main_token = relay.token.clone();
    let api = relay.client();
    let port = relay.port;
    let mut cli_logs = String::new();

    // Bearer header, a wrong token, the ?token= link, the WebSocket
    // subprotocol, and the cookie of earlier versions.
    assert_eq!(api.get_json("/webchat/info").await.0, 200);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let r = plain
        .get(url(&format!("/webchat/?token={main_token}")))
        .send()
        .await
        .expect("token link");
    assert_eq!(r.status(), 302);
    assert!(r.headers().get("set-cookie").is_none());
    let r = plain
        .get(url("/webchat/info"))
        .header("cookie", format!("loopchat_token={main_token}"))
        .send()
        .await
        .expect("cookie request");
    assert_eq!(r.status(), 401, "the cookie is no credential");
    {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{port}/webchat/socket?session=main")
            .into_client_request()
            .expect("ws request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            format!("loopchat, bearer.{main_token}")
                .parse()
                .expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("socket by subprotocol");
        let (s, _) = api.rpc(json!({"text": "a turn the socket sees"})).await;
        assert_eq!(s, 200);
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().is_ok_and(|t| t.contains("run.end")) {
                break;
            }
        }
    }
    let r = plain
        .get(url("/webchat/info"))
        .bearer_auth(format!("{main_token}x"))
        .send()
        .await
        .expect("wrong token");
    assert_eq!(r.status(), 401);
    let r = plain
        .get(url(&format!("/webchat/events?token={main_token}")))
        .send()
        .await
        .expect("token in an API query");
    assert_eq!(r.status(), 401, "the API takes no token from the query");

    // A turn, an SSE stream, and the CLI (which reads the discovery file).
    let (s, _) = api.rpc(json!({"text": "secret-free turn"})).await;
    assert_eq!(s, 200);
    let out = cli(&relay.home, &["send", "hello from the cli"]);
    ok(&out);
    cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
    let out = cli(&relay.home, &["info"]);
    let info = ok(&out);
    cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(
        !info.contains(&main_token),
        "`loopchat info` prints the token only when asked: {info}"
    );

    // A scoped token: created, used, revoked.
    let out = cli(
        &relay.home,
        &["token", "create", "--scope", "notify", "--name", "cron"],
    );
    let notify_token = ok(&out).trim().to_owned();
    cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
    let r = plain
        .post(url("/webchat/notify"))
        .bearer_auth(&notify_token)
        .json(&json!({"title": "backup done", "body": "ok"}))
        .send()
        .await
        .expect("notify");
    assert_eq!(r.status(), 200);
    let r = plain
        .get(url("/webchat/info"))
        .bearer_auth(&notify_token)
        .send()
        .await
        .expect("scoped token on info");
    assert_eq!(r.status(), 403);
    let out = cli(
        &relay.home,
        &["notify", "--title", "from the cli", "--body", "b"],
    );
    ok(&out);
    cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));

    // Rotation: the new main token must stay out of the logs too.
    let out = cli(&relay.home, &["token", "rotate"]);
    ok(&out);
    cli_logs.push_str(&String::from_utf8_lossy(&out.stderr));
    let rotated = std::fs::read_to_string(relay.home.join("token"))
        .expect("token file")
        .trim()
        .to_owned();
    assert_ne!(rotated, main_token);
    let r = plain
        .get(url("/webchat/info"))
        .bearer_auth(&rotated)
        .send()
        .await
        .expect("rotated token");
    assert_eq!(r.status(), 200);

    assert_eq!(relay.stop(), Some(0));
    let relay_logs = relay.logs();
    assert!(
        relay_logs.contains("TRACE") || relay_logs.contains("DEBUG"),
        "the relay did not log verbosely, so this test would prove nothing"
    );
    for (name, secret) in [
        ("main token", &main_token),
        ("rotated main token", &rotated),
        ("notify token", &notify_token),
    ] {
        assert!(
            !relay_logs.contains(secret.as_str()),
            "the {name} is in the relay's log"
        );
        assert!(
            !cli_logs.contains(secret.as_str()),
            "the {name} is in the CLI's log"
        );
    }
}

/// Under a permissive umask, every directory the relay makes in its home is
/// 0700 and every file 0600: transcripts, tokens, the discovery file,
/// attachments and the notification journal are the user's alone.
#[tokio::test]
async fn the_home_is_private_whatever_the_umask() {
    // SAFETY: umask only changes this process's file-creation mask; the
    // relay inherits it, which is the point.
    unsafe { libc::umask(0o022) };
    let relay = Relay::start();
    let api = relay.client();
    // Create one of everything the relay writes.
    let png = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    ];
    let r = api
        .post("/webchat/attachments")
        .header("content-type", "image/png")
        .body(png.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (s, v) = api
        .rpc(json!({"text": "with a picture", "session": "private", "attachments": [{"id": id}]}))
        .await;
    assert_eq!(s, 200, "{v}");
    let r = api
        .post("/webchat/notify")
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .expect("notify");
    assert_eq!(r.status(), 200);
    ok(&cli(
        &relay.home,
        &["token", "create", "--scope", "notify", "--name", "n"],
    ));

    let mut seen = 0;
    let mut stack = vec![relay.home.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 6,
        "expected the relay to have written files, saw {seen}"
    );
}

/// A turn whose text is `secret` in markdown with inline HTML (so that the
/// reply goes through ammonia and html5ever), watched over a WebSocket (so
/// that its frames go through tungstenite) and over SSE. Returns once the
/// WebSocket has carried the reply, which proves the text passed through
/// every layer a log line could copy it from.
async fn chat_about(relay: &Relay, secret: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

    let mut req = format!("ws://127.0.0.1:{}/webchat/socket?session=logs", relay.port)
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", relay.token).parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let text = format!(
        "# {secret}\n\n**{secret}** <b title=\"{secret}\">{secret}</b> \
         <script>alert('{secret}')</script> [{secret}](https://example.com/{secret})\n\n\
         | a |\n|---|\n| {secret} |"
    );
    let (s, v) = relay
        .client()
        .rpc(json!({"text": text, "session": "logs"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut carried = false;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .expect("no WebSocket frame within 30 s")
            .expect("socket closed")
            .expect("socket error");
        let tungstenite::Message::Text(t) = frame else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).expect("json frame");
        if v["type"] == "ping" {
            ws.send(tungstenite::Message::Text(r#"{"type":"pong"}"#.into()))
                .await
                .expect("pong");
            continue;
        }
        carried |= t.contains(secret);
        if v["type"] == "run.end" {
            break;
        }
    }
    assert!(carried, "the WebSocket never carried the text");
    let (s, history) = relay
        .client()
        .get_json("/webchat/history?session=logs&limit=10")
        .await;
    assert_eq!(s, 200);
    assert!(
        history.to_string().contains("<strong>"),
        "the reply was not rendered as markdown, so html5ever did not run: {history}"
    );
    let _ = ws.close(None).await;
}

/// `secret` as the log could hold it: as text, or as the hex dump of a frame.
fn traces_of(secret: &str) -> [String; 2] {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    [secret.to_owned(), hex]
}

/// At the levels people turn on to look at a problem, the log holds no chat
/// text: dependencies' debug and trace output (html5ever's tree builder,
/// tungstenite's frames) stays out unless a directive names them.
#[tokio::test]
async fn chat_text_never_reaches_the_logs_at_debug_or_trace() {
    for level in ["debug", "trace"] {
        let secret = format!("Zebra{level}Quokka7Mist");
        let mut relay = Relay::start_with(RelayOptions::default().env("RUST_LOG", level));
        chat_about(&relay, &secret).await;
        assert_eq!(relay.stop(), Some(0));
        let logs = relay.logs();
        assert!(
            logs.contains(&level.to_uppercase()),
            "the relay did not log at {level}, so this test would prove nothing"
        );
        for trace in traces_of(&secret) {
            let line = logs.lines().find(|l| l.contains(&trace));
            assert!(
                line.is_none(),
                "RUST_LOG={level}: chat text is in the relay's log: {}",
                line.unwrap_or_default()
            );
        }
    }
}

/// The rule above is a default, not a wall: naming a dependency's target
/// turns its output on, text and all.
#[tokio::test]
async fn naming_a_dependency_in_rust_log_enables_its_output() {
    let secret = "Walrus3NamedTargetFig";
    let mut relay = Relay::start_with(
        RelayOptions::default().env("RUST_LOG", "debug,html5ever=trace,tungstenite=trace"),
    );
    chat_about(&relay, secret).await;
    assert_eq!(relay.stop(), Some(0));
    let logs = relay.logs();
    let [text, hex] = traces_of(secret);
    assert!(
        logs.lines()
            .any(|l| l.contains("html5ever") && l.contains(&text)),
        "html5ever=trace did not enable html5ever's log"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("tungstenite") && (l.contains(&text) || l.contains(&hex))),
        "tungstenite=trace did not enable tungstenite's log"
    );
}
