//! Issue 6: notifications — `loopchat notify` → relay → every SSE and
//! WebSocket stream; replay by seq; persistence across restarts and crashes;
//! update by id; validation; notify-only tokens; rate limits; agent hooks
//! (`deliver`, reply-ready with presence); CLI exit codes. Real binary, real
//! sockets. Ordering is observed, never waited for: a "nothing arrived"
//! claim is checked by posting a marker afterwards and reading up to it.

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use loopchat_tests::{Api, Relay, RelayOptions, SseReader, loopchat_bin};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ---------------------------------------------------------------- helpers

/// Runs the `loopchat` CLI against `home` (no URL/token from the caller's
/// environment), with extra environment `env`.
async fn cli(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(loopchat_bin());
    cmd.args(args)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run loopchat")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn with_token(relay: &Relay, token: &str) -> Api {
    Api {
        token: Some(token.to_owned()),
        ..relay.client()
    }
}

async fn post_notify(api: &Api, body: Value) -> (u16, Value) {
    let r = api
        .post("/webchat/notify")
        .json(&body)
        .send()
        .await
        .expect("notify");
    let status = r.status().as_u16();
    (status, r.json().await.expect("notify json"))
}

/// Posts and insists on success; returns (id, seq).
async fn notify_ok(api: &Api, body: Value) -> (String, u64) {
    let (s, v) = post_notify(api, body).await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["seq"].as_u64().unwrap(),
    )
}

