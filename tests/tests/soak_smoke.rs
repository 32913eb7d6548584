//! Issue 7: a CI-sized soak. The soak load generator (`src/bin/soak.rs`)
//! runs for 15 s with 50 clients against a debug relay — turns, streamed
//! turns, info/history/session reads, notification posts and reads, and SSE
//! subscribers that must see every event in order — and must report no error.
//! Latencies and memory are recorded by the real soak (`scripts/soak.sh`,
//! docs/benchmarks.md), never asserted here.

use std::process::Command;

use loopchat_tests::{Relay, RelayOptions, loopchat_bin};
use serde_json::Value;

#[test]
fn fifty_clients_for_fifteen_seconds_without_an_error() {
    // Word-by-word replies, so that streamed turns carry several deltas.
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("soak.json");
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .arg("--home")
        .arg(&relay.home)
        .arg("--loopchat")
        .arg(loopchat_bin())
        .args(["--clients", "50", "--duration", "15s", "--sessions", "8"])
        .args(["--subscribers", "3", "--notify-tokens", "4"])
        .args([
            "--op-timeout",
            "10s",
            "--progress",
            "5s",
            "--no-rss-verdict",
        ])
        .arg("--json")
        .arg(&json)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .output()
        .expect("run the soak binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = relay.logs();
    let tail: Vec<&str> = logs.lines().rev().take(40).collect();
    assert!(
        out.status.success(),
        "soak failed ({}):\n{stdout}\n{stderr}\nrelay log (last lines, newest first):\n{}",
        out.status,
        tail.join("\n")
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON summary")).expect("JSON");
    assert_eq!(summary["errors"], 0, "{stdout}");
    for kind in [
        "rpc",
        "stream",
        "info",
        "history",
        "sessions",
        "notify",
        "notifications",
    ] {
        assert!(
            summary["kinds"][kind]["count"].as_u64().unwrap_or(0) > 0,
            "{kind} never ran:\n{stdout}"
        );
    }
    let subscribers = summary["subscribers"].as_array().expect("subscribers");
    assert_eq!(subscribers.len(), 3);
    for s in subscribers {
        assert!(s["notifications"].as_u64().unwrap_or(0) > 0, "{s}");
        if !s["session"].is_null() {
            assert!(s["sessionEvents"].as_u64().unwrap_or(0) > 0, "{s}");
        }
    }
}
