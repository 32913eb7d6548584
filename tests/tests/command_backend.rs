//! Issue 16 item 6: the `command` backend with `stdin = "json"` gets the
//! session's history on stdin and its stdout streams as deltas, with a real
//! program (python3) run by the real relay.

use std::path::Path;

use loopchat_proto::CommandInput;
use loopchat_tests::{Relay, RelayOptions, SseReader};
use serde_json::{Value, json};

/// Reads the JSON turn, saves it, prints the context it got without a
/// newline, then waits for the test to open the gate before it finishes: a
/// backend that buffered stdout by line (or to the end) would never show the
/// first part while the program still runs.
const AGENT: &str = r#"
import json, os, sys, time
raw = sys.stdin.read()
turn = json.loads(raw)
n = len(os.listdir(os.environ["SAVE_DIR"]))
open(os.path.join(os.environ["SAVE_DIR"], "%03d.json" % n), "w").write(raw)
sys.stdout.write("ctx:" + "|".join(m["role"] + "=" + m["text"] for m in turn["messages"]))
sys.stdout.flush()
gate = os.path.join(os.environ["SAVE_DIR"], "..", "gate-%d" % n)
while not os.path.exists(gate):
    time.sleep(0.01)
sys.stdout.write(" \u2028end\n")
"#;

async fn stream(relay: &Relay, text: &str) -> SseReader {
    let r = relay
        .client()
        .post("/webchat/rpc")
        .json(&json!({"text": text, "session": "cmd", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// Reads until the first delta; nothing may have ended the run before it.
async fn first_delta(s: &mut SseReader) -> String {
    loop {
        let (_, v) = s.next().await.expect("the stream ended before a delta");
        assert!(v["type"] != "done" && v["type"] != "error", "{v}");
        if v["type"] == "delta" {
            return v["text"].as_str().unwrap().to_owned();
        }
    }
}

fn open_gate(dir: &Path, n: usize) {
    std::fs::write(dir.join(format!("gate-{n}")), b"").unwrap();
}

#[tokio::test]
async fn json_history_on_stdin_and_streamed_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let save = tmp.path().join("saved");
    std::fs::create_dir(&save).unwrap();
    let script = tmp.path().join("agent.py");
    std::fs::write(&script, AGENT).unwrap();
    let relay = Relay::start_with(
        RelayOptions::default()
            .env("LOOPCHAT_AGENT", "command")
            .env(
                "LOOPCHAT_AGENT_COMMAND",
                &json!(["python3", script.to_str().unwrap()]).to_string(),
            )
            .env("LOOPCHAT_AGENT_COMMAND_STDIN", "json")
            .env("SAVE_DIR", save.to_str().unwrap()),
    );

    let mut s = stream(&relay, "hello").await;
    assert_eq!(first_delta(&mut s).await, "ctx:user=hello");
    open_gate(tmp.path(), 0);
    let done = s.until("done").await.pop().unwrap();
    let first_reply = "ctx:user=hello \u{2028}end";
    assert_eq!(done["message"]["content"], first_reply, "{done}");

    // The second turn sees the first one, the reply as stored.
    let mut s = stream(&relay, "again").await;
    assert_eq!(
        first_delta(&mut s).await,
        format!("ctx:user=hello|assistant={first_reply}|user=again")
    );
    open_gate(tmp.path(), 1);
    s.until("done").await;

    let input: CommandInput =
        serde_json::from_slice(&std::fs::read(save.join("001.json")).unwrap()).unwrap();
    assert_eq!(input.session, "cmd");
    assert_eq!(input.version, 1);
    assert_eq!(input.thinking.as_str(), "off");
    assert_eq!(input.messages.len(), 3);
    let raw: Value =
        serde_json::from_slice(&std::fs::read(save.join("001.json")).unwrap()).unwrap();
    assert!(
        raw["runId"].as_str().is_some_and(|r| !r.is_empty()),
        "{raw}"
    );
}

#[tokio::test]
async fn a_bad_stdin_mode_stops_the_relay_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let err = match Relay::spawn(
        &home,
        &[
            ("LOOPCHAT_AGENT".into(), "command".into()),
            ("LOOPCHAT_AGENT_COMMAND".into(), r#"["/bin/cat"]"#.into()),
            ("LOOPCHAT_AGENT_COMMAND_STDIN".into(), "xml".into()),
        ],
        &[],
    ) {
        Ok(_) => panic!("the relay started with a bad stdin mode"),
        Err(e) => e,
    };
    assert!(err.contains("LOOPCHAT_AGENT_COMMAND_STDIN"), "{err}");
}
