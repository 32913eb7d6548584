//! The `command` backend: runs a configured argv per turn (no shell), the
//! user's text on stdin, the reply streamed from stdout line by line.
//!
//! The child gets `LOOPCHAT_SESSION`, `LOOPCHAT_RUN_ID` and
//! `LOOPCHAT_THINKING` in its environment. It is killed when the run is
//! aborted (the stream is dropped) or times out.

use std::process::Stdio;
use std::time::Duration;

use loopchat_proto::{AgentInfo, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream, SetupError};
use crate::config::CommandConfig;
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
    let prompt = request
        .history
        .iter()
        .rev()
        .find(|t| t.role == Role::User)
        .map(|t| t.text.clone())
        .unwrap_or_default();
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
            let _ = stdin.write_all(prompt.as_bytes()).await;
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
        let Some(stdout) = stdout else { return };
        let mut lines = BufReader::new(stdout).lines();
        let mut first = true;
        // The newline is sent in front of the next line, so the reply does
        // not end with the command's final newline.
        while let Ok(Some(line)) = lines.next_line().await {
            let piece = if first { line } else { format!("\n{line}") };
            first = false;
            if tx.send(Ok(AgentEvent::Delta(piece))).await.is_err() {
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
            tools: std::sync::Arc::from(Vec::new()),
            tools_ended_at: None,
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
}
