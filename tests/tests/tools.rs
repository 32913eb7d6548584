//! Issue 16: the tool loop, approvals and the built-in tools, end to end —
//! the real relay on the openai backend, the suites' real llama.cpp server
//! (tests/support/llama) behind a scripted forwarding proxy.
//!
//! The tiny model only ever calls a tool when it must: for each request the
//! proxy replaces the relay's `tools` with ONE function whose parameters are
//! `enum`-constrained and forces it with `tool_choice`, so the model (under
//! llama.cpp's JSON grammar) emits exactly the call of the script, streamed
//! in pieces with id and name repeated in every chunk. A step of the script
//! that is `Text` strips the tools and the model answers with words. The
//! proxy records every request body the relay sent, so each test can check
//! what the model was told.
//!
//! The server handles one request at a time, so everything runs inside ONE
//! `#[tokio::test]`, in order. `LOOPCHAT_SKIP_LLAMA=1` skips it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use loopchat_tests::forcing::{Force, Proxy};
use loopchat_tests::llama::Llama;
use loopchat_tests::{Api, Relay, RelayOptions, SseReader, loopchat_bin};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers

struct Setup {
    relay: Relay,
    api: Api,
    ws: PathBuf,
    outside: PathBuf,
    _tmp: tempfile::TempDir,
}

fn config(ws: &Path) -> String {
    format!(
        r#"
[agent.openai]
max_tokens = 6

[tools]
workspace = "{}"
max_steps = 4
approval_timeout_secs = 3
bash_output_limit_bytes = 65536

[tools.policy]
edit = "allow"
"#,
        ws.display()
    )
}

fn start(proxy: &Proxy) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, "secret outside the workspace").unwrap();
    let ws = std::fs::canonicalize(&ws).unwrap();
    let relay = Relay::start_with(
        RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(&config(&ws))
        .openai_at(&proxy.base_url()),
    );
    let api = relay.client();
    Setup {
        relay,
        api,
        ws,
        outside,
        _tmp: tmp,
    }
}

async fn subscribe(api: &Api, session: &str) -> SseReader {
    let r = api
        .get(&format!("/webchat/events?session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// Events up to the first that `stop` accepts (inclusive).
async fn events_until(sse: &mut SseReader, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some((_, v)) = sse.next().await {
        let done = stop(&v);
        out.push(v);
        if done {
            return out;
        }
    }
    panic!("the event stream ended early: {out:?}");
}

fn of<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["type"] == t).collect()
}

async fn messages(api: &Api, session: &str) -> Vec<Value> {
    let (s, info) = api
        .get_json(&format!("/webchat/info?session={session}&limit=200"))
        .await;
    assert_eq!(s, 200, "{info}");
    info["initialMessages"].as_array().unwrap().clone()
}

fn results(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["role"] == "toolResult")
        .collect()
}

