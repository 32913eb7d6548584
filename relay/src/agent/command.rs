//! The `command` backend: runs a configured argv per turn (no shell), the
//! user's text (or, with `stdin = "json"`, the turn and its history as
//! [`loopchat_proto::CommandInput`]) on stdin, the reply streamed from stdout
//! as it is printed.
//!
//! The child gets `LOOPCHAT_SESSION`, `LOOPCHAT_RUN_ID` and
//! `LOOPCHAT_THINKING` in its environment. It is killed when the run is
//! aborted (the stream is dropped) or times out.

use std::process::Stdio;
use std::time::Duration;

use loopchat_proto::{
    AgentInfo, COMMAND_INPUT_VERSION, CommandImage, CommandInput, CommandMessage, Role,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream, SetupError};
use crate::config::{CommandConfig, CommandStdin};
use crate::diagnostics::read_tail;

/// Bytes of stderr kept for the error message.
const STDERR_KEEP: usize = 2048;

pub struct CommandAgent {
    config: CommandConfig,
}

impl CommandAgent {
    pub fn new(config: CommandConfig) -> Result<Self, SetupError> {
        if config.argv.is_empty() {
            return Err(SetupError::NoCommand);
        }
        Ok(Self { config })
    }
}

impl Agent for CommandAgent {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            backend: "command".into(),
            model: self.config.argv.first().cloned(),
        }
    }

    fn run(&self, request: AgentRequest) -> AgentStream {
        let (tx, rx) = mpsc::channel(64);
        let config = self.config.clone();
        tokio::spawn(async move {
            let deadline = Duration::from_secs(config.timeout_secs.max(1));
            let outcome = tokio::select! {
                r = tokio::time::timeout(deadline, run_child(&config, &request, &tx)) => match r {
                    Ok(r) => r,
                    Err(_) => Err(AgentError::Timeout(format!(
                        "the agent command did not finish within {} s", deadline.as_secs()
                    ))),
                },
                // The run was aborted: dropping run_child's future kills the child.
                _ = tx.closed() => return,
            };
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

type Sender = mpsc::Sender<Result<AgentEvent, AgentError>>;

async fn run_child(
    config: &CommandConfig,
    request: &AgentRequest,
    tx: &Sender,
) -> Result<(), AgentError> {
    let input = match config.stdin {
        CommandStdin::Text => request
            .history
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| t.text.clone().into_bytes())
            .unwrap_or_default(),
        CommandStdin::Json => json_input(request),
    };
    let mut child = Command::new(&config.argv[0])
        .args(&config.argv[1..])
        .env("LOOPCHAT_SESSION", &request.session_key)
        .env("LOOPCHAT_RUN_ID", &request.run_id)
        .env("LOOPCHAT_THINKING", request.thinking.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Failed(format!("cannot start {:?}: {e}", config.argv[0])))?;

    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let feed = async move {
        if let Some(mut stdin) = stdin.take() {
            // A command that ignores stdin may close it early; not an error.
            let _ = stdin.write_all(&input).await;
        }
    };
    let collect_err = async move {
        let Some(e) = stderr else {
            return String::new();
        };
        let tail = read_tail(e, STDERR_KEEP).await;
        String::from_utf8_lossy(&tail).trim().to_owned()
    };
    let stream_out = async {
        let Some(mut stdout) = stdout else { return };
        let mut pieces = Pieces::default();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Some(piece) = pieces.push(&buf[..n])
                && tx.send(Ok(AgentEvent::Delta(piece))).await.is_err()
            {
                return;
            }
        }
    };
    let ((), (), stderr_text) = tokio::join!(feed, stream_out, collect_err);
    let status = child
        .wait()
        .await
        .map_err(|e| AgentError::Failed(format!("waiting for the agent command failed: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(AgentError::Failed(if stderr_text.is_empty() {
        format!("the agent command {how}")
    } else {
        format!("the agent command {how}: {stderr_text}")
    }))
}

/// The JSON document on stdin for `stdin = "json"`.
fn json_input(request: &AgentRequest) -> Vec<u8> {
    let input = CommandInput {
        version: COMMAND_INPUT_VERSION,
        session: request.session_key.clone(),
        run_id: request.run_id.clone(),
        thinking: request.thinking,
        messages: request
            .history
            .iter()
            .map(|t| CommandMessage {
                role: t.role,
                text: t.text.clone(),
                images: t
                    .images
                    .iter()
                    .map(|i| CommandImage {
                        mime_type: i.mime_type.clone(),
                        path: i.path.display().to_string(),
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&input).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Turns stdout's chunks into deltas: whole UTF-8 characters only (a
/// character split between two reads waits for its rest), and a newline at
/// the end held back until more follows, so that the reply does not end with
/// the program's final newline.
#[derive(Default)]
struct Pieces {
    pending: Vec<u8>,
}

impl Pieces {
    fn push(&mut self, chunk: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(chunk);
        let mut cut = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end (at most 3 bytes) waits;
            // invalid bytes elsewhere are replaced.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        if cut > 0 && self.pending[cut - 1] == b'\n' {
            cut -= 1;
        }
        if cut == 0 {
            return None;
        }
        let rest = self.pending.split_off(cut);
        let piece = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ChatTurn;
    use futures_util::StreamExt;

    fn request(text: &str) -> AgentRequest {
        AgentRequest {
            session_key: "s".into(),
            run_id: "r".into(),
            history: vec![ChatTurn {
                role: Role::User,
                text: text.into(),
                images: vec![],
                ..ChatTurn::new(Role::User, String::new())
            }],
            thinking: Default::default(),
            transcript: None,
            abort: Default::default(),
            tools: std::sync::Arc::from(Vec::new()),
            tools_ended_at: None,
            model: None,
        }
    }

    async fn collect(agent: &CommandAgent, text: &str) -> (String, Option<AgentError>) {
        let mut s = agent.run(request(text));
        let mut out = String::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(AgentEvent::Delta(d)) => out.push_str(&d),
                Ok(_) => {}
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    fn agent(argv: &[&str], timeout_secs: u64) -> CommandAgent {
        CommandAgent::new(CommandConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_secs,
            stdin: CommandStdin::Text,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn streams_stdout_and_reports_failures() {
        let (out, err) = collect(
            &agent(&["/bin/sh", "-c", "tr a-z A-Z; echo; echo two"], 5),
            "one",
        )
        .await;
        assert_eq!((out.as_str(), err), ("ONE\ntwo", None));
        let (_, err) = collect(&agent(&["/bin/sh", "-c", "echo nope >&2; exit 3"], 5), "x").await;
        assert_eq!(
            err,
            Some(AgentError::Failed(
                "the agent command exited with status 3: nope".into()
            ))
        );
        let (_, err) = collect(&agent(&["/bin/sleep", "5"], 1), "x").await;
        assert!(matches!(err, Some(AgentError::Timeout(_))));
        let (_, err) = collect(&agent(&["/nonexistent/agent"], 1), "x").await;
        assert!(matches!(err, Some(AgentError::Failed(m)) if m.contains("cannot start")));
    }

    #[test]
    fn pieces_hold_back_split_characters_and_the_last_newline() {
        let mut p = Pieces::default();
        let euro = "€".as_bytes();
        assert_eq!(p.push(&[b'a', euro[0]]), Some("a".into()));
        assert_eq!(p.push(&euro[1..]), Some("€".into()));
        assert_eq!(p.push(b"line\n"), Some("line".into()));
        assert_eq!(p.push(b"\n"), Some("\n".into()));
        assert_eq!(p.push(b"x"), Some("\nx".into()));
        assert_eq!(p.push(b"\xff\xfey"), Some("\u{fffd}\u{fffd}y".into()));
    }

    #[tokio::test]
    async fn json_stdin_carries_the_history() {
        let mut a = agent(&["/bin/cat"], 5);
        a.config.stdin = CommandStdin::Json;
        let mut req = request("second");
        req.history
            .insert(0, ChatTurn::new(Role::Assistant, "first\u{2028}reply"));
        let mut s = a.run(req);
        let mut out = String::new();
        while let Some(Ok(AgentEvent::Delta(d))) = s.next().await {
            out.push_str(&d);
        }
        let input: CommandInput = serde_json::from_str(&out).unwrap();
        assert_eq!(input.version, 1);
        assert_eq!(input.session, "s");
        let texts: Vec<_> = input
            .messages
            .iter()
            .map(|m| (m.role, m.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (Role::Assistant, "first\u{2028}reply"),
                (Role::User, "second")
            ]
        );
    }
}
