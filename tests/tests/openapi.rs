//! Issue 7: the OpenAPI document, against the real binary on a real port.
//! (The relay's unit tests check it against the router's own route table;
//! `scripts/schemathesis.sh` checks every answer against it.)

use std::path::Path;
use std::process::Command;

use loopchat_tests::{Relay, loopchat_bin};
use serde_json::Value;

fn committed() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"))
        .expect("docs/openapi.json")
}

#[tokio::test]
async fn served_without_a_token_and_equal_to_the_committed_copy() {
    let relay = Relay::start();
    let r = reqwest::get(relay.url("/webchat/openapi.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let served = r.text().await.unwrap();
    assert!(
        served == committed(),
        "docs/openapi.json differs from what the relay serves: regenerate it with \
         `cargo run -q -p loopchat-relay -- openapi > docs/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // OpenAPI requires each operationId to be unique in the document (clients
    // generated from it name their methods by it).
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "an operationId is used twice: {ids:?}");
    assert!(
        !served.contains(&relay.token),
        "the document holds no secret"
    );

    // The CLI prints the same document, with no relay needed.
    let out = Command::new(loopchat_bin())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap() == served);
}

/// Each documented operation is routed (neither the 404 of an unknown path
/// nor a 405), and each other method on a documented path is a JSON 405
/// with `Allow`. Requests go without a token, so no operation does anything.
#[tokio::test]
async fn documented_operations_are_routed_and_others_are_405() {
    let relay = Relay::start();
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = relay.url(
            &path
                .replace("{path}", "no-such-file")
                .replace("{id}", "no-such-id"),
        );
        for method in ["get", "post", "put", "patch", "delete"] {
            let r = http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let allow = r.headers().get("allow").cloned();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if item.get(method).is_some() {
                operations += 1;
                assert_ne!(status, 405, "{method} {path}");
                assert!(
                    !(status == 404 && body["error"] == "no such endpoint"),
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented");
                assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
                assert!(allow.is_some(), "{method} {path}: 405 without Allow");
            }
        }
    }
    assert!(operations >= 18, "{operations} operations documented");
}
