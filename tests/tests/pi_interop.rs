//! Issue 15: loopchat and the REAL pi agent (`@mariozechner/pi-coding-agent`
//! 0.73.1 from npm, pinned in tests/pi) share session files both ways.
//!
//! pi runs isolated (`PI_CODING_AGENT_DIR`, `PI_OFFLINE=1`,
//! `PI_TELEMETRY=0`) against the suites' real llama.cpp server through a
//! `models.json` provider; a recording proxy in front of the server shows
//! what pi sent its model. The server answers one request at a time, so the
//! steps run in order inside one test. `LOOPCHAT_SKIP_LLAMA=1` skips it
//! with a printed reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use loopchat_tests::llama::{Llama, MODEL, RecordingProxy};
use loopchat_tests::{Api, Relay};
use serde_json::{Value, json};

fn pi_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pi/node_modules/.bin/pi");
    assert!(
        bin.exists(),
        "the pinned pi is not installed ({}): run scripts/install-test-deps.sh",
        bin.display()
    );
    bin
}

/// An isolated pi: its own agent dir with a `models.json` naming the proxy.
struct Pi {
    dir: tempfile::TempDir,
}

impl Pi {
    fn new(base_url: &str) -> Pi {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::create_dir_all(&agent).unwrap();
        let models = json!({"providers": {"llama": {
            "baseUrl": base_url,
            "api": "openai-completions",
            "apiKey": "none",
            "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false},
            // A window large enough that pi sends the whole conversation
            // rather than compacting it first.
            "models": [{"id": MODEL, "input": ["text", "image"], "contextWindow": 1_000_000, "maxTokens": 24}],
        }}});
        std::fs::write(agent.join("models.json"), models.to_string()).unwrap();
        Pi { dir }
    }

    /// `pi -p <prompt>` on `session`; its output, or a panic with it.
    async fn prompt(&self, session: &Path, prompt: &str) -> String {
        self.prompt_with(session, prompt, &["--no-tools"]).await
    }

    async fn prompt_with(&self, session: &Path, prompt: &str, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::new(pi_bin());
        cmd.args(["--session"])
            .arg(session)
            .args(["--provider", "llama", "--model", MODEL])
            .args(args)
            .args(["-p", prompt])
            .current_dir(self.dir.path())
            .env("PI_CODING_AGENT_DIR", self.dir.path().join("agent"))
            .env("PI_OFFLINE", "1")
            .env("PI_TELEMETRY", "0")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // An external process: bounded.
        let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
            .await
            .expect("pi finished within 240 s")
            .expect("run pi");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pi failed ({}):\n{text}", out.status);
        text
    }
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a line pi can parse"))
        .collect()
}

