//! The `pi` backend: the real pi coding agent (`pi --mode rpc`), one process
//! per active session, on that session's transcript (`--session <file>`).
//!
//! pi owns the transcript while it runs: it appends the user's message, its
//! replies, tool calls and tool results itself, and the relay reads them
//! through the store's foreign-writer path (see `pipeline::turn`). This
//! module only speaks the RPC: commands as JSON lines on pi's stdin, events
//! as JSON lines on its stdout.
//!
//! The stream is split on `\n` only. pi's JSON may carry U+2028/U+2029 raw
//! inside strings, and a reader that also split on those (as Node's
//! `readline` does) would cut a record in two.
//!
//! A process serves its session's turns one after another (the pipeline
//! runs them one at a time) and exits once the session has been idle for
//! `idle_exit_secs`: its stdin is closed, which pi takes as the signal to
//! shut down. A process that dies mid-turn ends the turn with an error; the
//! next turn starts a new one, which reads the file again.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use loopchat_proto::{AgentInfo, ThinkingLevel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream, SetupError};
use crate::config::PiConfig;
use crate::diagnostics::read_tail;

/// Largest RPC record read from pi. Each `message_update` carries the whole
/// message so far, so a long reply makes long lines; one beyond this is a
/// broken peer, not a reply.
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Bytes of pi's stderr kept for the error message.
const STDERR_KEEP: usize = 2048;
/// How long a command's answer (not a turn) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PiAgent {
    config: PiConfig,
    procs: Arc<Mutex<HashMap<String, Arc<PiProc>>>>,
}

impl PiAgent {
    pub fn new(config: PiConfig) -> Result<Self, SetupError> {
        if config.command.is_empty() {
            return Err(SetupError::NoPiCommand);
        }
        Ok(Self {
            config,
            procs: Arc::default(),
        })
    }
}

/// One record from pi, or its end.
enum Record {
    Json(Value),
    /// stdout closed and the process is gone: how it ended.
    Exited(String),
}

struct PiProc {
    pid: Option<u32>,
    /// `None` once closed (idle exit).
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    /// Taken by the turn running now, so that one turn reads at a time.
    records: tokio::sync::Mutex<mpsc::Receiver<Record>>,
    alive: watch::Receiver<bool>,
    /// Milliseconds since `born` of the last turn's end.
    last_used_ms: AtomicU64,
    born: Instant,
    busy: AtomicBool,
    thinking: Mutex<Option<ThinkingLevel>>,
    kill: tokio_util::sync::CancellationToken,
    next_id: AtomicU64,
}

impl PiProc {
    fn touch(&self) {
        self.last_used_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_used_ms.load(Ordering::SeqCst);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    fn command_id(&self) -> String {
        format!("lc-{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    async fn send(&self, command: &Value) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(command).unwrap_or_default();
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        let Some(stdin) = stdin.as_mut() else {
            return Err(AgentError::Failed("pi has exited".into()));
        };
        stdin
            .write_all(&line)
            .await
            .map_err(|e| AgentError::Failed(format!("cannot write to pi: {e}")))
    }
}

impl Agent for PiAgent {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            backend: "pi".into(),
            model: match (&self.config.provider, &self.config.model) {
                (Some(p), Some(m)) => Some(format!("{p}/{m}")),
                (None, Some(m)) => Some(m.clone()),
                _ => None,
            },
        }
    }

    fn writes_transcript(&self) -> bool {
        true
    }

