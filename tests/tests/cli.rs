//! Issue 2/3: the `loopchat` client commands against a real relay.

use std::process::{Command, Output, Stdio};

use loopchat_tests::{Relay, RelayOptions, loopchat_bin};
use serde_json::Value;

fn cli(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(loopchat_bin())
        .args(args)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run loopchat")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn send_history_sessions_info() {
    let relay = Relay::start();
    let o = cli(
        &relay.home,
        &["send", "hello from the cli", "--session", "c1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "echo: hello from the cli\n");

    let o = cli(
        &relay.home,
        &["send", "again", "--session", "c1", "--json", "--id", "k-1"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["message"]["content"], "echo: again");
    let o2 = cli(
        &relay.home,
        &["send", "again", "--session", "c1", "--json", "--id", "k-1"],
    );
    let v2: Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(
        v["message"]["id"], v2["message"]["id"],
        "--id makes retries idempotent"
    );

    let o = cli(&relay.home, &["history", "--session", "c1", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 4);
    let o = cli(&relay.home, &["history", "--session", "c1"]);
    assert!(stdout(&o).contains("agent ("), "{}", stdout(&o));

    let o = cli(&relay.home, &["sessions", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sessions"][0]["key"], "c1");

    let o = cli(&relay.home, &["info", "--json"]);
    assert!(o.status.success());
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["port"], relay.port);
    assert_eq!(d["token"], relay.token.as_str());
    assert_eq!(d["pid"], relay.pid());
    let o = cli(&relay.home, &["info"]);
    assert!(stdout(&o).contains(&format!("http://127.0.0.1:{}/webchat/", relay.port)));
    assert!(
        !stdout(&o).contains(&relay.token),
        "human info hides the token"
    );
}

#[test]
fn stream_prints_tokens() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "1"));
    let o = cli(&relay.home, &["send", "one two three", "--stream"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "echo: one two three\n");
    let o = cli(&relay.home, &["send", "x", "--stream", "--json"]);
    let types: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("message"));
    assert_eq!(types.last().map(String::as_str), Some("done"));
}

#[test]
fn explicit_url_and_token() {
    let relay = Relay::start();
    let empty = tempfile::tempdir().unwrap();
    let url = relay.url("/webchat/");
    let o = cli(
        empty.path(),
        &["send", "via url", "--url", &url, "--token", &relay.token],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "echo: via url\n");
    let o = Command::new(loopchat_bin())
        .args(["sessions", "--json"])
        .env("LOOPCHAT_HOME", empty.path())
        .env("LOOPCHAT_URL", &url)
        .env("LOOPCHAT_TOKEN", &relay.token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(
        empty.path(),
        &["send", "x", "--url", &url, "--token", "wrong"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    let o = cli(empty.path(), &["send", "x", "--url", &url]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
}

#[test]
fn no_relay_and_stale_discovery_file() {
    let empty = tempfile::tempdir().unwrap();
    let o = cli(empty.path(), &["send", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("loopchat serve"), "{}", stderr(&o));

    let mut relay = Relay::start();
    let home = relay.home.clone();
    let saved = std::fs::read(home.join("relay.json")).unwrap();
    relay.kill9();
    // A crashed relay leaves its file behind: it must be seen as stale.
    std::fs::write(home.join("relay.json"), saved).unwrap();
    let o = cli(&home, &["info"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("is gone") && err.contains("stale") && err.contains("loopchat serve"),
        "{err}"
    );

    let o = cli(
        &home,
        &["send", "  ", "--url", "http://127.0.0.1:9/", "--token", "t"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the relay"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn relay_errors_are_reported_with_their_code() {
    let relay = Relay::start();
    let o = cli(&relay.home, &["send", "   "]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("empty_text"), "{}", stderr(&o));
    let o = cli(&relay.home, &["send", "x", "--session", "bad key"]);
    assert!(stderr(&o).contains("invalid_session_key"), "{}", stderr(&o));
    let o = cli(&relay.home, &["send", "x", "--thinking", "max"]);
    assert!(stderr(&o).contains("thinking"), "{}", stderr(&o));
}
