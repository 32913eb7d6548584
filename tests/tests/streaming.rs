//! Issue 3: streaming rpc, resumable event streams, abort, WebSocket, and the
//! command backend — against the real binary.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use loopchat_tests::{Relay, RelayOptions, SseReader};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

fn slow_echo() -> RelayOptions {
    RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "20")
}

async fn stream_rpc(relay: &Relay, body: Value) -> SseReader {
    let r = relay
        .client()
        .post("/webchat/rpc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseReader::new(r)
}

async fn events(relay: &Relay, query: &str, last_event_id: Option<&str>) -> SseReader {
    let mut r = relay.client().get(&format!("/webchat/events?{query}"));
    if let Some(id) = last_event_id {
        r = r.header("last-event-id", id);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn streaming_rpc_event_order_and_sum() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "2"));
    let mut s = stream_rpc(
        &relay,
        json!({"text": words(10), "session": "st", "stream": true}),
    )
    .await;
    let mut seqs = Vec::new();
    let mut types = Vec::new();
    let mut text = String::new();
    let mut done = Value::Null;
    while let Some((id, v)) = s.next().await {
        let t = v["type"].as_str().unwrap().to_owned();
        if t == "done" {
            done = v;
            break;
        }
        assert_eq!(
            id,
            v["seq"].as_u64().unwrap().to_string(),
            "SSE id is the seq"
        );
        seqs.push(v["seq"].as_u64().unwrap());
        if t == "delta" {
            text.push_str(v["text"].as_str().unwrap());
        }
        types.push(t);
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous seqs {seqs:?}"
    );
    assert_eq!(types[0], "message");
    assert_eq!(types[1], "run.start");
    assert_eq!(types[types.len() - 2], "message");
    assert_eq!(types[types.len() - 1], "run.end");
    assert_eq!(
        types.iter().filter(|t| *t == "delta").count(),
        11,
        "streamed word by word"
    );
    assert_eq!(text, format!("echo: {}", words(10)));
    assert_eq!(done["message"]["content"], text.as_str());
    assert_eq!(done["ok"], true);
    // Accept: text/event-stream also selects streaming.
    let r = relay
        .client()
        .post("/webchat/rpc")
        .header("accept", "text/event-stream")
        .json(&json!({"text": "a", "session": "st"}))
        .send()
        .await
        .unwrap();
    let mut s = SseReader::new(r);
    assert_eq!(
        s.until("done").await.last().unwrap()["message"]["content"],
        "echo: a"
    );
}

#[tokio::test]
async fn disconnect_then_resume_with_last_event_id() {
    let relay = Relay::start_with(slow_echo());
    // A watcher to learn the first seqs, then drop it mid-run.
    let (_, info) = relay.client().get_json("/webchat/info?session=res").await;
    let start = info["lastSeq"].as_u64().unwrap();
    let mut watcher = events(&relay, &format!("session=res&since={start}"), None).await;
    let mut rpc = stream_rpc(
        &relay,
        json!({"text": words(30), "session": "res", "stream": true}),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let (_, v) = watcher.next().await.unwrap();
        seen.push(v);
    }
    drop(watcher);
    // The turn goes on without the watcher; the rpc stream finishes it.
    let all = rpc.until("done").await;
    let last_seen = seen.last().unwrap()["seq"].as_u64().unwrap();
    let mut resumed = events(&relay, "session=res", Some(&last_seen.to_string())).await;
    let mut rest = Vec::new();
    loop {
        let (_, v) = resumed.next().await.unwrap();
        let end = v["type"] == "run.end";
        rest.push(v);
        if end {
            break;
        }
    }
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e["seq"].as_u64().is_some_and(|s| s > last_seen))
        .cloned()
        .collect();
    assert_eq!(rest, expected, "exactly the rest: no gap, no duplicate");
    let text: String = seen
        .iter()
        .chain(rest.iter())
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, format!("echo: {}", words(30)));
}