async fn list(api: &Api, query: &str) -> Vec<Value> {
    let (s, v) = api
        .get_json(&format!("/webchat/notifications{query}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v["notifications"].as_array().unwrap().clone()
}

fn seqs(ns: &[Value]) -> Vec<u64> {
    ns.iter().map(|n| n["seq"].as_u64().unwrap()).collect()
}

async fn sse(api: &Api, query: &str) -> SseReader {
    let r = api
        .get(&format!("/webchat/events?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

async fn ws_connect(relay: &Relay, query: &str, token: &str) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://127.0.0.1:{}/webchat/socket?{query}", relay.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// Either kind of event stream, read as JSON events (pings answered).
enum Sub {
    Sse(SseReader),
    Ws(Box<Ws>),
}

impl Sub {
    async fn next(&mut self) -> Option<Value> {
        match self {
            Sub::Sse(s) => s.next().await.map(|(_, v)| v),
            Sub::Ws(ws) => loop {
                let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .expect("no WebSocket message within 30 s");
                match frame {
                    Some(Ok(tungstenite::Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == "ping" {
                            ws.send(tungstenite::Message::Text(r#"{"type":"pong"}"#.into()))
                                .await
                                .unwrap();
                            continue;
                        }
                        return Some(v);
                    }
                    Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// The next `notification` event (session events are skipped).
    async fn notification(&mut self) -> Value {
        loop {
            let v = self.next().await.expect("stream ended");
            if v["type"] == "notification" {
                assert_eq!(v["seq"], v["notification"]["seq"], "{v}");
                return v["notification"].clone();
            }
        }
    }

    /// Notifications up to and including the one titled `marker`.
    async fn notifications_until(&mut self, marker: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let n = self.notification().await;
            let done = n["title"] == marker;
            out.push(n);
            if done {
                return out;
            }
        }
    }
}

fn tagged<'a>(ns: &'a [Value], tag: &str) -> Vec<&'a Value> {
    ns.iter()
        .filter(|n| n["tags"].as_array().unwrap().iter().any(|t| t == tag))
        .collect()
}

async fn create_notify_token(home: &Path, name: &str) -> String {
    let out = cli(
        home,
        &["token", "create", "--scope", "notify", "--name", name],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on stdout: {text:?}");
    lines[0].to_owned()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn cli_notify_reaches_every_sse_and_websocket_stream() {
    let relay = Relay::start();
    let api = relay.client();
    // Subscribed once the answer (SSE) or the upgrade (WebSocket) is back.
    let mut sse_session = sse(&api, "session=main").await;
    let mut sse_plain = sse(&api, "").await;
    let ws_session = ws_connect(&relay, "session=main", &relay.token)
        .await
        .unwrap();
    let ws_plain = ws_connect(&relay, "", &relay.token).await.unwrap();

    let out = cli(
        &relay.home,
        &[
            "notify",
            "--title",
            "Backup done",
            "--body",
            "42 GB in 3 min",
            "--priority",
            "4",
            "--tag",
            "backup",
            "--tag",
            "nightly",
            "--click",
            "/webchat/?session=backups",
            "--session",
            "main",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id.len(), 36, "prints the new id: {id:?}");

    // SSE: the notification carries no `id:` line (that is the session's seq).
    let (sse_id, v) = sse_session.next().await.unwrap();
    assert_eq!(sse_id, "", "no SSE id for a notification");
    assert_eq!(v["type"], "notification");
    let received_session_sse = v["notification"].clone();
    let (sse_id, v) = sse_plain.next().await.unwrap();
    assert_eq!(sse_id, "");
    let received_plain_sse = v["notification"].clone();
    let received_session_ws = Sub::Ws(Box::new(ws_session)).notification().await;
    let received_plain_ws = Sub::Ws(Box::new(ws_plain)).notification().await;

    let n = &received_session_sse;
    assert_eq!(n["id"], id.as_str());
    assert_eq!(n["seq"], 1);
    assert_eq!(n["title"], "Backup done");
    assert_eq!(n["body"], "42 GB in 3 min");
    assert_eq!(n["priority"], 4);
    assert_eq!(n["tags"], json!(["backup", "nightly"]));
    assert_eq!(n["click"], "/webchat/?session=backups");
    assert_eq!(n["session"], "main");
    assert!(n["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(&received_plain_sse, n);
    assert_eq!(&received_session_ws, n);
    assert_eq!(&received_plain_ws, n);

    // --json prints the relay's answer; defaults apply.
    let out = cli(
        &relay.home,
        &["notify", "--title", "t", "--body", "b", "--json"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["seq"], 2);
    let (_, v) = sse_plain.next().await.unwrap();
    assert_eq!(v["notification"]["id"], answer["id"]);
    assert_eq!(v["notification"]["priority"], 3, "default priority");
    assert_eq!(v["notification"]["tags"], json!([]));

    // The body can come from stdin (cron: `cmd | loopchat notify --body -`).
    let mut child = tokio::process::Command::new(loopchat_bin())
        .args(["notify", "--title", "piped", "--body", "-"])
        .env("LOOPCHAT_HOME", &relay.home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\nline two\n").await.unwrap();
    }
    assert!(child.wait_with_output().await.unwrap().status.success());
    let (_, v) = sse_plain.next().await.unwrap();
    assert_eq!(v["notification"]["body"], "line one\nline two");
}

#[tokio::test]
async fn replay_after_a_disconnect_gives_exactly_the_missed_ones() {
    let relay = Relay::start();
    let api = relay.client();
    let mut watcher = Sub::Sse(sse(&api, "").await);
    for i in 1..=2 {
        notify_ok(&api, json!({"title": format!("n{i}"), "body": "x"})).await;
    }
    let seen = [watcher.notification().await, watcher.notification().await];
    let last_seen = seen[1]["seq"].as_u64().unwrap();
    drop(watcher);
    let mut missed = Vec::new();
    for i in 3..=5 {
        missed.push(notify_ok(&api, json!({"title": format!("n{i}"), "body": "x"})).await);
    }
    let missed_seqs: Vec<u64> = missed.iter().map(|(_, s)| *s).collect();

    // The list, paged forward from the last seen seq.
    let got = list(&api, &format!("?since={last_seen}")).await;
    assert_eq!(seqs(&got), missed_seqs);
    assert_eq!(
        got.iter().map(|n| n["title"].clone()).collect::<Vec<_>>(),
        [json!("n3"), json!("n4"), json!("n5")]
    );
    assert_eq!(
        seqs(&list(&api, &format!("?since={last_seen}&limit=2")).await),
        missed_seqs[..2]
    );
    assert_eq!(
        seqs(&list(&api, "?limit=2").await),
        missed_seqs[1..],
        "newest 2"
    );
    assert_eq!(seqs(&list(&api, "").await).len(), 5);
    assert_eq!(api.get_json("/webchat/notifications?limit=0").await.0, 400);

    // notifySince on both stream kinds: the missed ones, then live, once each.
    let mut resumed = vec![
        Sub::Sse(sse(&api, &format!("notifySince={last_seen}")).await),
        Sub::Sse(sse(&api, &format!("session=main&notifySince={last_seen}")).await),
        Sub::Ws(Box::new(
            ws_connect(&relay, &format!("notifySince={last_seen}"), &relay.token)
                .await
                .unwrap(),
        )),
    ];
    let (_, live_seq) = notify_ok(&api, json!({"title": "live", "body": "x"})).await;
    for sub in &mut resumed {
        let got = sub.notifications_until("live").await;
        let mut expected = missed_seqs.clone();
        expected.push(live_seq);
        assert_eq!(seqs(&got), expected, "no gap, no duplicate");
    }
    // Caught up: nothing replayed, the next live one only.
    let mut current = Sub::Sse(sse(&api, &format!("notifySince={live_seq}")).await);
    let (_, next) = notify_ok(&api, json!({"title": "next", "body": "x"})).await;
    assert_eq!(current.notification().await["seq"], next);
}

#[tokio::test]
async fn kept_notifications_survive_sigterm_and_kill_9() {
    let mut relay = Relay::start();
    let api = relay.client();
    for i in 0..3 {
        notify_ok(
            &api,
            json!({"title": format!("before-term-{i}"), "body": "b"}),
        )
        .await;
    }
    let before = list(&api, "").await;
    assert_eq!(relay.stop(), Some(0));
    relay.restart();
    let api = relay.client();
    assert_eq!(list(&api, "").await, before, "identical after SIGTERM");

    // Acknowledged, then killed at once: still there after the crash.
    let (id, seq) = notify_ok(&api, json!({"title": "acked", "body": "b"})).await;
    relay.kill9();
    relay.restart();
    let api = relay.client();
    let after = list(&api, "").await;
    assert_eq!(after.len(), 4);
    assert_eq!(after[3]["id"], id.as_str());
    assert_eq!(after[3]["seq"], seq);

    // Seqs keep growing across restarts, so a client's notifySince from
    // before the restart means the same thing after it.
    let (_, next) = notify_ok(&api, json!({"title": "after", "body": "b"})).await;
    assert_eq!(next, seq + 1);
    let replay = list(&api, &format!("?since={seq}")).await;
    assert_eq!(seqs(&replay), [next]);

    // Posts in flight when the relay is killed: every acknowledged one is
    // kept, the journal still reads, seqs stay unique.
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<String>();
    let posters: Vec<_> = (0..6)
        .map(|p| {
            let (api, acks_tx) = (api.clone(), acks_tx.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let body = json!({"title": format!("burst-{p}-{i}"), "body": "b"});
                    let Ok(r) = api.post("/webchat/notify").json(&body).send().await else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>().await else {
                        return;
                    };
                    let Some(id) = v["id"].as_str() else { return };
                    let _ = acks_tx.send(id.to_owned());
                }
            })
        })
        .collect();
    drop(acks_tx);
    let mut acked = Vec::new();
    while acked.len() < 30 {
        acked.push(acks.recv().await.expect("posters running"));
    }
    relay.kill9();
    for p in posters {
        p.await.unwrap();
    }
    while let Some(id) = acks.recv().await {
        acked.push(id);
    }
    relay.restart();
    let kept = list(&relay.client(), "?limit=500").await;
    let kept_ids: HashSet<&str> = kept.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert!(acked.len() >= 30);
    for id in &acked {
        assert!(
            kept_ids.contains(id.as_str()),
            "acknowledged but lost: {id}"
        );
    }
    let all = seqs(&kept);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
}

#[tokio::test]
async fn the_same_id_updates_in_place() {
    let mut relay = Relay::start();
    let api = relay.client();
    let mut watcher = Sub::Sse(sse(&api, "").await);
    notify_ok(&api, json!({"title": "other", "body": "x"})).await;
    let (id, first) = notify_ok(
        &api,
        json!({"title": "Deploy 10%", "body": "rolling", "id": "deploy:42"}),
    )
    .await;
    assert_eq!(id, "deploy:42");
    let (id2, second) = notify_ok(
        &api,
        json!({"title": "Deploy 100%", "body": "done", "id": "deploy:42", "priority": 4}),
    )
    .await;
    assert_eq!(id2, "deploy:42");
    assert!(second > first, "an update gets a new seq");
    let got = watcher.notifications_until("Deploy 100%").await;
    assert_eq!(
        got.iter().map(|n| n["id"].clone()).collect::<Vec<_>>(),
        [json!(got[0]["id"]), json!("deploy:42"), json!("deploy:42")]
    );
    let check = |kept: Vec<Value>| {
        let same: Vec<_> = kept.iter().filter(|n| n["id"] == "deploy:42").collect();
        assert_eq!(same.len(), 1, "replaced, not added: {kept:?}");
        assert_eq!(same[0]["title"], "Deploy 100%");
        assert_eq!(same[0]["seq"], second);
        assert_eq!(same[0]["priority"], 4);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.last().unwrap()["id"], "deploy:42", "moved to the end");
    };
    check(list(&api, "").await);
    // A replay from before the first version shows only the latest.
    let mut replay = Sub::Sse(sse(&api, "notifySince=0").await);
    let replayed = [replay.notification().await, replay.notification().await];
    assert_eq!(replayed[1]["title"], "Deploy 100%");
    relay.kill9();
    relay.restart();
    check(list(&relay.client(), "").await);
}

#[tokio::test]
async fn invalid_notifications_get_clear_400s() {
    let relay = Relay::start();
    let api = relay.client();
    let cases = [
        (
            json!({"title": "", "body": ""}),
            "bad_request",
            "both empty",
        ),
        (
            json!({"title": "  ", "body": " "}),
            "bad_request",
            "both empty",
        ),
        (json!({}), "bad_request", "both empty"),
        (
            json!({"title": "t", "priority": 0}),
            "bad_request",
            "priority must be",
        ),
        (
            json!({"title": "t", "priority": 6}),
            "bad_request",
            "priority must be",
        ),
        (
            json!({"title": "t", "priority": 300}),
            "bad_request",
            "priority must be",
        ),
        (
            json!({"title": "t", "priority": -1}),
            "bad_request",
            "priority must be",
        ),
        (
            json!({"title": "t", "priority": "high"}),
            "bad_request",
            "priority must be",
        ),
        (
            json!({"title": "x".repeat(257)}),
            "bad_request",
            "title is 257 characters",
        ),
        (json!({"body": "x".repeat(4097)}), "bad_request", "4 KiB"),
        (
            json!({"title": "t", "tags": vec!["a"; 11]}),
            "bad_request",
            "11 tags",
        ),
        (
            json!({"title": "t", "tags": ["x".repeat(65)]}),
            "bad_request",
            "tag",
        ),
        (
            json!({"title": "t", "tags": ["has space"]}),
            "bad_request",
            "tag",
        ),
        (
            json!({"title": "t", "click": "javascript:alert(1)"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "click": "//evil.example"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "click": "/etc/passwd"}),
            "bad_request",
            "click must be",
        ),
        // Issue 12: a click leads to the relay's own pages and nowhere else
        // (another server on 127.0.0.1 would receive whatever the browser
        // sends along).
        (
            json!({"title": "t", "click": "http://127.0.0.1:18999/webchat/"}),
            "bad_request",
            "click must be a path of this relay",
        ),
        (
            json!({"title": "t", "click": "https://example.com/backups"}),
            "bad_request",
            "links to other sites or ports are not allowed",
        ),
        (
            json!({"title": "t", "click": "/webchat/../x"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "click": "/webchat/%2e%2E/x"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "click": "/webchat/\\evil.example"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "click": "/webchat/a\u{7}b"}),
            "bad_request",
            "click must be",
        ),
        (
            json!({"title": "t", "session": "no/slashes"}),
            "invalid_session_key",
            "invalid session key",
        ),
        (
            json!({"title": "t", "session": ""}),
            "invalid_session_key",
            "empty",
        ),
        (
            json!({"title": "t", "id": "a b"}),
            "bad_request",
            "id must be",
        ),
        (
            json!({"title": "t", "message": "ntfy style"}),
            "bad_request",
            "unknown field",
        ),
        (json!({"title": 5}), "bad_request", "invalid"),
    ];
    for (body, code, needle) in cases {
        let (s, v) = post_notify(&api, body.clone()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some(code)), "{body}: {v}");
        assert_eq!(v["ok"], false);
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
    }
    let r = api
        .post("/webchat/notify")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(list(&api, "").await.is_empty(), "nothing was kept");
    // The limits themselves are allowed.
    notify_ok(
        &api,
        json!({
            "title": "é".repeat(256),
            "body": "x".repeat(4096),
            "tags": vec!["t".repeat(64); 10],
            "click": "/webchat/?session=main",
            "priority": 5,
        }),
    )
    .await;
    notify_ok(&api, json!({"body": "body only", "priority": 1})).await;
}

#[tokio::test]
async fn notify_tokens_post_and_nothing_else() {
    let relay = Relay::start();
    let token = create_notify_token(&relay.home, "cron").await;
    let scoped = with_token(&relay, &token);
    let (_, seq) = notify_ok(&scoped, json!({"title": "from cron", "body": "ok"})).await;
    assert_eq!(seq, 1);

    // 403 forbidden on every other authenticated endpoint.
    for path in [
        "/webchat/info",
        "/webchat/history",
        "/webchat/sessions",
        "/webchat/events",
        "/webchat/events?session=main",
        "/webchat/notifications",
        "/webchat/attachments/abc.png",
    ] {
        let (s, v) = scoped.get_json(path).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{path}");
    }
    for (path, body) in [
        ("/webchat/rpc", json!({"text": "hi"})),
        // Nor can it hold a stream of any kind (so there is none for a
        // revocation to close).
        ("/webchat/rpc", json!({"text": "hi", "stream": true})),
        ("/webchat/abort", json!({"session": "main"})),
        (
            "/webchat/presence",
            json!({"client": "c1", "session": "main", "focused": true}),
        ),
    ] {
        let r = scoped.post(path).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "forbidden");
    }
    let r = scoped
        .post("/webchat/attachments")
        .header("content-type", "image/png")
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    match ws_connect(&relay, "session=main", &token).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a notify token opened a socket: {:?}", other.is_ok()),
    }
    // Nor is it handed to the page: the legacy link drops it.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(relay.url(&format!("/webchat/?token={token}")))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.headers()["location"], "/webchat/");
    // Nothing leaked through: the session was not created.
    let (_, sessions) = relay.client().get_json("/webchat/sessions").await;
    assert_eq!(sessions["sessions"], json!([]));

    // The file: 0600, hashes only; the listing: no secrets.
    use std::os::unix::fs::PermissionsExt;
    let file = relay.home.join("tokens.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let on_disk = std::fs::read_to_string(&file).unwrap();
    assert!(!on_disk.contains(&token), "plaintext token in tokens.json");
    assert!(!on_disk.contains(token.trim_start_matches("lcn_")));
    let out = cli(&relay.home, &["token", "list", "--json"], &[]).await;
    assert!(out.status.success());
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["name"], "cron");
    assert_eq!(tokens[0]["scope"], "notify");
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        tokens[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["createdAt", "id", "name", "scope"]
    );
    let human = cli(&relay.home, &["token", "list"], &[]).await;
    for out in [&stdout(&out), &stdout(&human)] {
        assert!(!out.contains(&token) && !out.contains("sha256"), "{out}");
    }
    assert!(stdout(&human).contains(&id));

    // The CLI with the scoped token: may notify, may not read.
    let env = [("LOOPCHAT_TOKEN", token.as_str())];
    let out = cli(
        &relay.home,
        &["notify", "--title", "t", "--body", "b"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&relay.home, &["sessions"], &env).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));

    // Revoked: 401 at once, without a relay restart.
    let out = cli(&relay.home, &["token", "revoke", &id], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (s, v) = post_notify(&scoped, json!({"title": "t", "body": "b"})).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    let out = cli(&relay.home, &["token", "revoke", &id], &[]).await;
    assert!(!out.status.success(), "unknown id");
    assert!(stderr(&out).contains("no token"), "{}", stderr(&out));
}

#[tokio::test]
async fn rotating_the_main_token_applies_without_a_restart() {
    let relay = Relay::start();
    let old = relay.client();
    assert_eq!(old.get_json("/webchat/sessions").await.0, 200);
    let out = cli(&relay.home, &["token", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let new_token = std::fs::read_to_string(relay.home.join("token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new_token, relay.token);
    let d = loopchat_tests::read_discovery(&relay.home).unwrap();
    assert_eq!(d.token, new_token, "the discovery file follows");
    // The new token works at once; the old one is refused from then on.
    let new = with_token(&relay, &new_token);
    let (s, info) = new.get_json("/webchat/info").await;
    assert_eq!(s, 200);
    assert_eq!(info["token"], new_token.as_str());
    let (s, v) = old.get_json("/webchat/sessions").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    // Client commands find the new token through the discovery file.
    let out = cli(&relay.home, &["notify", "--title", "rotated"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Reads a stream opened before a rotation to its end: what it still
/// carried, and the WebSocket's close frame (code, reason). Fails if the
/// stream is still open after `within` — the failure bound, not the figure
/// (the figure is `bench_rotation_closes_streams`).
async fn end_of(sub: Sub, within: Duration) -> (Vec<Value>, Option<(u16, String)>) {
    let read = async move {
        let mut seen = Vec::new();
        match sub {
            Sub::Sse(mut s) => {
                while let Some((_, v)) = s.next().await {
                    seen.push(v);
                }
                (seen, None)
            }
            Sub::Ws(mut ws) => loop {
                match ws.next().await {
                    Some(Ok(tungstenite::Message::Text(t))) => {
                        seen.push(serde_json::from_str(&t).unwrap());
                    }
                    Some(Ok(tungstenite::Message::Close(frame))) => {
                        let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        return (seen, frame);
                    }
                    None | Some(Err(_)) => return (seen, None),
                    Some(Ok(_)) => {}
                }
            },
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("a stream opened with the old token outlived the rotation")
}

fn new_main_token(relay: &Relay) -> String {
    let token = std::fs::read_to_string(relay.home.join("token")).unwrap();
    assert_ne!(token.trim(), relay.token);
    token.trim().to_owned()
}

/// Issue 12 item 2: an SSE stream, a WebSocket and a streaming rpc opened
/// with the main token all end once it is rotated, with nothing sent by
/// the test in between (the relay must notice the change by itself). The
/// socket closes with 4401, the rpc stream ends with an `unauthorized`
/// error, and the run it was watching is not cancelled.
#[tokio::test]
async fn rotating_the_main_token_closes_the_streams_it_opened() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "200"));
    let old = relay.client();
    let mut streams = vec![
        Sub::Sse(sse(&old, "session=main").await),
        Sub::Sse(sse(&old, "").await),
        Sub::Ws(Box::new(
            ws_connect(&relay, "session=main", &relay.token)
                .await
                .unwrap(),
        )),
    ];
    // A run that outlasts the rotation by seconds: 40 words, 200 ms apart.
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    let turn = json!({"session": "slow", "text": text, "id": "slow-1"});
    let mut streaming = turn.clone();
    streaming["stream"] = true.into();
    let r = old
        .post("/webchat/rpc")
        .json(&streaming)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut rpc = SseReader::new(r);
    rpc.until("delta").await;
    // Every stream is live.
    notify_ok(&old, json!({"title": "before"})).await;
    for s in &mut streams {
        s.notifications_until("before").await;
    }

    let out = cli(&relay.home, &["token", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let new_token = new_main_token(&relay);
    let within = Duration::from_secs(5);
    let mut closes = Vec::new();
    for s in streams {
        closes.push(end_of(s, within).await.1);
    }
    assert_eq!(
        closes,
        [None, None, Some((4401, "credential revoked".to_owned()))]
    );
    let rest = tokio::time::timeout(within, async {
        let mut rest = Vec::new();
        while let Some((_, v)) = rpc.next().await {
            rest.push(v);
        }
        rest
    })
    .await
    .expect("the streaming rpc outlived the rotation");
    let last = rest.last().expect("the rpc stream ends with an event");
    assert_eq!(
        (&last["type"], &last["code"], &last["ok"]),
        (&json!("error"), &json!("unauthorized"), &json!(false)),
        "{rest:?}"
    );
    assert!(!rest.iter().any(|v| v["type"] == "done"), "{rest:?}");

    // The old token opens nothing any more; the new one does.
    let (s, v) = old.get_json("/webchat/events").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    match ws_connect(&relay, "", &relay.token).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("the old token opened a socket: {:?}", other.is_ok()),
    }
    let new = with_token(&relay, &new_token);
    let _ = sse(&new, "session=main").await;
    // The run was the relay's, not the stream's: it finished in full, and
    // the same id answers it (an aborted run would say `stopReason`).
    let (s, v) = new.rpc(turn).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payloads"][0]["text"], format!("echo: {text}"), "{v}");
    assert!(v["message"]["stopReason"].is_null(), "{v}");
}

/// Issue 12 item 2: once the relay has accepted a request with the new
/// token, nothing more reaches a stream opened with the old one: neither a
/// notification nor a turn posted right after the rotation.
#[tokio::test]
async fn nothing_posted_after_a_rotation_reaches_the_old_streams() {
    let relay = Relay::start();
    let old = relay.client();
    let mut streams = vec![
        Sub::Sse(sse(&old, "session=main").await),
        Sub::Ws(Box::new(
            ws_connect(&relay, "session=main", &relay.token)
                .await
                .unwrap(),
        )),
    ];
    notify_ok(&old, json!({"title": "before"})).await;
    for s in &mut streams {
        s.notifications_until("before").await;
    }
    let out = cli(&relay.home, &["token", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let new = with_token(&relay, &new_main_token(&relay));
    // At once, before the relay's own look at the files comes round.
    notify_ok(
        &new,
        json!({"title": "after", "body": "posted with the new token"}),
    )
    .await;
    let (s, v) = new
        .rpc(json!({"session": "main", "text": "after the rotation"}))
        .await;
    assert_eq!(s, 200, "{v}");
    // Both happened: a stream opened with the new token replays them.
    let mut fresh = Sub::Sse(sse(&new, "notifySince=1").await);
    fresh.notifications_until("after").await;
    let (_, history) = new.get_json("/webchat/history?session=main").await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        2,
        "{history}"
    );

    // Nothing was posted between "before" and the rotation, so anything
    // an old stream still carries came after it.
    for s in streams {
        let (seen, _) = end_of(s, Duration::from_secs(5)).await;
        let leaked: Vec<&Value> = seen.iter().filter(|v| v["type"] != "ping").collect();
        assert!(leaked.is_empty(), "reached the old stream: {leaked:?}");
    }
}

/// Issue 12 item 1: the ids and tags of the relay's own alerts are the
/// relay's. A notify-only token cannot overwrite a real "reply ready"
/// alert (same id), nor pass an alert off as one (same tag); the main
/// token keeps both rights.
#[tokio::test]
async fn notify_tokens_cannot_touch_the_relays_own_alerts() {
    let relay = Relay::start();
    let api = relay.client();
    let scoped = with_token(&relay, &create_notify_token(&relay.home, "cron").await);
    let mut watcher = Sub::Sse(sse(&api, "").await);
    let (s, v) = api.rpc(json!({"session": "rr", "text": "hello"})).await;
    assert_eq!(s, 200, "{v}");
    notify_ok(&api, json!({"title": "marker-1"})).await;
    let got = watcher.notifications_until("marker-1").await;
    let alert = tagged(&got, "reply-ready")[0].clone();
    assert_eq!(alert["id"], "reply-ready:rr");
    assert_eq!(alert["body"], "echo: hello");

    for body in [
        json!({"id": "reply-ready:rr", "title": "rr", "body": "click me, I am your agent"}),
        json!({"id": "Reply-Ready:rr", "title": "rr", "body": "x"}),
        json!({"id": "reply:anything", "title": "x"}),
        json!({"id": "delivery-failed:hook", "title": "x"}),
        json!({"title": "x", "tags": ["ci", "reply-ready"]}),
        json!({"title": "x", "tags": ["delivery-failed"]}),
        json!({"title": "x", "tags": ["reply"]}),
    ] {
        let (s, v) = post_notify(&scoped, body.clone()).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (403, Some("forbidden")),
            "{body}: {v}"
        );
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("reserved for the relay's own alerts") && msg.contains("reply-ready:…"),
            "{msg}"
        );
    }
    // Nothing of them was published or kept: the alert is as it was.
    notify_ok(&api, json!({"title": "marker-2"})).await;
    let got = watcher.notifications_until("marker-2").await;
    assert_eq!(got.len(), 1, "only the marker: {got:?}");
    let kept = list(&api, "").await;
    let now: Vec<&Value> = kept
        .iter()
        .filter(|n| n["id"] == "reply-ready:rr")
        .collect();
    assert_eq!(now, [&alert]);
    assert_eq!(kept.len(), 3, "{kept:?}");

    // Other ids and tags are the token's to use; the main token may still
    // update the relay's alert.
    notify_ok(
        &scoped,
        json!({"id": "backup:nightly", "tags": ["backup"], "title": "ok"}),
    )
    .await;
    notify_ok(
        &scoped,
        json!({"id": "replying:x", "tags": ["reply-later"], "title": "ok"}),
    )
    .await;
    notify_ok(
        &api,
        json!({"id": "reply-ready:rr", "title": "rr", "body": "seen"}),
    )
    .await;
    let kept = list(&api, "").await;
    let updated = kept.iter().find(|n| n["id"] == "reply-ready:rr").unwrap();
    assert_eq!(updated["body"], "seen");
}

#[tokio::test]
async fn bursts_are_limited_per_token_with_429_and_retry_after() {
    let relay = Relay::start();
    let token = create_notify_token(&relay.home, "flood").await;
    let scoped = with_token(&relay, &token);
    let started = Instant::now();
    let mut accepted = 0u64;
    let refused = loop {
        let r = scoped
            .post("/webchat/notify")
            .json(&json!({"title": "flood", "body": accepted.to_string()}))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            break r;
        }
        assert_eq!(r.status(), 200);
        accepted += 1;
        assert!(accepted < 500, "never limited");
    };
    // 60 at once, plus at most the refill (1/s) while posting them.
    let refill = started.elapsed().as_secs() + 1;
    assert!(
        (60..=60 + refill).contains(&accepted),
        "{accepted} accepted in {:?}",
        started.elapsed()
    );
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let v: Value = refused.json().await.unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["code"].as_str()),
        (Some(false), Some("rate_limited"))
    );
    // Per token: the main token has its own bucket.
    notify_ok(
        &relay.client(),
        json!({"title": "main still ok", "body": "b"}),
    )
    .await;
    // The CLI says so and exits 75 (EX_TEMPFAIL: try later).
    let out = cli(
        &relay.home,
        &["notify", "--title", "t", "--body", "b"],
        &[("LOOPCHAT_TOKEN", token.as_str())],
    )
    .await;
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too many notifications"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn deliver_posts_the_stored_reply() {
    let relay = Relay::start();
    let api = relay.client();
    let mut watcher = Sub::Sse(sse(&api, "").await);
    let (s, reply) = api
        .rpc(json!({"text": "the answer\nsecond line", "session": "dl", "deliver": true}))
        .await;
    assert_eq!(s, 200, "{reply}");
    notify_ok(&api, json!({"title": "marker", "body": "m"})).await;
    let got = watcher.notifications_until("marker").await;
    let delivered = tagged(&got, "reply");
    assert_eq!(delivered.len(), 1, "{got:?}");
    let n = delivered[0];
    assert_eq!(n["title"], "dl");
    assert_eq!(n["body"], "echo: the answer\nsecond line");
    assert_eq!(n["body"], reply["message"]["content"]);
    assert_eq!(n["session"], "dl");
    assert_eq!(n["click"], "/webchat/?session=dl");
    assert_eq!(n["priority"], 3);
    assert!(
        tagged(&got, "reply-ready").is_empty(),
        "deliver already posted one: {got:?}"
    );
    assert_eq!(got.len(), 2);
    // A long reply is cut to its first lines, within 4 KiB.
    let long: String = (0..50)
        .map(|i| format!("line {i} {}\n", "x".repeat(200)))
        .collect();
    let (s, _) = api
        .rpc(json!({"text": long, "session": "dl", "deliver": true}))
        .await;
    assert_eq!(s, 200);
    let n = watcher.notification().await;
    let body = n["body"].as_str().unwrap();
    assert!(body.len() <= 4096 && body.ends_with('…'), "{}", body.len());
    assert!(body.starts_with("echo: line 0 "));
    assert!(body.lines().count() <= 8);
}

/// A real HTTP endpoint for webhook targets: answers the n-th request with
/// `statuses[n]` (the last one from then on) and `says`, and hands each
/// request's `Authorization` and JSON body to the test.
async fn webhook(
    statuses: &'static [u16],
    says: &'static str,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    use axum::http::{HeaderMap, StatusCode};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = statuses[n.min(statuses.len() - 1)];
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                assert_eq!(headers["content-type"], "application/json");
                let _ = tx.send((auth, serde_json::from_str(&body).unwrap()));
                (StatusCode::from_u16(status).unwrap(), says)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The next request the webhook got (30 s at most: a relay that ignores
/// `to` must fail the test, not hang it).
async fn delivered(
    hook: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(30), hook.recv())
        .await
        .expect("the webhook got nothing within 30 s")
        .expect("webhook server gone")
}

/// Reads what a command target writes into the FIFO at `path` (the read
/// waits for the writer, so nothing is polled).
async fn read_fifo(path: &Path) -> String {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path).unwrap());
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the command target wrote nothing within 30 s")
        .unwrap()
}

#[tokio::test]
async fn to_sends_the_reply_to_a_configured_target_instead() {
    let (hook_url, mut hook) = webhook(&[200], "").await;
    let (refusing_url, mut refusing) = webhook(&[503], "quota exceeded").await;
    let (forbidding_url, mut forbidding) = webhook(&[403], "bad topic").await;
    let (flaky_url, mut flaky) = webhook(&[503, 200], "").await;
    let scratch = tempfile::tempdir().unwrap();
    let fifo = scratch.path().join("delivered");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let config = format!(
        r#"
        [targets.hook]
        webhook = "{hook_url}"
        headers = {{ Authorization = "Bearer hook-secret" }}
        [targets.fifo]
        command = ["sh", "-c", "{{ printf '%s|%s\n' \"$LOOPCHAT_TITLE\" \"$LOOPCHAT_TARGET\"; cat; }} > \"$0\"", "{fifo}"]
        [targets.refusing]
        webhook = "{refusing_url}"
        retries = 1
        [targets.forbidding]
        webhook = "{forbidding_url}"
        [targets.flaky]
        webhook = "{flaky_url}"
        [targets.failing]
        command = ["sh", "-c", "echo 'no mail today' >&2; exit 3"]
        retries = 0
        [targets.chatty]
        command = ["sh", "-c", "head -c 10000000 /dev/zero | tr '\\0' x >&2; echo 'the real reason' >&2; exit 1"]
        retries = 0
        [targets.gone]
        webhook = "http://127.0.0.1:1/hook?key=webhook-secret"
        retries = 0
        "#,
        fifo = fifo.display()
    );
    let relay = Relay::start_with(RelayOptions::default().config(&config));
    let api = relay.client();
    let mut watcher = Sub::Sse(sse(&api, "").await);

    // A webhook gets the reply, with its configured header.
    let (s, reply) = api
        .rpc(json!({"text": "for the phone\nline 2", "session": "tg", "to": "hook"}))
        .await;
    assert_eq!(s, 200, "{reply}");
    let (auth, got) = delivered(&mut hook).await;
    assert_eq!(auth, "Bearer hook-secret");
    assert_eq!(got["target"], "hook");
    assert_eq!(got["title"], "tg");
    assert_eq!(got["session"], "tg");
    assert_eq!(got["text"], "echo: for the phone\nline 2");
    assert_eq!(got["text"], reply["message"]["content"]);
    assert_eq!(got["tags"], json!(["reply"]));
    assert_eq!(
        got["id"],
        format!("reply:{}", reply["message"]["id"].as_str().unwrap())
    );
    // …instead of the windows: nothing was posted before the marker.
    notify_ok(&api, json!({"title": "marker 1"})).await;
    let seen = watcher.notifications_until("marker 1").await;
    assert_eq!(seen.len(), 1, "{seen:?}");

    // A command gets it as JSON on stdin, and the main fields as variables.
    let (s, _) = api
        .rpc(json!({"text": "for the desk", "session": "tg", "to": "fifo"}))
        .await;
    assert_eq!(s, 200);
    let written = read_fifo(&fifo).await;
    let (first, json_text) = written.split_once('\n').unwrap();
    assert_eq!(first, "tg|fifo");
    let got: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(
        (&got["target"], &got["text"]),
        (&json!("fifo"), &json!("echo: for the desk"))
    );

    // A retry with the same id is not delivered a second time.
    for _ in 0..2 {
        let (s, _) = api
            .rpc(json!({"text": "once", "session": "tg", "to": "hook", "id": "k-once"}))
            .await;
        assert_eq!(s, 200);
    }
    assert_eq!(delivered(&mut hook).await.1["text"], "echo: once");
    let (s, _) = api
        .rpc(json!({"text": "after", "session": "tg", "to": "hook"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(delivered(&mut hook).await.1["text"], "echo: after");

    // A transient failure is tried again, with the same id: one delivery,
    // and no alert.
    let (s, reply) = api
        .rpc(json!({"text": "twice?", "session": "tg", "to": "flaky"}))
        .await;
    assert_eq!(s, 200, "{reply}");
    let (first, second) = (delivered(&mut flaky).await.1, delivered(&mut flaky).await.1);
    assert_eq!(
        (&first["id"], &first["text"]),
        (&second["id"], &json!("echo: twice?"))
    );
    notify_ok(&api, json!({"title": "marker 2"})).await;
    let seen = watcher.notifications_until("marker 2").await;
    assert_eq!(
        seen.len(),
        1,
        "a retried delivery raised an alert: {seen:?}"
    );

    // A target that fails: the turn still succeeds, and the windows are told.
    // A 5xx is tried `retries` more times; a 403 will not change, so once.
    for (target, says) in [
        ("refusing", "503: quota exceeded (after 2 attempts)"),
        ("forbidding", "403: bad topic. The reply"),
        ("failing", "no mail today"),
        // 10 MB of stderr: the end is kept, and it is where the reason is.
        ("chatty", "xxxthe real reason. The reply"),
        // The cause, not just reqwest's "error sending request".
        ("gone", "Connection refused"),
    ] {
        let (s, reply) = api
            .rpc(json!({"text": "lost?", "session": "tg", "to": target}))
            .await;
        assert_eq!(s, 200, "{reply}");
        let alert = watcher.notification().await;
        assert_eq!(
            alert["title"],
            format!("Could not deliver a reply to {target}"),
            "{alert}"
        );
        assert_eq!(alert["tags"], json!(["delivery-failed"]));
        assert_eq!(alert["session"], "tg");
        let body = alert["body"].as_str().unwrap();
        assert!(body.contains(says) && body.contains("session tg"), "{body}");
        assert!(!body.contains("webhook-secret"), "{body}");
    }

    assert_eq!(delivered(&mut refusing).await.1["text"], "echo: lost?");
    assert_eq!(delivered(&mut refusing).await.1["text"], "echo: lost?");
    assert_eq!(delivered(&mut forbidding).await.1["text"], "echo: lost?");
    assert!(refusing.try_recv().is_err() && forbidding.try_recv().is_err());

    // A webhook URL often holds a secret: neither the alert nor the log shows it.
    assert!(!relay.logs().contains("webhook-secret"), "{}", relay.logs());
    assert!(relay.logs().contains("could not deliver the reply"));

    // Refused before any turn runs: an unknown target, or `deliver: false` beside `to`.
    let (s, v) = api
        .rpc(json!({"text": "x", "session": "bad", "to": "pager"}))
        .await;
    assert_eq!((s, &v["code"]), (400, &json!("bad_request")), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error
            .contains("configured: chatty, failing, fifo, flaky, forbidding, gone, hook, refusing"),
        "{error}"
    );
    let (s, v) = api
        .rpc(json!({"text": "x", "session": "bad", "to": "hook", "deliver": false}))
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, info) = api.get_json("/webchat/info?session=bad").await;
    assert_eq!(
        info["sessionId"],
        Value::Null,
        "a refused turn made a session: {info}"
    );

    // The CLI: `send --to`, and `--deliver` with `--to` is a usage error.
    let out = cli(
        &relay.home,
        &["send", "--session", "tg", "--to", "hook", "via cli"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(delivered(&mut hook).await.1["text"], "echo: via cli");
    let out = cli(
        &relay.home,
        &["send", "--deliver", "--to", "hook", "x"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test]
async fn reply_ready_fires_only_when_no_window_is_focused() {
    let relay = Relay::start();
    let api = relay.client();
    let mut watcher = Sub::Sse(sse(&api, "").await);
    let presence = |client: &str, session: &str, focused: bool| {
        let api = api.clone();
        let body = json!({"client": client, "session": session, "focused": focused});
        async move {
            let r = api
                .post("/webchat/presence")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
        }
    };
    let mut markers = 0;
    // One turn in `session`, then the reply-ready notifications it caused.
    let mut turn = async |session: &str, watcher: &mut Sub| -> Vec<Value> {
        let (s, v) = api.rpc(json!({"text": "hello", "session": session})).await;
        assert_eq!(s, 200, "{v}");
        markers += 1;
        let marker = format!("marker-{markers}");
        notify_ok(&api, json!({"title": marker, "body": "m"})).await;
        let got = watcher.notifications_until(&marker).await;
        tagged(&got, "reply-ready").into_iter().cloned().collect()
    };

    // Nobody looking: it fires.
    let fired = turn("rr", &mut watcher).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["title"], "rr");
    assert_eq!(fired[0]["body"], "echo: hello");
    assert_eq!(fired[0]["session"], "rr");
    assert_eq!(fired[0]["click"], "/webchat/?session=rr");
    assert_eq!(fired[0]["priority"], 3);

    // A window focused on the session: it does not.
    presence("tab-a", "rr", true).await;
    assert!(turn("rr", &mut watcher).await.is_empty());
    // ... but other sessions still get theirs.
    let other = turn("elsewhere", &mut watcher).await;
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["session"], "elsewhere");
    // The window loses focus: it fires again (updating the same alert).
    presence("tab-a", "rr", false).await;
    let again = turn("rr", &mut watcher).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0]["id"], fired[0]["id"],
        "one alert per session, updated"
    );
    assert!(again[0]["seq"].as_u64() > fired[0]["seq"].as_u64());

    // Focus held by a window whose socket then closes: it lapses with it.
    let mut tab = ws_connect(&relay, "session=rr&client=tab-b", &relay.token)
        .await
        .unwrap();
    presence("tab-b", "rr", true).await;
    assert!(turn("rr", &mut watcher).await.is_empty());
    tab.close(None).await.unwrap();
    // Read to the end: the relay drops presence before closing the socket.
    while let Some(Ok(_)) = tab.next().await {}
    assert_eq!(turn("rr", &mut watcher).await.len(), 1);

    // Presence is validated and needs the full token.
    let r = api
        .post("/webchat/presence")
        .json(&json!({"client": "bad id!", "focused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("/webchat/presence")
        .json(&json!({"client": "c", "session": "a/b", "focused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .get("/webchat/events?client=bad%20id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cli_exit_codes() {
    // No relay: non-zero, and the hint to start one.
    let empty = tempfile::tempdir().unwrap();
    let out = cli(
        empty.path(),
        &["notify", "--title", "t", "--body", "b"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("loopchat serve"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    // Bad arguments: refused before any request.
    for bad in [
        &["notify", "--title", "t", "--priority", "9"][..],
        &["notify", "--title", "t", "--priority", "0"],
        &["notify", "--title", "t", "--priority", "high"],
        &["token", "create", "--scope", "admin"],
    ] {
        let out = cli(empty.path(), bad, &[]).await;
        assert!(!out.status.success(), "{bad:?}");
        assert_eq!(out.status.code(), Some(2), "usage error: {bad:?}");
    }
    let relay = Relay::start();
    // Refused by the relay: its sentence, exit 1.
    let out = cli(
        &relay.home,
        &["notify", "--click", "javascript:x", "--title", "t"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("click must be"), "{}", stderr(&out));
    let out = cli(&relay.home, &["notify"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("both empty"), "{}", stderr(&out));
    // A wrong token: 401, exit 1.
    let out = cli(
        &relay.home,
        &["notify", "--title", "t"],
        &[("LOOPCHAT_TOKEN", "wrong")],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    // --url and --token (as from cron, without the discovery file).
    let elsewhere = tempfile::tempdir().unwrap();
    let url = relay.url("/webchat/");
    let out = cli(
        elsewhere.path(),
        &[
            "notify",
            "--title",
            "via url",
            "--url",
            &url,
            "--token",
            &relay.token,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(
        elsewhere.path(),
        &["notify", "--title", "via env"],
        &[
            ("LOOPCHAT_URL", url.as_str()),
            ("LOOPCHAT_TOKEN", relay.token.as_str()),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let titles: Vec<_> = list(&relay.client(), "")
        .await
        .into_iter()
        .map(|n| n["title"].clone())
        .collect();
    assert_eq!(titles, [json!("via url"), json!("via env")]);
}

// ---------------------------------------------------------------- benchmark

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn vm_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces): utime and
    // stime are the 12th and 13th, in clock ticks.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// 1,000 subscribers (500 SSE, 500 WebSocket) receive each notification:
/// delivery latency from just before the POST to receipt, on this process's
/// clock, and the relay's RSS with them all connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p loopchat-tests --release --test notifications -- --ignored --nocapture"]
async fn bench_fanout_1000() {
    const SUBSCRIBERS: usize = 1000;
    const ROUNDS: usize = 20;
    // Each subscriber costs a descriptor here and one in the relay (which
    // inherits this limit).
    raise_fd_limit(8192);
    let relay = Relay::start();
    let api = relay.client();
    let rss_idle = vm_rss_kib(relay.pid());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let http = reqwest::Client::new();
    let connect_started = Instant::now();
    let mut readers = Vec::new();
    // SSE half first, then the WebSocket half, to see what each one costs.
    for _ in 0..SUBSCRIBERS / 2 {
        let tx = tx.clone();
        let r = http
            .get(relay.url("/webchat/events"))
            .bearer_auth(&relay.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut s = SseReader::new(r);
        readers.push(tokio::spawn(async move {
            while let Some((_, v)) = s.next().await {
                let at = Instant::now();
                if tx.send((v["seq"].as_u64().unwrap(), at)).is_err() {
                    return;
                }
            }
        }));
    }
    let rss_sse = vm_rss_kib(relay.pid());
    for _ in 0..SUBSCRIBERS / 2 {
        let tx = tx.clone();
        let mut sub = Sub::Ws(Box::new(
            ws_connect(&relay, "", &relay.token).await.unwrap(),
        ));
        readers.push(tokio::spawn(async move {
            while let Some(v) = sub.next().await {
                let at = Instant::now();
                if tx.send((v["seq"].as_u64().unwrap(), at)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let connect_time = connect_started.elapsed();
    let rss_connected = vm_rss_kib(relay.pid());

    let mut latencies = Vec::with_capacity(SUBSCRIBERS * ROUNDS);
    let mut post_times = Vec::new();
    // Per round: first receipt (durable + first write) and the spread from
    // first to last receipt (the fan-out itself).
    let mut firsts = Vec::new();
    let mut spreads = Vec::new();
    let mut rss_peak = rss_connected;
    let (relay_cpu_start, own_cpu_start) =
        (cpu_time(relay.pid()), cpu_time(std::process::id() as i32));
    for round in 0..ROUNDS {
        let sent = Instant::now();
        let (_, seq) = notify_ok(
            &api,
            json!({"title": format!("bench {round}"), "body": "fan-out"}),
        )
        .await;
        post_times.push(sent.elapsed());
        let mut received = 0;
        let (mut first, mut last) = (None::<Instant>, sent);
        while received < SUBSCRIBERS {
            let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("every subscriber receives within 30 s")
                .expect("subscribers alive");
            assert_eq!(got, seq, "one notification at a time");
            latencies.push(at - sent);
            first = Some(first.map_or(at, |f| f.min(at)));
            last = last.max(at);
            received += 1;
        }
        let first = first.unwrap();
        firsts.push(first - sent);
        spreads.push(last - first);
        rss_peak = rss_peak.max(vm_rss_kib(relay.pid()));
    }
    let relay_cpu = cpu_time(relay.pid()) - relay_cpu_start;
    let own_cpu = cpu_time(std::process::id() as i32) - own_cpu_start;
    latencies.sort();
    post_times.sort();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = *latencies.last().unwrap();
    println!(
        "bench_fanout_1000: {SUBSCRIBERS} subscribers ({} SSE + {} WebSocket), {ROUNDS} notifications, {} deliveries",
        SUBSCRIBERS / 2,
        SUBSCRIBERS / 2,
        latencies.len()
    );
    println!("  connect all:        {connect_time:.2?}");
    println!(
        "  delivery latency:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= 50 ms)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    firsts.sort();
    spreads.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  per notification:   POST round trip p50 {:.2} ms (includes fdatasync), first receipt p50 {:.2} ms, first→last receipt p50 {:.2} ms / max {:.2} ms",
        ms(percentile(&post_times, 0.5)),
        ms(percentile(&firsts, 0.5)),
        ms(percentile(&spreads, 0.5)),
        ms(*spreads.last().unwrap())
    );
    println!(
        "  CPU per notification to {SUBSCRIBERS}: relay {:.1} ms, this test process (the 1,000 clients) {:.1} ms; load average {}",
        ms(relay_cpu) / ROUNDS as f64,
        ms(own_cpu) / ROUNDS as f64,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  relay VmRSS:        idle {:.1} MiB, {SUBSCRIBERS} connected {:.1} MiB, peak {:.1} MiB ({:.1} KiB per subscriber)",
        rss_idle as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        (rss_connected.saturating_sub(rss_idle)) as f64 / SUBSCRIBERS as f64
    );
    println!(
        "  per subscriber:     SSE {:.1} KiB, WebSocket {:.1} KiB",
        rss_sse.saturating_sub(rss_idle) as f64 / (SUBSCRIBERS / 2) as f64,
        rss_connected.saturating_sub(rss_sse) as f64 / (SUBSCRIBERS / 2) as f64
    );
    for r in readers {
        r.abort();
    }
    assert!(
        p99 <= Duration::from_millis(50),
        "p99 delivery latency {p99:?} is over the 50 ms goal"
    );
}

/// Issue 12 item 2: how long an SSE stream and a WebSocket opened with the
/// main token stay open after `loopchat token rotate`, with no request to
/// the relay in between (so it is the relay's own look at the token file
/// that ends them). Measured from the CLI's exit (the file is written by
/// then) to the end of each stream, on this process's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p loopchat-tests --release --test notifications -- --ignored --nocapture"]
async fn bench_rotation_closes_streams() {
    const ROUNDS: usize = 20;
    let relay = Relay::start();
    let mut token = relay.token.clone();
    let (mut sse_lat, mut ws_lat, mut cli_time) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let api = with_token(&relay, &token);
        let mut sse_sub = Sub::Sse(sse(&api, "session=main").await);
        let mut ws_sub = Sub::Ws(Box::new(
            ws_connect(&relay, "session=main", &token).await.unwrap(),
        ));
        let marker = format!("live-{}", sse_lat.len());
        notify_ok(&api, json!({"title": marker})).await;
        sse_sub.notifications_until(&marker).await;
        ws_sub.notifications_until(&marker).await;
        let started = Instant::now();
        let out = cli(&relay.home, &["token", "rotate"], &[]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let rotated = Instant::now();
        cli_time.push(rotated - started);
        let within = Duration::from_secs(5);
        let (sse_end, ws_end) = tokio::join!(
            async {
                end_of(sse_sub, within).await;
                rotated.elapsed()
            },
            async {
                let (_, close) = end_of(ws_sub, within).await;
                assert_eq!(close.map(|c| c.0), Some(4401));
                rotated.elapsed()
            }
        );
        sse_lat.push(sse_end);
        ws_lat.push(ws_end);
        token = std::fs::read_to_string(relay.home.join("token"))
            .unwrap()
            .trim()
            .to_owned();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "rotation → stream closed, {ROUNDS} rotations (relay polls the token files every 250 ms):"
    );
    for (name, mut v) in [
        ("SSE", sse_lat),
        ("WebSocket", ws_lat),
        ("CLI run", cli_time),
    ] {
        v.sort();
        println!(
            "  {name:<10} p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            ms(percentile(&v, 0.5)),
            ms(percentile(&v, 0.9)),
            ms(*v.last().unwrap())
        );
    }
    println!(
        "  load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
