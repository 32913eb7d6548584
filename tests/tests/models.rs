//! Issue 17 item 5: the model picker and each reply's figures (Decisions 80
//! and 81), against the real llama.cpp server (llama-cpp-python serving the
//! tiny model under two names) behind a recording proxy: what the relay asked
//! for is what the server's request log holds.
//!
//! llama-cpp-python does not honour `stream_options.include_usage`, so a
//! streamed reply's figures are the relay's own (`source: relay`); its
//! non-streamed answer does carry `usage`, which is how the server's counts
//! are checked end to end (the proxy turns one request into a non-streamed
//! one, and the relay reads the JSON completion it gets).

use loopchat_tests::llama::{Llama, MODEL, RecordingProxy, free_port};
use loopchat_tests::{Relay, RelayOptions};
use serde_json::{Value, json};

/// The second name the server serves the model under.
const OTHER: &str = "tiny-llama-b";

fn openai_relay(base_url: &str, home: Option<std::path::PathBuf>) -> Relay {
    let mut opts = RelayOptions::default()
        .config("[agent.openai]\nmax_tokens = 6\ntemperature = 0.0\n")
        .env("LOOPCHAT_AGENT", "openai")
        .env("LOOPCHAT_OPENAI_BASE_URL", base_url)
        .env("LOOPCHAT_OPENAI_MODEL", MODEL);
    opts.home = home;
    Relay::start_with(opts)
}

/// The chat completion requests the proxy forwarded, oldest first.
fn completions(proxy: &RecordingProxy) -> Vec<Value> {
    proxy
        .bodies()
        .into_iter()
        .filter(|b| b.get("messages").is_some())
        .collect()
}

fn transcript_lines(relay: &Relay) -> Vec<Value> {
    let dir = relay.home.join("sessions");
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            lines.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
    }
    lines
}