async fn rpc(api: &Api, body: Value) -> Value {
    let (status, v) = api.rpc(body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The texts of a chat completion request's messages (string content or
/// text parts), and its image URLs.
fn request_texts(body: &Value) -> (Vec<String>, Vec<String>) {
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(parts) => {
                for p in parts {
                    if let Some(t) = p["text"].as_str() {
                        texts.push(t.to_owned());
                    }
                    if let Some(u) = p["image_url"]["url"].as_str() {
                        images.push(u.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    (texts, images)
}

/// What loopchat shows of a session: (role, text) of every message.
async fn shown(api: &Api, session: &str) -> Vec<(String, String)> {
    loopchat_tests::all_messages(api, session)
        .await
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or_default().to_owned(), text)
        })
        .collect()
}

#[tokio::test]
async fn real_pi_and_loopchat_share_sessions() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = RecordingProxy::start(llama.addr()).await;
    let pi = Pi::new(&proxy.base_url());

    // --- loopchat writes a session with an image; pi continues it.
    let relay = Relay::start();
    let api = relay.client();
    let png = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../webchat-dist/icons/icon-192.png"),
    )
    .unwrap();
    let up: Value = api
        .post("/webchat/attachments")
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image_id = up["id"].as_str().expect("uploaded").to_owned();
    let first = rpc(
        &api,
        json!({"session": "pi", "text": "what is in this picture", "attachments": [{"id": image_id}]}),
    )
    .await;
    rpc(
        &api,
        json!({"session": "pi", "text": "second question", "id": "client-2"}),
    )
    .await;
    let session_id = first["sessionId"].as_str().unwrap().to_owned();
    let file = relay
        .home
        .join("sessions")
        .join(format!("{session_id}.jsonl"));
    // Edit the second question: a new branch under the first reply.
    let first_reply = first["message"]["id"].as_str().unwrap().to_owned();
    let edited = rpc(
        &api,
        json!({"session": "pi", "text": "second question, edited", "parentId": first_reply}),
    )
    .await;
    let edited_user = edited["message"]["parentId"].as_str().unwrap().to_owned();
    // And regenerate its answer: a second child of that message.
    let again = rpc(
        &api,
        json!({"session": "pi", "text": "", "regenerate": edited_user}),
    )
    .await;
    assert_eq!(again["message"]["parentId"], edited_user.as_str());
    assert_ne!(again["message"]["id"], edited["message"]["id"]);
    // Bad branch requests are refused and write nothing.
    let size = std::fs::metadata(&file).unwrap().len();
    for bad in [
        json!({"session": "pi", "text": "x", "parentId": "nope"}),
        json!({"session": "pi", "text": "", "regenerate": first_reply}),
        json!({"session": "pi", "text": "", "regenerate": "nope"}),
        json!({"session": "pi", "text": "x", "regenerate": edited_user}),
    ] {
        let (status, v) = api.rpc(bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {v}");
    }
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    let texts: Vec<String> = shown(&api, "pi")
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        texts,
        [
            "what is in this picture",
            "echo: what is in this picture",
            "second question, edited",
            "echo: second question, edited"
        ]
    );
    let last_shown = loopchat_tests::all_messages(&api, "pi").await;
    assert_eq!(
        last_shown[3]["id"], again["message"]["id"],
        "the leaf's path"
    );
    let before = std::fs::read(&file).unwrap();
    let ours = lines(&before);
    assert_eq!(ours[0]["type"], "session");
    assert_eq!(ours[0]["version"], 3);
    let our_leaf = ours.last().unwrap()["id"].as_str().unwrap().to_owned();

    pi.prompt(&file, "third question").await;

    // pi sent loopchat's turns (and the image's bytes) to its model.
    let bodies = proxy.bodies();
    let sent = bodies
        .iter()
        .find(|b| request_texts(b).0.iter().any(|t| t == "third question"))
        .unwrap_or_else(|| panic!("no request had the new prompt: {bodies:?}"));
    let (texts, images) = request_texts(sent);
    for said in [
        "what is in this picture",
        "echo: what is in this picture",
        "second question, edited",
        "echo: second question, edited",
        "third question",
    ] {
        assert!(
            texts.iter().any(|t| t == said),
            "{said:?} not in pi's context: {texts:?}"
        );
    }
    for abandoned in ["second question", "echo: second question"] {
        assert!(
            !texts.iter().any(|t| t == abandoned),
            "pi followed loopchat's branch: {texts:?}"
        );
    }
    assert_eq!(
        texts
            .iter()
            .filter(|t| *t == "echo: second question, edited")
            .count(),
        1,
        "one of the two regenerated siblings"
    );
    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    assert_eq!(
        images,
        [data_url],
        "the image went to the model as pi sends one"
    );

    // pi kept every line loopchat wrote and hung its own under our leaf.
    let after = std::fs::read(&file).unwrap();
    // pi keeps loopchat's extra fields (it never rewrites a v3 file).
    assert!(ours.iter().any(|e| e["clientId"] == "client-2"));
    assert!(ours.iter().any(|e| e["replyTo"].is_string()));
    assert!(after.starts_with(&before), "pi rewrote loopchat's lines");
    let theirs = lines(&after[before.len()..]);
    assert!(!theirs.is_empty(), "pi appended nothing");
    assert_eq!(theirs[0]["parentId"], our_leaf.as_str());
    for pair in theirs.windows(2) {
        assert_eq!(
            pair[1]["parentId"], pair[0]["id"],
            "pi's lines form a chain"
        );
    }
    let reply = theirs
        .iter()
        .rfind(|e| e["message"]["role"] == "assistant")
        .expect("pi stored its reply");
    let reply_text = reply["message"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();

    // loopchat follows what pi appended (read on the next look at the file).
    let deadline = Instant::now() + Duration::from_secs(10);
    let conversation = loop {
        let c = shown(&api, "pi").await;
        if c.len() >= 6 || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let roles: Vec<&str> = conversation.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert_eq!(conversation[2].1, "second question, edited");
    assert_eq!(conversation[4].1, "third question");
    assert_eq!(conversation[5].1, reply_text);

    // And loopchat's next turn continues pi's leaf.
    let next = rpc(&api, json!({"session": "pi", "text": "fourth"})).await;
    let now = std::fs::read(&file).unwrap();
    let added = lines(&now[after.len()..]);
    assert_eq!(added[0]["parentId"], theirs.last().unwrap()["id"]);
    for pair in added.windows(2) {
        assert_eq!(pair[1]["parentId"], pair[0]["id"]);
    }
    assert_eq!(next["message"]["parentId"], added[added.len() - 2]["id"]);
    drop(relay);

    // --- pi writes a session with a tool call and branches it; loopchat
    // shows the live path only.
    pi_session_with_a_tool_call_and_a_branch(&proxy, &pi).await;

    // --- loopchat's own tool loop runs `read`; pi continues that session.
    pi_continues_loopchats_tool_calls(&llama, &proxy, &pi).await;
    drop(llama);
}

/// Issue 16: a transcript whose tool call and result loopchat's tool loop
/// wrote is continued by the real `pi --session`, which sends the model the
/// assistant's call and the result, in order, under the same id.
async fn pi_continues_loopchats_tool_calls(llama: &Llama, proxy: &RecordingProxy, pi: &Pi) {
    use loopchat_tests::forcing::{Force, Proxy};
    let forcing = Proxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("notes.txt"), "loopchat wrote this note\n").unwrap();
    let relay = Relay::start_with(
        loopchat_tests::RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(&format!(
            "[agent.openai]\nmax_tokens = 6\n[tools]\nworkspace = \"{}\"\nmax_steps = 4\n",
            ws.display()
        ))
        .env("LOOPCHAT_AGENT", "openai")
        .env("LOOPCHAT_OPENAI_BASE_URL", &forcing.base_url())
        .env("LOOPCHAT_OPENAI_MODEL", MODEL),
    );
    let api = relay.client();
    forcing.script(vec![
        Force::Call("read", json!({"path": "notes.txt"})),
        Force::Text,
    ]);
    let turn = rpc(&api, json!({"session": "acts", "text": "read my notes"})).await;
    assert_eq!(forcing.left(), 0);
    let file = relay
        .home
        .join("sessions")
        .join(format!("{}.jsonl", turn["sessionId"].as_str().unwrap()));
    let before = std::fs::read(&file).unwrap();
    let ours = lines(&before);
    let message = |e: &Value| e["message"].clone();
    let call = ours
        .iter()
        .map(message)
        .find(|m| m["role"] == "assistant" && m["content"][0]["type"] == "toolCall")
        .unwrap_or_else(|| panic!("loopchat stored no tool call: {ours:?}"));
    assert_eq!(call["stopReason"], "toolUse");
    let call_id = call["content"][0]["id"].as_str().unwrap().to_owned();
    let result = ours
        .iter()
        .map(message)
        .find(|m| m["role"] == "toolResult")
        .expect("loopchat stored the result");
    assert_eq!(result["toolCallId"], call_id.as_str());
    let our_leaf = ours.last().unwrap()["id"].as_str().unwrap().to_owned();

    proxy.set_rewrite(Some(std::sync::Arc::new(content_beside_tool_calls)));
    pi.prompt(&file, "and now continue").await;
    proxy.set_rewrite(None);

    let bodies = proxy.bodies();
    let sent = bodies
        .iter()
        .rfind(|b| request_texts(b).0.iter().any(|t| t == "and now continue"))
        .unwrap_or_else(|| panic!("no request had the new prompt: {bodies:?}"));
    let msgs = sent["messages"].as_array().unwrap();
    let at = msgs
        .iter()
        .position(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .unwrap_or_else(|| panic!("pi sent no tool call: {msgs:?}"));
    let calls = msgs[at]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["id"], call_id.as_str(), "{calls:?}");
    assert_eq!(calls[0]["function"]["name"], "read");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"path": "notes.txt"}));
    let answer = &msgs[at + 1];
    assert_eq!(
        answer["role"], "tool",
        "the result right after the call: {msgs:?}"
    );
    assert_eq!(answer["tool_call_id"], call_id.as_str());
    assert!(
        answer["content"]
            .to_string()
            .contains("loopchat wrote this note"),
        "{answer}"
    );
    let asked = msgs
        .iter()
        .position(|m| m["role"] == "user" && m["content"].to_string().contains("read my notes"))
        .expect("the question before the call");
    assert!(asked < at, "{msgs:?}");
    assert!(
        msgs.last().unwrap()["content"]
            .to_string()
            .contains("and now continue"),
        "{msgs:?}"
    );

    // pi kept loopchat's lines and hung its own under our leaf.
    let after = std::fs::read(&file).unwrap();
    assert!(after.starts_with(&before), "pi rewrote loopchat's lines");
    let theirs = lines(&after[before.len()..]);
    assert_eq!(theirs[0]["parentId"], our_leaf.as_str());
    assert!(
        theirs.iter().any(|e| e["message"]["role"] == "assistant"),
        "pi stored no reply: {theirs:?}"
    );
}