    fn run(&self, request: AgentRequest) -> AgentStream {
        let (tx, rx) = mpsc::channel(256);
        let config = self.config.clone();
        let procs = self.procs.clone();
        tokio::spawn(async move {
            if let Err(e) = turn(&config, &procs, request, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

type Sender = mpsc::Sender<Result<AgentEvent, AgentError>>;

async fn turn(
    config: &PiConfig,
    procs: &Arc<Mutex<HashMap<String, Arc<PiProc>>>>,
    request: AgentRequest,
    tx: &Sender,
) -> Result<(), AgentError> {
    let Some(path) = request.transcript.clone() else {
        return Err(AgentError::Failed(
            "the pi backend needs the session's transcript file".into(),
        ));
    };
    let proc = process_for(config, procs, &request.session_key, path).await?;
    proc.busy.store(true, Ordering::SeqCst);
    let mut records = proc.records.lock().await;
    let outcome = drive(config, &proc, &mut records, &request, tx).await;
    drop(records);
    proc.touch();
    proc.busy.store(false, Ordering::SeqCst);
    if outcome.is_err() {
        // Whatever state pi is in after a failed turn, the next turn starts
        // from the file: a fresh process reads everything in it, including
        // what the relay may have to add for this turn.
        proc.kill.cancel();
    }
    outcome
}

/// The session's running pi, started if there is none.
async fn process_for(
    config: &PiConfig,
    procs: &Arc<Mutex<HashMap<String, Arc<PiProc>>>>,
    key: &str,
    path: PathBuf,
) -> Result<Arc<PiProc>, AgentError> {
    let existing = procs.lock().get(key).cloned();
    if let Some(p) = existing
        && *p.alive.borrow()
    {
        // Busy before looking at stdin, which the idle exit closes only
        // while not busy (checked under the same lock): either this turn
        // sees it closed and starts another pi, or the idle exit sees the
        // turn and leaves the process alone.
        p.busy.store(true, Ordering::SeqCst);
        if p.stdin.lock().await.is_some() {
            return Ok(p);
        }
        p.busy.store(false, Ordering::SeqCst);
    }
    check_header(&path)?;
    let proc = start(config, procs, key, &path)?;
    // Retrying a turn is the user's call (their message is already in
    // the file); a quiet retry by pi would run a second agent turn the
    // relay did not ask for.
    let id = proc.command_id();
    proc.send(&json!({"id": id, "type": "set_auto_retry", "enabled": false}))
        .await?;
    if let (Some(provider), Some(model)) = (&config.provider, &config.model) {
        let id = proc.command_id();
        proc.send(&json!({"id": id, "type": "set_model", "provider": provider, "modelId": model}))
            .await?;
        let mut records = proc.records.lock().await;
        expect_response(&mut records, &id, "set_model").await?;
    }
    Ok(proc)
}

fn start(
    config: &PiConfig,
    procs: &Arc<Mutex<HashMap<String, Arc<PiProc>>>>,
    key: &str,
    path: &std::path::Path,
) -> Result<Arc<PiProc>, AgentError> {
    let mut cmd = Command::new(&config.command[0]);
    cmd.args(&config.command[1..])
        .arg("--mode")
        .arg("rpc")
        .arg("--session")
        .arg(path);
    if let Some(p) = &config.provider {
        cmd.arg("--provider").arg(p);
    }
    if let Some(m) = &config.model {
        cmd.arg("--model").arg(m);
    }
    if let Some(dir) = &config.cwd {
        cmd.current_dir(dir);
    }
    // The relay's own settings are none of the agent's business.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LOOPCHAT_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .env("LOOPCHAT_SESSION", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            AgentError::Failed(format!("cannot start pi ({:?}): {e}", config.command[0]))
        })?;
    let pid = child.id();
    tracing::info!(session = %key, pid, "started pi");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (records_tx, records_rx) = mpsc::channel(1024);
    let (alive_tx, alive_rx) = watch::channel(true);
    let kill = tokio_util::sync::CancellationToken::new();
    let proc = Arc::new(PiProc {
        pid,
        stdin: tokio::sync::Mutex::new(stdin),
        records: tokio::sync::Mutex::new(records_rx),
        alive: alive_rx,
        last_used_ms: AtomicU64::new(0),
        born: Instant::now(),
        busy: AtomicBool::new(false),
        thinking: Mutex::new(None),
        kill: kill.clone(),
        next_id: AtomicU64::new(1),
    });
    procs.lock().insert(key.to_owned(), proc.clone());
    tokio::spawn(supervise(
        child,
        stdout,
        stderr,
        records_tx,
        alive_tx,
        kill,
        procs.clone(),
        key.to_owned(),
        Arc::downgrade(&proc),
    ));
    tokio::spawn(idle_exit(
        Arc::downgrade(&proc),
        Duration::from_secs(config.idle_exit_secs.max(1)),
    ));
    Ok(proc)
}

/// pi replaces a file whose first line is not a session header with a new,
/// empty session: a transcript written before the store wrote pi v3 files
/// would be lost. Refuse instead; an empty (or missing) file is a new
/// session.
fn check_header(path: &std::path::Path) -> Result<(), AgentError> {
    use std::io::BufRead;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(AgentError::Failed(format!(
                "cannot read the transcript: {e}"
            )));
        }
    };
    let mut first = Vec::new();
    std::io::BufReader::new(std::io::Read::take(file, 1024 * 1024))
        .read_until(b'\n', &mut first)
        .map_err(|e| AgentError::Failed(format!("cannot read the transcript: {e}")))?;
    if first.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let header = serde_json::from_slice::<Value>(first.trim_ascii_end()).ok();
    if header.as_ref().is_some_and(|h| h["type"] == "session") {
        return Ok(());
    }
    Err(AgentError::Failed(
        "this session's transcript does not start with a pi session header, and pi would \
         replace it with an empty session; continue it with another backend, or start a new session"
            .into(),
    ))
}

/// Reads pi's records until its stdout closes, then reports how it ended
/// and takes it out of the map.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    mut child: Child,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    records: mpsc::Sender<Record>,
    alive: watch::Sender<bool>,
    kill: tokio_util::sync::CancellationToken,
    procs: Arc<Mutex<HashMap<String, Arc<PiProc>>>>,
    key: String,
    me: std::sync::Weak<PiProc>,
) {
    let stderr_tail = tokio::spawn(async move {
        match stderr {
            Some(e) => read_tail(e, STDERR_KEEP).await,
            None => Vec::new(),
        }
    });
    let read = async {
        let stdout = stdout?;
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            // `read_until` with a cap: a record longer than MAX_RECORD is
            // not buffered whole.
            let mut limited = (&mut reader).take(MAX_RECORD as u64 + 1);
            match tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(format!("reading pi's output failed: {e}")),
            }
            if line.len() > MAX_RECORD {
                return Some(format!(
                    "pi sent a record longer than {} MiB",
                    MAX_RECORD >> 20
                ));
            }
            let mut record = &line[..];
            if let Some(r) = record.strip_suffix(b"\n") {
                record = r;
            }
            if let Some(r) = record.strip_suffix(b"\r") {
                record = r;
            }
            if record.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(record) {
                Ok(v) => {
                    if records.send(Record::Json(v)).await.is_err() {
                        return None;
                    }
                }
                // pi prints only JSON on stdout in rpc mode; anything else
                // (an extension's stray console.log) is skipped, not fatal.
                Err(_) => tracing::debug!(session = %key, "pi printed a line that is not JSON"),
            }
        }
    };
    let broken = tokio::select! {
        b = read => b,
        _ = kill.cancelled() => Some("stopped by the relay".to_owned()),
    };
    if broken.is_some() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let tail = stderr_tail.await.unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail).trim().to_owned();
    let mut how = match (&broken, status) {
        (Some(b), _) => b.clone(),
        (None, Ok(s)) => match s.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        },
        (None, Err(e)) => format!("could not be waited for: {e}"),
    };
    if !tail.is_empty() {
        how = format!("{how}: {tail}");
    }
    tracing::info!(session = %key, "pi ended ({how})");
    let _ = alive.send(false);
    let _ = records.send(Record::Exited(how)).await;
    let mut map = procs.lock();
    if let Some(current) = map.get(&key)
        && me.upgrade().is_some_and(|me| Arc::ptr_eq(current, &me))
    {
        map.remove(&key);
    }
}

