//! Issue 15 item 5: `backend = "pi"` runs the REAL pi agent (tests/pi,
//! 0.73.1) through `pi --mode rpc` against the suite's REAL llama.cpp
//! server, with a forwarding proxy in between that can force a tool call.
//!
//! The server answers one request at a time, so everything that talks to
//! it runs in one test, in order. `LOOPCHAT_SKIP_LLAMA=1` skips it.

use std::time::{Duration, Instant};

use loopchat_tests::llama::{Llama, MODEL};
use loopchat_tests::pi::{ForcingProxy, PROVIDER, agent_dir, pi_bin, pi_children, pi_env};
use loopchat_tests::{Relay, RelayOptions, SseReader, all_messages};
use serde_json::{Value, json};

async fn stream(relay: &Relay, session: &str, text: &str) -> SseReader {
    let r = relay
        .client()
        .post("/webchat/rpc")
        .json(&json!({"text": text, "session": session, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// Reads until the first delta of the run.
async fn first_delta(s: &mut SseReader) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let (_, v) = s.next().await.expect("the stream ended before a delta");
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        seen.push(v);
        assert!(kind != "done" && kind != "error", "{seen:?}");
        if kind == "delta" {
            return seen;
        }
    }
}

/// Waits (bounded: pi is another process) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn transcript_of(relay: &Relay, key: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(relay.home.join("sessions/sessions.json")).unwrap())
            .unwrap();
    let id = index[key]["sessionId"].as_str().unwrap();
    std::fs::read_to_string(relay.home.join(format!("sessions/{id}.jsonl"))).unwrap()
}

fn texts(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let content = &m["content"];
            let text = match content {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter(|p| p["type"] == "text")
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_backend_end_to_end() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = ForcingProxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = agent_dir(tmp.path(), &proxy.base_url());
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut opts = RelayOptions::default()
        .env("LOOPCHAT_AGENT", "pi")
        .env(
            "LOOPCHAT_PI_COMMAND",
            &json!([pi_bin().to_str().unwrap()]).to_string(),
        )
        .env("LOOPCHAT_PI_PROVIDER", PROVIDER)
        .env("LOOPCHAT_PI_MODEL", MODEL)
        .env("LOOPCHAT_PI_IDLE_EXIT_SECS", "25");
    for (k, v) in pi_env(&dir) {
        opts = opts.env(&k, &v);
    }
    opts.config = Some(format!("[agent.pi]\ncwd = {:?}\n", work.to_str().unwrap()));
    let relay = Relay::start_with(opts);
    let api = relay.client();
    let (_, info) = api.get_json("/webchat/info?session=p1").await;
    assert_eq!(info["agent"]["backend"], "pi", "{info}");

    // 1. A reply, streamed; U+2028 in the user's text crosses both RPC
    //    directions (pi echoes the message in its events) and lands intact
    //    in the file pi wrote.
    let text = "hello\u{2028}there\u{2029}pi";
    let mut s = stream(&relay, "p1", text).await;
    let events = s.until("done").await;
    let done = events.last().unwrap();
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(!deltas.is_empty(), "{events:?}");
    let reply = &done["message"];
    assert_eq!(reply["role"], "assistant", "{done}");
    assert_eq!(texts(std::slice::from_ref(reply))[0].1, deltas);
    // pi's messages were published as this run's, before run.end.
    let run_id = done["runId"].as_str().unwrap();
    let pos = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred);
    let user_at = pos(&|e| e["type"] == "message" && e["message"]["role"] == "user").unwrap();
    let end_at = pos(&|e| e["type"] == "run.end").unwrap();
    assert!(user_at < end_at);
    assert_eq!(events[user_at]["runId"], run_id);
    let file = transcript_of(&relay, "p1");
    let first: Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "session", "pi wrote the file: {file}");
    assert!(
        file.contains('\u{2028}') || file.contains("\\u2028"),
        "{file}"
    );
    let history = all_messages(&api, "p1").await;
    assert_eq!(
        texts(&history),
        [
            ("user".into(), text.into()),
            ("assistant".into(), deltas.clone())
        ]
    );
    let pids = pi_children(relay.pid());
    assert_eq!(pids.len(), 1, "one pi for the session");

    // 2. A second turn reuses the same process, and its thinking level
    //    reaches pi (set_thinking_level), which records the change.
    let (status, v) = api
        .rpc(json!({"text": "again", "session": "p1", "thinking": "low"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(pi_children(relay.pid()), pids);
    let changes: Vec<String> = transcript_of(&relay, "p1")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "thinking_level_change")
        .map(|v| v["thinkingLevel"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        changes.last().map(String::as_str),
        Some("low"),
        "{changes:?}"
    );

    // 3. A tool call: the proxy forces `bash` with one possible command,
    //    whose output carries U+2028 back through pi's stream.
    let command = "printf 'tool\\342\\200\\250ran'";
    proxy.force("bash", command);
    let mut s = stream(&relay, "tools", "run the tool").await;
    let events = s.until("done").await;
    let start = events
        .iter()
        .find(|e| e["type"] == "tool.start")
        .unwrap_or_else(|| {
            let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
            let sent: Vec<_> = proxy
                .requests()
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r["messages"] = json!(r["messages"].as_array().map(|m| m.len()));
                    r
                })
                .collect();
            panic!("no tool.start: {kinds:?}; requests {sent:?}")
        });
    assert_eq!(start["name"], "bash");
    assert_eq!(start["args"]["command"], command);
    // The call streamed in as the model wrote it, before it ran.
    let start_at = events
        .iter()
        .position(|e| e["type"] == "tool.start")
        .unwrap();
    let written: String = events[..start_at]
        .iter()
        .filter(|e| e["type"] == "tool.args" && e["callId"] == start["callId"])
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    // (Raw, as the model wrote it: the tiny model's escapes are not always
    // valid JSON, which pi's own parser tolerates.)
    assert!(
        written.contains("\"command\"") && written.contains("printf 'tool"),
        "tool.args deltas: {written:?}"
    );
    let end = events.iter().find(|e| e["type"] == "tool.end").unwrap();
    assert_eq!(end["callId"], start["callId"]);
    assert_eq!(end["status"], "ok", "{end}");
    // The output streamed as `tool.update` pieces, in order.
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "tool.update" && e["callId"] == start["callId"])
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(streamed.contains("tool\u{2028}ran"), "{streamed:?}");
    let history = all_messages(&api, "tools").await;
    let roles: Vec<_> = history
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "toolResult", "assistant"]);
    assert!(
        history[1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "toolCall" && p["id"] == start["callId"]),
        "{:?}",
        history[1]
    );

    let tools_pi: Vec<_> = pi_children(relay.pid())
        .into_iter()
        .filter(|p| !pids.contains(p))
        .collect();
    assert_eq!(tools_pi.len(), 1, "one pi per session");
    let p1_pis = |relay: &Relay| -> Vec<i32> {
        pi_children(relay.pid())
            .into_iter()
            .filter(|p| !tools_pi.contains(p))
            .collect()
    };

    // 4. Abort mid-reply: pi is told, stops, and writes the stopped reply
    //    itself; the process stays.
    let mut s = stream(&relay, "p1", "a long one please").await;
    let seen = first_delta(&mut s).await;
    let run_id = seen[0]["runId"].as_str().unwrap().to_owned();
    let r = api
        .post("/webchat/abort")
        .json(&json!({"session": "p1", "runId": run_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = s.until("done").await;
    let end = events.iter().find(|e| e["type"] == "run.end").unwrap();
    assert_eq!(end["state"], "aborted", "{events:?}");
    assert_eq!(events.last().unwrap()["message"]["stopReason"], "aborted");
    assert_eq!(p1_pis(&relay), pids, "an abort does not end pi");

    // 5. pi killed mid-reply: a clear error, the message kept, and the next
    //    turn starts a new pi that continues the same file.
    let mut s = stream(&relay, "p1", "this one crashes").await;
    first_delta(&mut s).await;
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let last = loop {
        let (_, v) = s.next().await.expect("stream ended without an outcome");
        if v["type"] == "error" || v["type"] == "done" {
            break v;
        }
    };
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["code"], "agent_error", "{last}");
    let msg = last["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("pi was killed by a signal") && msg.contains("kept"),
        "{last}"
    );
    let history = all_messages(&api, "p1").await;
    assert!(
        texts(&history)
            .iter()
            .any(|(r, t)| r == "user" && t == "this one crashes"),
        "{history:?}"
    );
    let (status, v) = api
        .rpc(json!({"text": "after the crash", "session": "p1"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let after = p1_pis(&relay);
    assert_eq!(after.len(), 1);
    assert_ne!(after, pids);
    let history = all_messages(&api, "p1").await;
    let users: Vec<_> = texts(&history)
        .into_iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        users,
        [
            text,
            "again",
            "a long one please",
            "this one crashes",
            "after the crash"
        ]
    );
    // pi's context for the new turn came from the file: the model saw the
    // earlier turns.
    let sent = proxy
        .requests()
        .iter()
        .map(|r| r["messages"].to_string())
        .rfind(|m| m.contains("after the crash"))
        .unwrap();
    assert!(
        sent.contains("this one crashes") && sent.contains("again"),
        "{sent}"
    );

    // 6. A first turn killed before pi wrote anything: the relay keeps the
    //    message itself (the file has no other writer any more).
    let mut s = stream(&relay, "p2", "first words").await;
    first_delta(&mut s).await;
    let p2: Vec<_> = p1_pis(&relay)
        .into_iter()
        .filter(|p| !after.contains(p))
        .collect();
    assert_eq!(p2.len(), 1);
    unsafe { libc::kill(p2[0], libc::SIGKILL) };
    let last = loop {
        let (_, v) = s.next().await.expect("stream ended without an outcome");
        if v["type"] == "error" || v["type"] == "done" {
            break v;
        }
    };
    assert_eq!(last["type"], "error", "{last}");
    let history = all_messages(&api, "p2").await;
    assert_eq!(texts(&history), [("user".into(), "first words".into())]);

    // 7. Idle: every pi exits on its own once its session has been idle.
    let relay_pid = relay.pid();
    eventually("the idle pi exiting", || pi_children(relay_pid).is_empty()).await;
    drop(llama);
}

fn pi_relay(
    home: Option<std::path::PathBuf>,
    command: &str,
    model: &str,
    dir: &std::path::Path,
) -> Relay {
    let mut opts = RelayOptions {
        home,
        ..Default::default()
    }
    .env("LOOPCHAT_AGENT", "pi")
    .env("LOOPCHAT_PI_COMMAND", &json!([command]).to_string())
    .env("LOOPCHAT_PI_PROVIDER", PROVIDER)
    .env("LOOPCHAT_PI_MODEL", model);
    for (k, v) in pi_env(dir) {
        opts = opts.env(&k, &v);
    }
    Relay::start_with(opts)
}

/// Bad set-ups answer with what is wrong, and keep the user's message; no
/// model server is needed for any of them.
#[tokio::test]
async fn pi_set_up_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens there: pi is never asked to reach it.
    let dir = agent_dir(tmp.path(), "http://127.0.0.1:9/v1");

    let relay = pi_relay(None, "/nonexistent/pi", MODEL, &dir);
    let (status, v) = relay
        .client()
        .rpc(json!({"text": "hello", "session": "bad"}))
        .await;
    assert_eq!(status, 502, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("cannot start pi"),
        "{v}"
    );
    let history = all_messages(&relay.client(), "bad").await;
    assert_eq!(texts(&history), [("user".into(), "hello".into())]);
    drop(relay);

    let relay = pi_relay(None, pi_bin().to_str().unwrap(), "no-such-model", &dir);
    let (status, v) = relay
        .client()
        .rpc(json!({"text": "hello", "session": "bad"}))
        .await;
    assert_eq!(status, 502, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("pi"), "{v}");
    assert!(
        e.contains("no-such-model"),
        "pi's own reason is passed on: {v}"
    );
}

/// pi replaces a file without a session header by an empty session: an old
/// headerless transcript is upgraded to pi's format (with a backup) before
/// pi is handed it, so pi continues it instead of wiping it.
#[tokio::test]
async fn an_old_transcript_is_upgraded_before_pi_gets_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A model server nobody listens on: pi gets the file, then fails to reach it.
    let dir = agent_dir(tmp.path(), "http://127.0.0.1:9/v1");
    let home = tmp.path().join("home");
    let sessions = home.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    for d in [&home, &sessions] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let id = "11111111-2222-3333-4444-555555555555";
    let old = "{\"type\":\"message\",\"id\":\"a\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"user\",\"content\":\"old words\",\"timestamp\":1}}\n";
    let path = sessions.join(format!("{id}.jsonl"));
    std::fs::write(&path, old).unwrap();
    std::fs::write(
        sessions.join("sessions.json"),
        json!({"old": {"sessionId": id, "updatedAt": 1}}).to_string(),
    )
    .unwrap();
    let relay = pi_relay(Some(home.clone()), pi_bin().to_str().unwrap(), MODEL, &dir);
    let (status, v) = relay
        .client()
        .rpc(json!({"text": "more", "session": "old"}))
        .await;
    assert_eq!(status, 502, "{v}");
    let file = std::fs::read_to_string(&path).unwrap();
    let header: serde_json::Value =
        serde_json::from_str(file.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(header["type"], "session", "upgraded to pi's format: {file}");
    assert_eq!(header["version"], 3, "{file}");
    assert!(
        file.contains("old words"),
        "the old message is kept: {file}"
    );
    let mut backup = path.clone().into_os_string();
    backup.push(".pre-v3.bak");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), old);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Figures for docs/benchmarks.md (ignored): `cargo build -p loopchat-relay
/// --release && LOOPCHAT_BIN=target/release/loopchat cargo test -p
/// loopchat-tests --release --test pi_backend -- --ignored --nocapture`.
/// For 8 sessions: the first turn (pi started) and the second (pi running),
/// rpc sent → first delta; and the model's answer forwarded whole → `done`
/// at the client (pi finishing, the relay reading pi's lines, fdatasync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pi_backend() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = ForcingProxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = agent_dir(tmp.path(), &proxy.base_url());
    let relay = pi_relay(None, pi_bin().to_str().unwrap(), MODEL, &dir);
    let (mut cold, mut warm, mut tail) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..8 {
        let session = format!("bench{i}");
        for turn in 0..2 {
            let sent = Instant::now();
            let mut s = stream(&relay, &session, "hello there").await;
            first_delta(&mut s).await;
            let ttft = sent.elapsed().as_secs_f64() * 1e3;
            s.until("done").await;
            let done = Instant::now();
            let ended = *proxy.ended().last().unwrap();
            tail.push(done.duration_since(ended).as_secs_f64() * 1e3);
            if turn == 0 {
                cold.push(ttft)
            } else {
                warm.push(ttft)
            }
        }
    }
    println!(
        "pi backend, median of 8: first delta, first turn (pi starts) {:.1} ms; second turn {:.1} ms; \
         model answer complete → done {:.1} ms (min {:.1}, max {:.1})",
        median(cold),
        median(warm),
        median(tail.clone()),
        tail.iter().cloned().fold(f64::INFINITY, f64::min),
        tail.iter().cloned().fold(0.0, f64::max),
    );
}