#[tokio::test]
async fn the_model_switch_reaches_the_server_and_replies_carry_their_figures() {
    let Some(llama) = Llama::start_with_aliases(&[OTHER]).await else {
        return;
    };
    let proxy = RecordingProxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut relay = openai_relay(&proxy.base_url(), Some(home.clone()));
    let api = relay.client();

    // The picker's list is the server's.
    let (status, list) = api.get_json("/webchat/models").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["source"], "server", "{list}");
    assert_eq!(list["models"], json!([MODEL, OTHER]), "{list}");
    assert_eq!(list["default"], MODEL);

    // No choice: the configured model, with the counts asked for.
    let (status, first) = api.rpc(json!({"text": "hi", "session": "m"})).await;
    assert_eq!(status, 200, "{first}");
    let sent = completions(&proxy);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["model"], MODEL);
    assert_eq!(sent[0]["stream_options"], json!({"include_usage": true}));

    // The switch: this turn and the session's next ones ask for OTHER.
    let (status, answer) = api
        .rpc(json!({"text": "and now?", "session": "m", "model": OTHER}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = api.rpc(json!({"text": "still?", "session": "m"})).await;
    assert_eq!(status, 200);
    // Another session is not affected.
    let (status, _) = api.rpc(json!({"text": "hello", "session": "n"})).await;
    assert_eq!(status, 200);
    let models: Vec<Value> = completions(&proxy)
        .iter()
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(
        models,
        json!([MODEL, OTHER, OTHER, MODEL])
            .as_array()
            .unwrap()
            .clone()
    );

    // The server's own counts: one turn answered as one JSON completion.
    proxy.set_rewrite(Some(std::sync::Arc::new(|b: &mut Value| {
        b["stream"] = false.into();
    })));
    let (status, answer) = api.rpc(json!({"text": "count me", "session": "s"})).await;
    assert_eq!(status, 200, "{answer}");
    proxy.set_rewrite(None);

    // A reply answered again under another model: pi's model_change hangs
    // between the message and the new reply, on that branch only.
    let (status, _) = api.rpc(json!({"text": "again", "session": "r"})).await;
    assert_eq!(status, 200);
    let user = loopchat_tests::all_messages(&api, "r").await[0]["id"].clone();
    let (status, again) = api
        .rpc(json!({"text": "", "session": "r", "regenerate": user, "model": OTHER}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(completions(&proxy).last().unwrap()["model"], OTHER);
    let lines = transcript_lines(&relay);
    let change = lines
        .iter()
        .find(|l| l["type"] == "model_change" && l["parentId"] == user)
        .expect("a model_change under the regenerated message");
    assert_eq!(change["modelId"], OTHER, "{change}");
    let reply = lines
        .iter()
        .find(|l| l["id"] == again["message"]["id"])
        .expect("the new reply in the file");
    assert_eq!(reply["parentId"], change["id"], "{reply}");
    assert_eq!(reply["message"]["model"], OTHER, "{reply}");
    let (_, info) = api.get_json("/webchat/info?session=r").await;
    assert_eq!(info["model"], OTHER, "the branch's model: {info}");
    // The same model again writes nothing more.
    let (status, _) = api
        .rpc(json!({"text": "", "session": "r", "regenerate": user, "model": OTHER}))
        .await;
    assert_eq!(status, 200);
    let changes = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["type"] == "model_change" && l["parentId"] == user)
            .count()
    };
    assert_eq!(changes(&transcript_lines(&relay)), 1);

    let (_, info) = api.get_json("/webchat/info?session=m").await;
    assert_eq!(info["model"], OTHER, "{info}");
    let (_, info) = api.get_json("/webchat/info?session=n").await;
    assert_eq!(info["model"], MODEL, "{info}");
    // Stored as pi's model_change entries, and on each reply.
    let lines = transcript_lines(&relay);
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "model_change" && l["modelId"] == OTHER),
        "no model_change to {OTHER}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"]["role"] == "assistant" && l["message"]["model"] == OTHER)
    );

    // A model the server does not list: a clear 400, nothing sent, nothing stored.
    let before = completions(&proxy).len();
    let (status, body) = api
        .rpc(json!({"text": "x", "session": "m", "model": "gpt-nope"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("unknown model \"gpt-nope\"") && error.contains(OTHER),
        "{error}"
    );
    assert_eq!(completions(&proxy).len(), before);
    let user_texts: Vec<Value> = loopchat_tests::all_messages(&api, "m")
        .await
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        user_texts,
        vec![json!("hi"), json!("and now?"), json!("still?")]
    );

    // Each reply's figures, stored with it and served after a restart.
    relay.stop();
    relay.restart();
    let api = relay.client();
    let (_, info) = api.get_json("/webchat/info?session=m").await;
    let replies: Vec<&Value> = info["initialMessages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(replies.len(), 3, "{info}");
    for reply in replies {
        // Streamed: no counts from this server, so the relay's, said so.
        let stats = &reply["stats"];
        assert_eq!(stats["source"], "relay", "{reply}");
        assert!(reply.get("usage").is_none(), "{reply}");
        assert!(stats["durationMs"].is_u64(), "{reply}");
        assert!(
            stats["ttftMs"].as_u64() <= stats["durationMs"].as_u64(),
            "{reply}"
        );
        let pieces = stats["output"].as_u64().unwrap();
        assert!((1..=6).contains(&pieces), "max_tokens is 6: {reply}");
    }
    let (_, info) = api.get_json("/webchat/info?session=s").await;
    let reply = info["initialMessages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    let (stats, usage) = (&reply["stats"], &reply["usage"]);
    assert_eq!(stats["source"], "server", "{reply}");
    let output = usage["output"].as_u64().unwrap();
    assert!((1..=6).contains(&output), "max_tokens is 6: {reply}");
    assert!(usage["input"].as_u64().unwrap() > 0, "{reply}");
    assert_eq!(
        usage["totalTokens"].as_u64().unwrap(),
        usage["input"].as_u64().unwrap() + output
    );
    assert_eq!(stats["output"], output);
    assert_eq!(stats["contextTokens"], usage["totalTokens"]);
    // In the file: pi's `usage` (its shape, cost included) in the message,
    // the timings in the entry's `stats`, which pi does not read.
    let lines = transcript_lines(&relay);
    let stored = lines
        .iter()
        .find(|l| l["message"]["role"] == "assistant" && l["message"]["usage"]["output"] == output)
        .unwrap();
    assert_eq!(stored["message"]["usage"]["input"], usage["input"]);
    assert!(stored["message"]["usage"]["cost"].is_object(), "pi's shape");
    assert_eq!(stored["stats"]["source"], "server");
    assert!(stored["message"].get("stats").is_none());
}

/// A backend that is down gives the picker an empty list and a reason, never
/// an error page; a turn naming a model then says why it cannot be checked.
#[tokio::test]
async fn a_dead_backend_gives_an_empty_list_with_the_reason() {
    let port = free_port();
    let relay = openai_relay(&format!("http://127.0.0.1:{port}/v1"), None);
    let api = relay.client();
    let (status, list) = api.get_json("/webchat/models").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["models"], json!([]));
    assert_eq!(list["source"], "none");
    assert!(
        list["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{port}/v1/models"))),
        "{list}"
    );
    let (status, body) = api.rpc(json!({"text": "x", "model": "other-model"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the model list could not be read"),
        "{body}"
    );
    // A backend without models offers none and takes none.
    let echo = Relay::start();
    let (_, list) = echo.client().get_json("/webchat/models").await;
    assert_eq!(list["source"], "none");
    assert_eq!(list["models"], json!([]));
    let (status, body) = echo.client().rpc(json!({"text": "x", "model": "m"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no choice of model")
    );
}
