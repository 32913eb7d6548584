//! A scripted forwarding proxy in front of the suites' real llama.cpp
//! server, so the tiny model emits exactly the tool calls a test needs.
//!
//! The tiny model only ever calls a tool when it must: for each request the
//! proxy replaces the relay's `tools` with ONE function whose parameters are
//! `enum`-constrained and forces it with `tool_choice`, so the model (under
//! llama.cpp's JSON grammar) emits exactly the call of the script. A step
//! that is `Text` strips the tools and the model answers with words. The
//! proxy records every request body the relay sent, so each test can check
//! what the model was told.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
/// What the model is made to do for one request.
#[derive(Clone, Debug)]
pub enum Force {
    /// Call `name` with exactly these arguments.
    Call(&'static str, Value),
    /// Answer in words (no tools offered).
    Text,
}

struct Script {
    steps: Mutex<VecDeque<Force>>,
    bodies: Mutex<Vec<Value>>,
    upstream: SocketAddr,
}

pub struct Proxy {
    port: u16,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Script {
            steps: Mutex::new(VecDeque::new()),
            bodies: Mutex::new(Vec::new()),
            upstream,
        });
        let s = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(forward(sock, s.clone()));
            }
        });
        Proxy { port, script, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn script(&self, steps: Vec<Force>) {
        let mut q = self.script.steps.lock().unwrap();
        assert!(q.is_empty(), "the last script was not used up: {q:?}");
        q.extend(steps);
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.script.bodies.lock().unwrap().clone()
    }

    /// Drops what is left of the script (a test that stopped a run early).
    pub fn clear(&self) {
        self.script.steps.lock().unwrap().clear();
    }

    pub fn left(&self) -> usize {
        self.script.steps.lock().unwrap().len()
    }
}

/// The forced tool: one function, every argument an enum of its one value.
fn forced(name: &str, args: &Value) -> (Value, Value) {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for (k, v) in args.as_object().unwrap() {
        let ty = if v.is_number() { "number" } else { "string" };
        props.insert(k.clone(), json!({"type": ty, "enum": [v]}));
        required.push(k.clone());
    }
    let tools = json!([{"type": "function", "function": {
        "name": name,
        "description": "forced by the test",
        "parameters": {"type": "object", "properties": props, "required": required},
    }}]);
    (
        tools,
        json!({"type": "function", "function": {"name": name}}),
    )
}

/// One request per connection (the answer says `connection: close`).
async fn forward(mut client: TcpStream, script: Arc<Script>) {
    {
        let mut buf = Vec::new();
        // One request: head, then Content-Length bytes.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 8192];
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
        script.bodies.lock().unwrap().push(body.clone());
        let step = script
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Force::Text);
        let obj = body.as_object_mut().unwrap();
        match &step {
            Force::Call(name, args) => {
                let (tools, choice) = forced(name, args);
                obj.insert("tools".into(), tools);
                obj.insert("tool_choice".into(), choice);
                obj.insert("max_tokens".into(), 400.into());
            }
            Force::Text => {
                obj.remove("tools");
                obj.remove("tool_choice");
                obj.insert("max_tokens".into(), 6.into());
            }
        }
        let http = reqwest::Client::new();
        let up = http
            .post(format!("http://{}/v1/chat/completions", script.upstream))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = up.status().as_u16();
        let ctype = up
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/event-stream")
            .to_owned();
        let head =
            format!("HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\nconnection: close\r\n\r\n");
        if client.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut stream = up.bytes_stream();
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            if client.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = client.shutdown().await;
    }
}