fn text_of(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The `tool` messages of a request the relay sent to the model.
fn tool_messages(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

async fn approve(api: &Api, session: &str, call: &str, decision: &str) -> (u16, Value) {
    let r = api
        .post("/webchat/approve")
        .json(&json!({"session": session, "callId": call, "decision": decision}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

fn rpc_task(api: &Api, session: &str, text: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let api = api.clone();
    let body = json!({"session": session, "text": text});
    tokio::spawn(async move { api.rpc(body).await })
}

/// Whether a live process has `marker` in its command line; waits (bounded)
/// for a killed one to go, SIGKILL being asynchronous.
fn process_alive(marker: &str) -> bool {
    let alive = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive() {
        if std::time::Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------
// The suite

#[tokio::test]
async fn tools_against_real_llama() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(llama.addr()).await;
    let mut s = start(&proxy);

    tools_listing(&s).await;
    allowed_read_round_trip(&proxy, &s).await;
    approved_write(&proxy, &s).await;
    denied_write(&proxy, &s).await;
    unanswered_approval_expires(&proxy, &s).await;
    allow_for_session_then_caps(&proxy, &s).await;
    bad_calls_are_told_to_the_model(&proxy, &s).await;
    step_limit(&proxy, &s).await;
    stop_during_bash(&proxy, &s).await;
    cli_send_answers_approvals(&proxy, &s).await;
    killed_mid_step_is_marked_interrupted(&proxy, &mut s).await;
    assert_eq!(proxy.left(), 0);
}

/// `loopchat tools` lists every tool with its source and policy.
async fn tools_listing(s: &Setup) {
    let out = std::process::Command::new(loopchat_bin())
        .args(["tools", "--json"])
        .env("LOOPCHAT_HOME", &s.relay.home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workspace"], s.ws.to_str().unwrap());
    assert_eq!(v["confined"], true);
    let rows: Vec<(String, String, String)> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = |k: &str| t[k].as_str().unwrap().to_owned();
            (f("name"), f("source"), f("policy"))
        })
        .collect();
    let want = [
        ("read", "allow"),
        ("write", "ask"),
        ("edit", "allow"),
        ("bash", "ask"),
    ];
    for ((name, source, policy), (wn, wp)) in rows.iter().zip(want) {
        assert_eq!(
            (name.as_str(), source.as_str(), policy.as_str()),
            (wn, "builtin", wp)
        );
    }
    assert_eq!(rows.len(), 4);
}

/// `read` is allowed by default: it runs unasked, the model gets the file
/// in a `tool` message beside an assistant `tool_calls` message whose
/// content is "" (not null), and the transcript holds pi's shapes.
async fn allowed_read_round_trip(proxy: &Proxy, s: &Setup) {
    std::fs::write(s.ws.join("note.txt"), "hello from the workspace").unwrap();
    proxy.script(vec![
        Force::Call("read", json!({"path": "note.txt"})),
        Force::Text,
    ]);
    let before = proxy.bodies().len();
    let mut sse = subscribe(&s.api, "read").await;
    let (status, v) = s
        .api
        .rpc(json!({"session": "read", "text": "read the note"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert_eq!(of(&events, "tool.approval").len(), 0, "read must not ask");
    let start = of(&events, "tool.start")[0];
    assert_eq!(start["name"], "read");
    assert_eq!(start["args"], json!({"path": "note.txt"}));
    let end = of(&events, "tool.end")[0];
    assert_eq!(end["status"], "ok");
    assert_eq!(end["callId"], start["callId"]);
    assert!(end["durationMs"].is_u64());
    assert_eq!(of(&events, "run.end")[0]["state"], "final");

    // The relay offered pi's four tools.
    let bodies = proxy.bodies();
    let first = &bodies[before];
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read", "write", "edit", "bash"]);
    let second = &bodies[before + 1];
    let msgs = second["messages"].as_array().unwrap();
    let asked = msgs
        .iter()
        .find(|m| m.get("tool_calls").is_some())
        .expect("the assistant's tool_calls went back to the model");
    assert_eq!(
        asked["content"], "",
        "content must be \"\" beside tool_calls"
    );
    assert_eq!(asked["tool_calls"][0]["function"]["name"], "read");
    let args: Value = serde_json::from_str(
        asked["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"path": "note.txt"}));
    let tool = &tool_messages(second)[0];
    assert_eq!(tool["content"], "hello from the workspace");
    assert_eq!(tool["tool_call_id"], asked["tool_calls"][0]["id"]);

    // Stored in pi's shape.
    let m = messages(&s.api, "read").await;
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "toolResult", "assistant"]);
    assert_eq!(m[1]["stopReason"], "toolUse");
    let call = &m[1]["content"].as_array().unwrap()[0];
    assert_eq!(call["type"], "toolCall");
    assert_eq!(call["name"], "read");
    assert_eq!(call["arguments"], json!({"path": "note.txt"}));
    assert_eq!(m[2]["toolCallId"], call["id"]);
    assert_eq!(m[2]["toolName"], "read");
    assert_eq!(m[2]["isError"], false);
    assert!(m[3].get("stopReason").is_none());
    assert_eq!(
        v["message"]["id"], m[3]["id"],
        "the rpc answers with the final reply"
    );
}

/// `write` asks: the run waits with an approval event carrying the exact
/// call, the pending call is in /webchat/info (a reloaded page shows it),
/// a notify-only token may not answer, the main token approves and the
/// file is written.
async fn approved_write(proxy: &Proxy, s: &Setup) {
    let args = json!({"path": "out/new.txt", "content": "written by the model"});
    proxy.script(vec![Force::Call("write", args.clone()), Force::Text]);
    let mut sse = subscribe(&s.api, "w").await;
    let run = rpc_task(&s.api, "w", "write a file");
    let events = events_until(&mut sse, |e| e["type"] == "tool.approval").await;
    let ask = events.last().unwrap();
    assert_eq!(ask["name"], "write");
    assert_eq!(ask["args"], args);
    assert!(ask["expiresAt"].is_string());
    let call = ask["callId"].as_str().unwrap().to_owned();
    assert!(
        !s.ws.join("out/new.txt").exists(),
        "nothing runs before approval"
    );

    let (_, info) = s.api.get_json("/webchat/info?session=w").await;
    assert_eq!(info["pendingApprovals"][0]["callId"], call.as_str());
    assert_eq!(info["pendingApprovals"][0]["args"], args);

    let out = std::process::Command::new(loopchat_bin())
        .args(["token", "create", "--scope", "notify", "--name", "cron"])
        .env("LOOPCHAT_HOME", &s.relay.home)
        .output()
        .unwrap();
    assert!(out.status.success());
    let scoped = Api {
        token: Some(String::from_utf8(out.stdout).unwrap().trim().to_owned()),
        ..s.api.clone()
    };
    let (st, v) = approve(&scoped, "w", &call, "approve").await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = approve(&s.api, "w", "no-such-call", "approve").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (st, v) = approve(&s.api, "w", &call, "maybe").await;
    assert_eq!(st, 400, "{v}");

    let (st, v) = approve(&s.api, "w", &call, "approve").await;
    assert_eq!(st, 200, "{v}");
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(s.ws.join("out/new.txt")).unwrap(),
        "written by the model"
    );
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert_eq!(
        of(&events, "tool.approval.resolved")[0]["decision"],
        "approved"
    );
    assert_eq!(of(&events, "tool.end")[0]["status"], "ok");
    // Answered once: a second answer finds nothing waiting.
    let (st, _) = approve(&s.api, "w", &call, "deny").await;
    assert_eq!(st, 404);
    let (_, info) = s.api.get_json("/webchat/info?session=w").await;
    assert!(info.get("pendingApprovals").is_none(), "{info}");
}

/// Denied: nothing is written and the model is told.
async fn denied_write(proxy: &Proxy, s: &Setup) {
    proxy.script(vec![
        Force::Call("write", json!({"path": "denied.txt", "content": "no"})),
        Force::Text,
    ]);
    let before = proxy.bodies().len();
    let mut sse = subscribe(&s.api, "d").await;
    let run = rpc_task(&s.api, "d", "write another");
    let events = events_until(&mut sse, |e| e["type"] == "tool.approval").await;
    let call = events.last().unwrap()["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(approve(&s.api, "d", &call, "deny").await.0, 200);
    assert_eq!(run.await.unwrap().0, 200);
    assert!(!s.ws.join("denied.txt").exists());
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert_eq!(of(&events, "tool.end")[0]["status"], "denied");
    assert!(
        of(&events, "tool.start").is_empty(),
        "a denied call never starts"
    );
    let told = &tool_messages(&proxy.bodies()[before + 1])[0];
    assert!(
        told["content"].as_str().unwrap().contains("denied"),
        "{told}"
    );
    let m = messages(&s.api, "d").await;
    assert_eq!(results(&m)[0]["isError"], true);
}

/// An approval nobody answers is denied when it expires, and the model is
/// told so.
async fn unanswered_approval_expires(proxy: &Proxy, s: &Setup) {
    proxy.script(vec![
        Force::Call("bash", json!({"command": "touch expired-marker"})),
        Force::Text,
    ]);
    let mut sse = subscribe(&s.api, "x").await;
    let (status, v) = s.api.rpc(json!({"session": "x", "text": "run it"})).await;
    assert_eq!(status, 200, "{v}");
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert_eq!(
        of(&events, "tool.approval.resolved")[0]["decision"],
        "expired"
    );
    assert!(!s.ws.join("expired-marker").exists());
    let m = messages(&s.api, "x").await;
    assert!(text_of(results(&m)[0]).contains("No one approved this tool call within 3 seconds"));
}

/// "Allow for this session": the second bash call of the session runs
/// without asking. Then the output cap and the timeout, in that session.
async fn allow_for_session_then_caps(proxy: &Proxy, s: &Setup) {
    proxy.script(vec![
        Force::Call("bash", json!({"command": "echo one > s1.txt"})),
        Force::Call("bash", json!({"command": "echo two > s2.txt"})),
        Force::Text,
    ]);
    let mut sse = subscribe(&s.api, "a").await;
    let run = rpc_task(&s.api, "a", "two commands");
    let events = events_until(&mut sse, |e| e["type"] == "tool.approval").await;
    let call = events.last().unwrap()["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(approve(&s.api, "a", &call, "allowSession").await.0, 200);
    assert_eq!(run.await.unwrap().0, 200);
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert!(
        of(&events, "tool.approval").is_empty(),
        "the second call asked again"
    );
    assert_eq!(of(&events, "tool.end").len(), 2);
    assert_eq!(
        std::fs::read_to_string(s.ws.join("s2.txt")).unwrap(),
        "two\n"
    );

    proxy.script(vec![
        Force::Call("bash", json!({"command": "yes loopchat"})),
        Force::Call(
            "bash",
            json!({"command": "echo begun; sleep 30", "timeout": 1}),
        ),
        Force::Text,
    ]);
    let (status, v) = s.api.rpc(json!({"session": "a", "text": "caps"})).await;
    assert_eq!(status, 200, "{v}");
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    let streamed: String = of(&events, "tool.update")
        .iter()
        .map(|u| u["text"].as_str().unwrap())
        .collect();
    assert!(
        streamed.contains("loopchat\nloopchat"),
        "output streams as tool.update"
    );
    assert!(streamed.contains("begun"));
    let m = messages(&s.api, "a").await;
    let r = results(&m);
    let capped = text_of(r[r.len() - 2]);
    assert!(
        capped.ends_with("Command killed: its output passed the 64.0KB limit"),
        "{capped}"
    );
    let timed = text_of(r[r.len() - 1]);
    assert!(timed.starts_with("begun"), "{timed}");
    assert!(
        timed.ends_with("Command timed out after 1 seconds"),
        "{timed}"
    );
    assert_eq!(r[r.len() - 1]["isError"], true);
}

/// Bad calls never crash the run: each gets a clear error as its result
/// and the loop goes on to a text answer.
async fn bad_calls_are_told_to_the_model(proxy: &Proxy, s: &Setup) {
    std::fs::write(s.ws.join("dup.txt"), "x and x").unwrap();
    let outside = s.outside.to_str().unwrap().to_owned();
    proxy.script(vec![
        Force::Call("launch_missiles", json!({"target": "moon"})),
        Force::Call("write", json!({"path": "only-a-path.txt"})),
        Force::Call(
            "edit",
            json!({"path": "dup.txt", "oldText": "x", "newText": "y"}),
        ),
        Force::Call("read", json!({"path": outside})),
        Force::Text,
    ]);
    let before = proxy.bodies().len();
    let (status, v) = s
        .api
        .rpc(json!({"session": "bad", "text": "misbehave"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let m = messages(&s.api, "bad").await;
    let r = results(&m);
    assert_eq!(r.len(), 4);
    let expect = [
        "Tool launch_missiles not found",
        "missing the required \"content\"",
        "Found 2 occurrences of the text in dup.txt",
        "is outside the workspace",
    ];
    for (res, needle) in r.iter().zip(expect) {
        assert_eq!(res["isError"], true);
        assert!(text_of(res).contains(needle), "{needle:?} in {res}");
    }
    assert_eq!(
        std::fs::read_to_string(s.ws.join("dup.txt")).unwrap(),
        "x and x"
    );
    assert!(!s.ws.join("only-a-path.txt").exists());
    // The model saw every error.
    let last = &proxy.bodies()[before + 4];
    let told = tool_messages(last);
    assert_eq!(told.len(), 4);
    assert!(
        told[3]["content"]
            .as_str()
            .unwrap()
            .contains("outside the workspace")
    );
    assert!(
        !told
            .iter()
            .any(|t| t["content"].as_str().unwrap().contains("secret outside"))
    );
}

/// A model that keeps calling tools is stopped at `max_steps` (4 here)
/// with a clear message; the fifth call is not run.
async fn step_limit(proxy: &Proxy, s: &Setup) {
    let mut script: Vec<Force> = (0..5)
        .map(|_| Force::Call("read", json!({"path": "note.txt"})))
        .collect();
    script.push(Force::Text);
    proxy.script(script);
    let (status, v) = s
        .api
        .rpc(json!({"session": "loop", "text": "again and again"}))
        .await;
    assert_eq!(status, 502, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("stopped after 4 tool steps"),
        "{v}"
    );
    // The Text step was never asked for.
    assert_eq!(proxy.left(), 1);
    proxy.clear();
    let m = messages(&s.api, "loop").await;
    let r = results(&m);
    assert_eq!(r.len(), 5);
    assert!(text_of(r[4]).contains("limit of 4 tool steps"));
    assert_eq!(m.last().unwrap()["stopReason"], "error");
}

/// Stop during a long bash kills its process group and ends the run
/// aborted.
async fn stop_during_bash(proxy: &Proxy, s: &Setup) {
    let marker = format!("loopchat-stop-{}", std::process::id());
    let cmd = format!("(exec -a {marker} sleep 60) & echo started; wait");
    proxy.script(vec![Force::Call("bash", json!({"command": cmd}))]);
    let mut sse = subscribe(&s.api, "a").await; // bash is allowed in "a"
    let run = rpc_task(&s.api, "a", "long job");
    events_until(&mut sse, |e| {
        e["type"] == "tool.update" && e["text"].as_str().unwrap().contains("started")
    })
    .await;
    assert!(!process_alive("no-such-marker-at-all"));
    let r = s
        .api
        .post("/webchat/abort")
        .json(&json!({"session": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, v) = run.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"]["stopReason"], "aborted");
    let events = events_until(&mut sse, |e| e["type"] == "run.end").await;
    assert_eq!(of(&events, "tool.end")[0]["status"], "aborted");
    assert_eq!(events.last().unwrap()["state"], "aborted");
    assert!(
        !process_alive(&marker),
        "the command's background child survived Stop"
    );
}

/// `loopchat send --approve` / `--deny-all` answer the turn's approvals
/// for scripts (no terminal here: without a flag the call would wait).
async fn cli_send_answers_approvals(proxy: &Proxy, s: &Setup) {
    for (flag, session, written) in [("--approve", "cli1", true), ("--deny-all", "cli2", false)] {
        let file = format!("{session}.txt");
        proxy.script(vec![
            Force::Call("write", json!({"path": file, "content": "from the cli"})),
            Force::Text,
        ]);
        let home = s.relay.home.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(loopchat_bin())
                .args(["send", "do it", "--session", session, flag])
                .env("LOOPCHAT_HOME", home)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s.ws.join(&file).exists(), written, "{flag}");
        let m = messages(&s.api, session).await;
        assert_eq!(results(&m)[0]["isError"], !written);
    }
}

/// kill -9 while a call waits for approval: nothing is resumed after the
/// restart, and the next turn first marks the cut-off run interrupted
/// (a "not run" result for the open call and an error message).
async fn killed_mid_step_is_marked_interrupted(proxy: &Proxy, s: &mut Setup) {
    proxy.script(vec![Force::Call(
        "write",
        json!({"path": "never.txt", "content": "x"}),
    )]);
    let mut sse = subscribe(&s.api, "k").await;
    // Its answer never comes: the relay dies.
    let api = s.api.clone();
    tokio::spawn(async move {
        let _ = api
            .post("/webchat/rpc")
            .json(&json!({"session": "k", "text": "then die"}))
            .send()
            .await;
    });
    events_until(&mut sse, |e| e["type"] == "tool.approval").await;
    s.relay.kill9();
    s.relay.restart();
    s.api = s.relay.client();
    assert!(!s.ws.join("never.txt").exists());
    let m = messages(&s.api, "k").await;
    assert_eq!(m.last().unwrap()["stopReason"], "toolUse");

    proxy.script(vec![Force::Text]);
    let (status, v) = s
        .api
        .rpc(json!({"session": "k", "text": "are you there"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let m = messages(&s.api, "k").await;
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert!(text_of(&m[2]).contains("Not run: the relay stopped"));
    assert_eq!(m[3]["stopReason"], "error");
    assert!(!s.ws.join("never.txt").exists());
    // The model got a valid history: the open call with its "not run".
    let last = proxy.bodies().last().unwrap().clone();
    assert_eq!(tool_messages(&last).len(), 1);
}

// ---------------------------------------------------------------------------
// Benchmark (ignored): the relay's own cost per tool step, from its debug
// timing log (target `loopchat_relay::timing`): the model's tool_calls
// complete → the tool started, the tool ended → the next model request
// sent, and bash spawn → first output byte. Run against a release relay:
//   cargo build --release -p loopchat-relay &&
//   LOOPCHAT_BIN=target/release/loopchat cargo test -p loopchat-tests --test tools -- --ignored --nocapture

fn percentiles(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={} µs p99={} µs max={} µs",
        v.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn timings(logs: &str, step: &str) -> Vec<u64> {
    logs.lines()
        .filter(|l| l.contains(&format!("step=\"{step}\"")) || l.contains(&format!("step={step} ")))
        .filter_map(|l| {
            let rest = &l[l.find(" us=")? + 4..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test]
#[ignore]
async fn bench_tool_steps() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("note.txt"), "hello").unwrap();
    let relay = Relay::start_with(
        RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(&format!(
            "[agent.openai]\nmax_tokens = 6\n[tools]\nworkspace = \"{}\"\nmax_steps = 100\n[tools.policy]\nbash = \"allow\"\n",
            ws.display()
        ))
        .openai_at(&proxy.base_url())
        .env("RUST_LOG", "info,loopchat_relay::timing=debug"),
    );
    let api = relay.client();
    for round in 0..4 {
        let mut script: Vec<Force> = (0..25)
            .map(|i| {
                if i % 2 == 0 {
                    Force::Call("read", json!({"path": "note.txt"}))
                } else {
                    Force::Call("bash", json!({"command": "echo hi"}))
                }
            })
            .collect();
        script.push(Force::Text);
        proxy.script(script);
        let (s, v) = api
            .rpc(json!({"session": format!("bench{round}"), "text": "go"}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let logs = relay.logs();
    println!(
        "tool_calls → tool started: {}",
        percentiles(timings(&logs, "tool_calls_to_start"))
    );
    println!(
        "tool ended → next request sent: {}",
        percentiles(timings(&logs, "tool_end_to_request"))
    );
    println!(
        "bash spawn → first byte: {}",
        percentiles(timings(&logs, "bash_first_byte"))
    );
}

/// A configured workspace that does not exist stops `serve` with a message
/// naming it, instead of tools that fail on every call.
#[tokio::test]
async fn a_missing_workspace_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        "[tools]\nworkspace = \"/nonexistent/loopchat-ws\"\n",
    )
    .unwrap();
    let err = match Relay::spawn(&home, &[], &[]) {
        Ok(_) => panic!("the relay started with a missing workspace"),
        Err(e) => e,
    };
    assert!(err.contains("/nonexistent/loopchat-ws"), "{err}");
}