#[tokio::test]
async fn client_gone_the_reply_is_stored_anyway() {
    let relay = Relay::start_with(slow_echo());
    let mut rpc = stream_rpc(
        &relay,
        json!({"text": words(10), "session": "gone", "stream": true}),
    )
    .await;
    rpc.until("delta").await;
    drop(rpc);
    let (_, info) = relay.client().get_json("/webchat/info?session=gone").await;
    let since = info["lastSeq"].as_u64().unwrap();
    let active = &info["activeRun"];
    assert!(active["runId"].is_string(), "run still going: {info}");
    // Replaying from before the run start shows the reply so far, then live.
    let from = active["startSeq"].as_u64().unwrap() - 1;
    assert!(from < since);
    let mut s = events(&relay, &format!("session=gone&since={from}"), None).await;
    let evs = s.until("run.end").await;
    assert_eq!(evs[0]["type"], "run.start");
    assert_eq!(evs.last().unwrap()["state"], "final");
    let (_, info) = relay.client().get_json("/webchat/info?session=gone").await;
    let msgs = info["initialMessages"].as_array().unwrap();
    assert_eq!(
        msgs.last().unwrap()["content"],
        format!("echo: {}", words(10))
    );
    assert!(info["activeRun"].is_null());
}

#[tokio::test]
async fn two_clients_see_the_same_events_in_order() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "1"));
    let (_, info) = relay.client().get_json("/webchat/info?session=two").await;
    let since = info["lastSeq"].as_u64().unwrap().to_string();
    let mut a = events(&relay, &format!("session=two&since={since}"), None).await;
    let mut b = events(&relay, &format!("session=two&since={since}"), None).await;
    let api = relay.client();
    let (r1, r2) = tokio::join!(
        api.rpc(json!({"text": "first one", "session": "two"})),
        api.rpc(json!({"text": "second one", "session": "two"}))
    );
    assert_eq!((r1.0, r2.0), (200, 200));
    let mut ea: Vec<Value> = Vec::new();
    let mut eb = Vec::new();
    // The session's own events, in its log's order; the session list's
    // change (relay-wide, no place in the log) lands wherever it happens to
    // on each stream.
    for (stream, got) in [(&mut a, &mut ea), (&mut b, &mut eb)] {
        while got.iter().filter(|e| e["type"] == "run.end").count() < 2 {
            let event = stream.next().await.unwrap().1;
            if !loopchat_tests::relay_wide(&event) {
                got.push(event);
            }
        }
    }
    assert_eq!(ea, eb);
    // Serialized: the first run ends before the second starts.
    let first_end = ea.iter().position(|e| e["type"] == "run.end").unwrap();
    let second_start = ea.iter().rposition(|e| e["type"] == "run.start").unwrap();
    assert!(first_end < second_start);
}