/// The server makes a tool call reliably only when forced, with arguments
/// its grammar can only fill one way; and it rejects an assistant message
/// with `tool_calls` and `content: null`. The proxy arranges both.
fn force_one_bash_call(body: &mut Value) {
    content_beside_tool_calls(body);
    let asks = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "user");
    if body.get("tools").is_none() {
        return;
    }
    if asks {
        body["tools"] = json!([{"type": "function", "function": {
            "name": "bash",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {
                "command": {"type": "string", "enum": ["echo hello"]}
            }, "required": ["command"]},
        }}]);
        body["tool_choice"] = json!({"type": "function", "function": {"name": "bash"}});
    } else {
        // The tool's result is in: a plain reply ends the turn.
        body.as_object_mut().unwrap().remove("tools");
        body.as_object_mut().unwrap().remove("tool_choice");
    }
}

fn content_beside_tool_calls(body: &mut Value) {
    for m in body["messages"].as_array_mut().into_iter().flatten() {
        if m.get("tool_calls").is_some() && m["content"].is_null() {
            m["content"] = json!("");
        }
    }
}

/// Runs pi's SessionManager (pi's own code, from node) on `file`; its
/// stdout.
async fn session_manager(file: &Path, script: &str) -> String {
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pi/node_modules/@mariozechner/pi-coding-agent/dist/core/session-manager.js");
    let code = format!(
        "import {{ SessionManager }} from {module:?};\n\
         const sm = SessionManager.open({file:?});\n{script}",
        module = module.display().to_string(),
        file = file.display().to_string(),
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .args(["--input-type=module", "-e", &code])
            .output(),
    )
    .await
    .expect("node finished")
    .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn pi_session_with_a_tool_call_and_a_branch(proxy: &RecordingProxy, pi: &Pi) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let sessions = home.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let session_id = "0b5e2c4d-7a1f-4e3b-9c8d-112233445566";
    let file = sessions.join(format!("{session_id}.jsonl"));
    std::fs::write(
        sessions.join("sessions.json"),
        json!({"made-by-pi": {"sessionId": session_id, "updatedAt": 1}}).to_string(),
    )
    .unwrap();

    proxy.set_rewrite(Some(std::sync::Arc::new(force_one_bash_call)));
    pi.prompt_with(&file, "run echo", &["--tools", "bash"])
        .await;
    proxy.set_rewrite(Some(std::sync::Arc::new(content_beside_tool_calls)));
    pi.prompt(&file, "second prompt").await;
    proxy.set_rewrite(None);
    let entries = lines(&std::fs::read(&file).unwrap());
    let messages: Vec<&Value> = entries.iter().filter(|e| e["type"] == "message").collect();
    let roles: Vec<&str> = messages
        .iter()
        .map(|e| e["message"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "user",
            "assistant"
        ],
        "pi made one tool call: {entries:?}"
    );
    assert_eq!(messages[1]["message"]["content"][0]["type"], "toolCall");
    let end_of_first_turn = messages[3]["id"].as_str().unwrap().to_owned();
    let second_reply = messages[5]["id"].as_str().unwrap().to_owned();

    // A branch from the end of the first turn, as pi's /tree does.
    session_manager(
        &file,
        &format!(
            "sm.branchWithSummary({end_of_first_turn:?}, 'went another way');\n\
             sm.appendMessage({{role: 'user', content: [{{type: 'text', text: 'alternative prompt'}}], timestamp: Date.now()}});\n\
             sm.appendMessage({{role: 'assistant', content: [{{type: 'text', text: 'alternative answer'}}], api: 'openai-completions', provider: 'llama', model: {MODEL:?}, usage: {{input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: {{input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0}}}}, stopReason: 'stop', timestamp: Date.now()}});\n\
             sm.appendLabelChange({end_of_first_turn:?}, 'fork point');"
        ),
    )
    .await;

    let relay = Relay::start_with(loopchat_tests::RelayOptions {
        home: Some(home.clone()),
        ..Default::default()
    });
    let api = relay.client();
    let conversation = shown(&api, "made-by-pi").await;
    let roles: Vec<&str> = conversation.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "system",
            "user",
            "assistant"
        ],
        "{conversation:?}"
    );
    assert_eq!(conversation[0].1, "run echo");
    assert_eq!(conversation[2].1, "hello\n", "the tool's output");
    assert_eq!(conversation[4].1, "went another way");
    assert_eq!(conversation[5].1, "alternative prompt");
    assert_eq!(conversation[6].1, "alternative answer");
    assert!(
        !conversation.iter().any(|(_, t)| t == "second prompt"),
        "the abandoned branch is not shown"
    );
    let all = loopchat_tests::all_messages(&api, "made-by-pi").await;
    assert_eq!(
        all[1]["content"][0]["type"], "toolCall",
        "the tool call is shown"
    );
    assert_eq!(all[1]["content"][0]["name"], "bash");

    // pi moves back to the other branch (its next entry hangs there):
    // loopchat follows the file and shows that path.
    session_manager(
        &file,
        &format!("sm.branch({second_reply:?});\nsm.appendSessionInfo('back again');"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let conversation = loop {
        let c = shown(&api, "made-by-pi").await;
        if c.iter().any(|(_, t)| t == "second prompt") || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let roles: Vec<&str> = conversation.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "user",
            "assistant"
        ],
        "{conversation:?}"
    );
    assert_eq!(conversation[4].1, "second prompt");

    // pi's session_info is the session's title; renaming writes one that pi
    // reads as the name.
    let title = |list: &Value| {
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == "made-by-pi")
            .map(|s| s["title"].clone())
            .unwrap()
    };
    let (_, list) = api.get_json("/webchat/sessions").await;
    assert_eq!(title(&list), "back again");
    let renamed = api
        .post("/webchat/rename")
        .json(&json!({"session": "made-by-pi", "name": "  renamed by loopchat "}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let (_, list) = api.get_json("/webchat/sessions").await;
    assert_eq!(title(&list), "renamed by loopchat");
    assert_eq!(
        session_manager(&file, "console.log(sm.getSessionName());").await,
        "renamed by loopchat"
    );
    let size = std::fs::metadata(&file).unwrap().len();
    for (body, status) in [
        (json!({"session": "made-by-pi", "name": "bell\u{7}"}), 400),
        (
            json!({"session": "made-by-pi", "name": "x".repeat(201)}),
            400,
        ),
        (json!({"session": "nobody", "name": "x"}), 404),
        (json!({"session": "made-by-pi"}), 400),
    ] {
        let r = api
            .post("/webchat/rename")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
    }
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        size,
        "refused renames write nothing"
    );
}