/// Ends the process once its session has been idle for `idle`.
async fn idle_exit(me: std::sync::Weak<PiProc>, idle: Duration) {
    loop {
        let wait = {
            let Some(p) = me.upgrade() else { return };
            if !*p.alive.borrow() {
                return;
            }
            let idle_for = p.idle_for();
            if !p.busy.load(Ordering::SeqCst) && idle_for >= idle {
                let mut stdin = p.stdin.lock().await;
                if p.busy.load(Ordering::SeqCst) {
                    continue;
                }
                tracing::info!(pid = p.pid, "pi idle; closing it");
                // pi shuts down on the end of its input.
                stdin.take();
                drop(stdin);
                let mut alive = p.alive.clone();
                let kill = p.kill.clone();
                drop(p);
                let ended = tokio::time::timeout(Duration::from_secs(10), alive.wait_for(|a| !a));
                if ended.await.is_err() {
                    kill.cancel();
                }
                return;
            }
            if p.busy.load(Ordering::SeqCst) {
                // A turn is running: look again once it could be idle.
                idle
            } else {
                idle.saturating_sub(idle_for).max(Duration::from_millis(50))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Reads records until the answer to command `id`; events in between are
/// dropped (none flow while no prompt runs).
async fn expect_response(
    records: &mut mpsc::Receiver<Record>,
    id: &str,
    what: &str,
) -> Result<(), AgentError> {
    let wait = async {
        loop {
            match records.recv().await {
                Some(Record::Json(v)) => {
                    if v["type"] == "response" && v["id"] == id {
                        return response_result(&v, what);
                    }
                }
                Some(Record::Exited(how)) => {
                    return Err(AgentError::Failed(format!("pi {how}")));
                }
                None => return Err(AgentError::Failed("pi has exited".into())),
            }
        }
    };
    tokio::time::timeout(COMMAND_TIMEOUT, wait)
        .await
        .map_err(|_| {
            AgentError::Timeout(format!(
                "pi did not answer {what} within {} s",
                COMMAND_TIMEOUT.as_secs()
            ))
        })?
}

fn response_result(v: &Value, what: &str) -> Result<(), AgentError> {
    if v["success"] == true {
        return Ok(());
    }
    let why = v["error"].as_str().unwrap_or("no reason given");
    Err(AgentError::Failed(format!("pi refused {what}: {why}")))
}

/// The text of a tool result's content blocks.
fn result_text(result: &Value) -> String {
    let mut out = String::new();
    if let Some(blocks) = result["content"].as_array() {
        for b in blocks {
            match b["type"].as_str() {
                Some("text") => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(b["text"].as_str().unwrap_or_default());
                }
                Some("image") => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str("[image]");
                }
                _ => {}
            }
        }
    }
    out
}

/// One turn: thinking level, prompt, then events until `agent_end`.
async fn drive(
    config: &PiConfig,
    proc: &PiProc,
    records: &mut mpsc::Receiver<Record>,
    request: &AgentRequest,
    tx: &Sender,
) -> Result<(), AgentError> {
    let wanted = request.thinking;
    let known = *proc.thinking.lock();
    if known != Some(wanted) {
        let id = proc.command_id();
        proc.send(&json!({"id": id, "type": "set_thinking_level", "level": wanted.as_str()}))
            .await?;
        expect_response(records, &id, "the thinking level").await?;
        *proc.thinking.lock() = Some(wanted);
    }

    let Some(user) = request.history.last() else {
        return Err(AgentError::Failed("nothing to send to pi".into()));
    };
    let mut images = Vec::new();
    for image in &user.images {
        let bytes = tokio::fs::read(&image.path)
            .await
            .map_err(|e| AgentError::Failed(format!("cannot read an attached image: {e}")))?;
        images.push(json!({
            "type": "image",
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            "mimeType": image.mime_type,
        }));
    }
    let prompt_id = proc.command_id();
    let mut prompt = json!({"id": prompt_id, "type": "prompt", "message": user.text});
    if !images.is_empty() {
        prompt["images"] = Value::Array(images);
    }
    proc.send(&prompt).await?;

    let abort_grace = Duration::from_secs(config.abort_grace_secs.max(1));
    let mut abort_deadline: Option<tokio::time::Instant> = None;
    // pi reports a running tool's whole output so far; the events carry
    // what is new, and the relay times each call.
    let mut calls: HashMap<String, (std::time::Instant, String)> = HashMap::new();
    loop {
        let give_up = async {
            match abort_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let record = tokio::select! {
            r = records.recv() => r,
            _ = request.abort.cancelled(), if abort_deadline.is_none() => {
                proc.send(&json!({"type": "abort"})).await?;
                abort_deadline = Some(tokio::time::Instant::now() + abort_grace);
                continue;
            }
            _ = tx.closed(), if abort_deadline.is_none() => {
                proc.send(&json!({"type": "abort"})).await?;
                abort_deadline = Some(tokio::time::Instant::now() + abort_grace);
                continue;
            }
            _ = give_up => {
                return Err(AgentError::Failed(format!(
                    "pi did not stop within {} s of the abort", abort_grace.as_secs()
                )));
            }
        };
        let v = match record {
            Some(Record::Json(v)) => v,
            Some(Record::Exited(how)) => {
                return Err(AgentError::Failed(format!(
                    "pi {how} during the turn; your message is kept, and the next message starts pi again"
                )));
            }
            None => return Err(AgentError::Failed("pi has exited".into())),
        };
        let event = match v["type"].as_str().unwrap_or_default() {
            "response" if v["id"] == prompt_id.as_str() => {
                response_result(&v, "the prompt")?;
                continue;
            }
            "message_update" => {
                let e = &v["assistantMessageEvent"];
                let delta = e["delta"].as_str().unwrap_or_default().to_owned();
                match e["type"].as_str() {
                    Some("text_delta") if !delta.is_empty() => AgentEvent::Delta(delta),
                    Some("thinking_delta") if !delta.is_empty() => AgentEvent::Thinking(delta),
                    Some("toolcall_delta") if !delta.is_empty() => {
                        // The call's id and name are in the partial message,
                        // at the block the delta belongs to.
                        let block = e["contentIndex"]
                            .as_u64()
                            .and_then(|i| e["partial"]["content"].get(i as usize))
                            .unwrap_or(&Value::Null);
                        AgentEvent::ToolArgs {
                            call_id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            delta,
                        }
                    }
                    _ => continue,
                }
            }
            "tool_execution_start" => {
                let call_id = v["toolCallId"].as_str().unwrap_or_default().to_owned();
                calls.insert(call_id.clone(), (std::time::Instant::now(), String::new()));
                AgentEvent::ToolStart {
                    call_id,
                    name: v["toolName"].as_str().unwrap_or_default().to_owned(),
                    args: v["args"].clone(),
                }
            }
            "tool_execution_update" | "tool_execution_end" => {
                let call_id = v["toolCallId"].as_str().unwrap_or_default().to_owned();
                let end = v["type"] == "tool_execution_end";
                let output = result_text(if end {
                    &v["result"]
                } else {
                    &v["partialResult"]
                });
                let (started, sent) = calls
                    .entry(call_id.clone())
                    .or_insert_with(|| (std::time::Instant::now(), String::new()));
                // Output that does not continue what was shown (pi keeps a
                // bounded tail) is shown again from a new line.
                let new = match output.strip_prefix(sent.as_str()) {
                    Some(rest) => rest.to_owned(),
                    None if sent.is_empty() => output.clone(),
                    None => format!("\n…\n{output}"),
                };
                *sent = output;
                if !new.is_empty() {
                    let _ = tx
                        .send(Ok(AgentEvent::ToolOutput {
                            call_id: call_id.clone(),
                            text: new,
                        }))
                        .await;
                }
                if !end {
                    continue;
                }
                let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                calls.remove(&call_id);
                AgentEvent::ToolEnd {
                    call_id,
                    is_error: v["isError"] == true,
                    duration_ms,
                }
            }
            "extension_ui_request" => {
                // No one can answer an extension's dialog from the chat:
                // dismiss it rather than leave pi waiting.
                if matches!(
                    v["method"].as_str(),
                    Some("select" | "confirm" | "input" | "editor")
                ) {
                    proc.send(
                        &json!({"type": "extension_ui_response", "id": v["id"], "cancelled": true}),
                    )
                    .await?;
                }
                continue;
            }
            "agent_end" => {
                let last = v["messages"]
                    .as_array()
                    .and_then(|m| m.iter().rev().find(|m| m["role"] == "assistant"));
                if let Some(last) = last
                    && last["stopReason"] == "error"
                {
                    let why = last["errorMessage"].as_str().unwrap_or("the model failed");
                    return Err(AgentError::Failed(format!("pi: {why}")));
                }
                return Ok(());
            }
            _ => continue,
        };
        if tx.send(Ok(event)).await.is_err() && abort_deadline.is_none() {
            proc.send(&json!({"type": "abort"})).await?;
            abort_deadline = Some(tokio::time::Instant::now() + abort_grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_pi_can_continue_is_handed_to_pi() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        assert!(check_header(&path).is_ok());
        std::fs::write(&path, b"").unwrap();
        assert!(check_header(&path).is_ok());
        std::fs::write(&path, b"{\"type\":\"session\",\"version\":3}\n{}\n").unwrap();
        assert!(check_header(&path).is_ok());
        std::fs::write(&path, b"{\"type\":\"message\",\"message\":{}}\n").unwrap();
        assert!(matches!(check_header(&path), Err(AgentError::Failed(m)) if m.contains("header")));
    }

    #[test]
    fn tool_output_is_the_text_of_its_blocks() {
        let r = json!({"content": [
            {"type": "text", "text": "a\u{2028}b"},
            {"type": "image", "data": "x", "mimeType": "image/png"},
            {"type": "text", "text": "c"}
        ]});
        assert_eq!(result_text(&r), "a\u{2028}b\n[image]\nc");
        assert_eq!(result_text(&json!(null)), "");
    }

    #[test]
    fn a_refusal_names_the_command_and_the_reason() {
        let v = json!({"type": "response", "success": false, "error": "Model not found: x/y"});
        assert_eq!(
            response_result(&v, "set_model"),
            Err(AgentError::Failed(
                "pi refused set_model: Model not found: x/y".into()
            ))
        );
        assert_eq!(response_result(&json!({"success": true}), "x"), Ok(()));
    }
}