#[tokio::test]
async fn abort_stops_the_run_and_keeps_the_partial_reply() {
    let relay = Relay::start_with(slow_echo());
    let mut rpc = stream_rpc(
        &relay,
        json!({"text": words(200), "session": "ab", "stream": true}),
    )
    .await;
    let mut got = String::new();
    let mut run_id = String::new();
    loop {
        let (_, v) = rpc.next().await.unwrap();
        if v["type"] == "run.start" {
            run_id = v["runId"].as_str().unwrap().to_owned();
        }
        if v["type"] == "delta" {
            got.push_str(v["text"].as_str().unwrap());
            if got.len() > 20 {
                break;
            }
        }
    }
    let (s, v) = async {
        let r = relay
            .client()
            .post("/webchat/abort")
            .json(&json!({"session": "ab"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    }
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["runId"], run_id.as_str());
    let rest = rpc.until("done").await;
    for e in &rest {
        if e["type"] == "delta" {
            got.push_str(e["text"].as_str().unwrap());
        }
    }
    let end = rest.iter().find(|e| e["type"] == "run.end").unwrap();
    assert_eq!(end["state"], "aborted");
    let done = rest.last().unwrap();
    assert_eq!(done["message"]["stopReason"], "aborted");
    assert_eq!(
        done["message"]["content"],
        got.as_str(),
        "stored exactly what was streamed"
    );
    assert!(got.len() < words(200).len());
    // Nothing to abort now.
    let r = relay
        .client()
        .post("/webchat/abort")
        .json(&json!({"session": "ab"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["runId"], Value::Null);
}

#[tokio::test]
async fn queue_false_answers_409_while_busy() {
    let relay = Relay::start_with(slow_echo());
    let mut rpc = stream_rpc(
        &relay,
        json!({"text": words(20), "session": "busy", "stream": true}),
    )
    .await;
    rpc.until("run.start").await;
    let (s, v) = relay
        .client()
        .rpc(json!({"text": "x", "session": "busy", "queue": false}))
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("turn_in_progress")));
    // Other sessions are not held up.
    let (s, _) = relay
        .client()
        .rpc(json!({"text": "x", "session": "elsewhere", "queue": false}))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn unknown_since_gets_a_reset() {
    let relay = Relay::start();
    relay
        .client()
        .rpc(json!({"text": "x", "session": "rs"}))
        .await;
    let mut s = events(&relay, "session=rs&since=5", None).await;
    let (id, v) = s.next().await.unwrap();
    assert_eq!(v["type"], "reset");
    assert_eq!(id, v["seq"].as_u64().unwrap().to_string());
    let bad = relay
        .client()
        .get("/webchat/events?session=rs")
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn websocket_carries_events_and_drops_silent_clients() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_WS_PING_SECS", "1"));
    let mut req = format!("ws://127.0.0.1:{}/webchat/socket?session=ws", relay.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", relay.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req.clone()).await.unwrap();
    relay
        .client()
        .rpc(json!({"text": "over ws", "session": "ws"}))
        .await;
    let mut types = Vec::new();
    while !types.contains(&"run.end".to_string()) {
        let m = ws.next().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] == "ping" {
            ws.send(tungstenite::Message::Text(r#"{"type":"pong"}"#.into()))
                .await
                .unwrap();
            continue;
        }
        types.push(v["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        types,
        ["message", "run.start", "delta", "message", "run.end"]
    );

    // A client that never answers pings is closed after 3 missed pongs.
    let (mut silent, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let started = std::time::Instant::now();
    let mut pings = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), silent.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tungstenite::Message::Text(t))) if t.contains("ping") => pings += 1,
            Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => break,
            _ => {}
        }
    }
    assert_eq!(pings, 3);
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Unauthenticated upgrade is refused.
    let anon = format!("ws://127.0.0.1:{}/webchat/socket?session=ws", relay.port);
    assert!(tokio_tungstenite::connect_async(anon).await.is_err());
}

fn command_relay(argv: &[&str], timeout: u64) -> Relay {
    let argv: Vec<String> = argv.iter().map(|s| format!("{s:?}")).collect();
    Relay::start_with(RelayOptions::default().config(&format!(
        "[agent]\nbackend = \"command\"\n[agent.command]\nargv = [{}]\ntimeout_secs = {timeout}\n",
        argv.join(", ")
    )))
}

#[tokio::test]
async fn command_backend_success_failure_timeout_abort() {
    let ok = command_relay(
        &[
            "/bin/sh",
            "-c",
            "read x; echo \"you said $x\"; echo \"in $LOOPCHAT_SESSION\"",
        ],
        5,
    );
    let (s, v) = ok
        .client()
        .rpc(json!({"text": "hi", "session": "cmd"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"]["content"], "you said hi\nin cmd");

    let fail = command_relay(
        &[
            "/bin/sh",
            "-c",
            "echo partial; echo 'model exploded' >&2; exit 7",
        ],
        5,
    );
    let (s, v) = fail
        .client()
        .rpc(json!({"text": "hi", "session": "cmd"}))
        .await;
    assert_eq!((s, v["code"].as_str()), (502, Some("agent_error")));
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("status 7") && msg.contains("model exploded"),
        "{msg}"
    );
    let (_, info) = fail.client().get_json("/webchat/info?session=cmd").await;
    let msgs = info["initialMessages"].as_array().unwrap();
    assert_eq!(msgs[0]["content"], "hi", "the user's message stays stored");
    assert_eq!(msgs[1]["stopReason"], "error");
    assert_eq!(msgs[1]["content"], "partial");
    assert_eq!(fail.client().get_json("/healthz").await.0, 200);

    let slow = command_relay(&["/bin/sleep", "30"], 1);
    let (s, v) = slow
        .client()
        .rpc(json!({"text": "hi", "session": "cmd"}))
        .await;
    assert_eq!((s, v["code"].as_str()), (504, Some("agent_timeout")));

    // Abort kills the child: it would otherwise write a marker file.
    let marker = tempfile::tempdir().unwrap();
    let path = marker.path().join("finished");
    let script = format!("echo started; sleep 3; touch {}", path.display());
    let ab = command_relay(&["/bin/sh", "-c", &script], 30);
    let mut rpc = stream_rpc(&ab, json!({"text": "x", "session": "cmd", "stream": true})).await;
    rpc.until("delta").await;
    ab.client()
        .post("/webchat/abort")
        .json(&json!({"session": "cmd"}))
        .send()
        .await
        .unwrap();
    let rest = rpc.until("done").await;
    assert_eq!(
        rest.iter().find(|e| e["type"] == "run.end").unwrap()["state"],
        "aborted"
    );
    tokio::time::sleep(Duration::from_secs(4)).await; // longer than the child would have lived
    assert!(!path.exists(), "the command was not killed on abort");
}

#[tokio::test]
async fn sigterm_lets_a_running_turn_finish() {
    let mut relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "30"));
    let mut rpc = stream_rpc(
        &relay,
        json!({"text": words(15), "session": "term", "stream": true}),
    )
    .await;
    rpc.until("delta").await;
    relay.signal(libc::SIGTERM);
    let rest = rpc.until("done").await;
    assert_eq!(
        rest.iter().find(|e| e["type"] == "run.end").unwrap()["state"],
        "final"
    );
    assert_eq!(relay.child.wait().unwrap().code(), Some(0));
    relay.restart();
    let (_, info) = relay.client().get_json("/webchat/info?session=term").await;
    assert_eq!(
        info["initialMessages"][1]["content"],
        format!("echo: {}", words(15))
    );
}

/// 100 concurrent streaming clients on one session all receive every delta,
/// in order, with a reply streamed word by word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_subscribers_receive_every_delta() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "1"));
    let (_, info) = relay.client().get_json("/webchat/info?session=fan").await;
    let since = info["lastSeq"].as_u64().unwrap();
    let mut readers = Vec::new();
    for _ in 0..100 {
        readers.push(events(&relay, &format!("session=fan&since={since}"), None).await);
    }
    let (s, reply) = relay
        .client()
        .rpc(json!({"text": words(300), "session": "fan"}))
        .await;
    assert_eq!(s, 200);
    let expected = reply["message"]["content"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let mut text = String::new();
                let mut deltas = 0;
                loop {
                    let (_, v) = r.next().await.unwrap();
                    match v["type"].as_str().unwrap() {
                        "delta" => {
                            deltas += 1;
                            text.push_str(v["text"].as_str().unwrap());
                        }
                        "run.end" => return (deltas, text),
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let (deltas, text) = t.await.unwrap();
        assert_eq!(deltas, 301);
        assert_eq!(text, expected);
    }
}

/// After `idle_session_secs` without a turn, a session's event replay is
/// dropped to give its memory back: a client asking for events it missed
/// gets a `reset` (and reloads), the seq goes on where it was, and the next
/// turn's events follow it. There is no event for "trimmed", so the test
/// asks again until the reset comes.
#[tokio::test]
async fn an_idle_session_drops_its_replay_but_keeps_its_seq() {
    let relay = Relay::start_with(RelayOptions::default().config("idle_session_secs = 1\n"));
    let api = relay.client();
    let (s, v) = api.rpc(json!({"text": "hi", "session": "idle"})).await;
    assert_eq!(s, 200, "{v}");
    let (_, info) = api.get_json("/webchat/info?session=idle").await;
    let last = info["lastSeq"].as_u64().unwrap();
    let missed = last - 2;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reset = loop {
        let mut feed = events(&relay, &format!("session=idle&since={missed}"), None).await;
        let (_, first) = feed.next().await.unwrap();
        if first["type"] == "reset" {
            break first;
        }
        assert_eq!(
            first["seq"],
            missed + 1,
            "served from the ring until trimmed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session was not trimmed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reset["seq"], last, "trimming keeps the seq");

    let mut feed = events(&relay, &format!("session=idle&since={last}"), None).await;
    let (s, v) = api.rpc(json!({"text": "again", "session": "idle"})).await;
    assert_eq!(s, 200, "{v}");
    let (_, next) = feed.next().await.unwrap();
    assert_eq!(next["seq"], last + 1, "{next}");
    assert_eq!(
        loopchat_tests::all_messages(&api, "idle").await.len(),
        4,
        "the history is whole"
    );
}
