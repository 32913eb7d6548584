//! The built-in backend: replies `echo: <text>`. It lets the whole system run
//! with no model configured, and its optional per-word delay makes streaming
//! visible.

use std::time::Duration;

use futures_util::stream;
use loopchat_proto::{AgentInfo, Role};

use super::{Agent, AgentEvent, AgentRequest, AgentStream};
use crate::config::EchoConfig;

pub struct EchoAgent {
    config: EchoConfig,
}

impl EchoAgent {
    pub fn new(config: EchoConfig) -> Self {
        Self { config }
    }
}

impl Agent for EchoAgent {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            backend: "echo".into(),
            model: None,
        }
    }

    fn run(&self, request: AgentRequest) -> AgentStream {
        let text = request
            .history
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| t.text.clone())
            .unwrap_or_default();
        let reply = format!("echo: {text}");
        if self.config.delay_ms == 0 {
            return Box::pin(stream::iter([Ok(AgentEvent::Delta(reply))]));
        }
        // Words with their following whitespace, so the deltas add up to
        // exactly the reply.
        let mut pieces = Vec::new();
        let mut current = String::new();
        for ch in reply.chars() {
            if !ch.is_whitespace() && current.ends_with(char::is_whitespace) {
                pieces.push(std::mem::take(&mut current));
            }
            current.push(ch);
        }
        pieces.push(current);
        let delay = Duration::from_millis(self.config.delay_ms);
        Box::pin(stream::unfold(
            (pieces.into_iter(), true),
            move |(mut it, first)| async move {
                let piece = it.next()?;
                if !first {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(AgentEvent::Delta(piece)), (it, false)))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ChatTurn;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn deltas_add_up() {
        let agent = EchoAgent::new(EchoConfig { delay_ms: 1 });
        let mut s = agent.run(AgentRequest {
            session_key: "k".into(),
            run_id: "r".into(),
            history: vec![ChatTurn {
                role: Role::User,
                text: "hello  big\nworld".into(),
                images: vec![],
                ..ChatTurn::new(Role::User, String::new())
            }],
            thinking: Default::default(),
            transcript: None,
            abort: Default::default(),
            tools: std::sync::Arc::from(Vec::new()),
            tools_ended_at: None,
            model: None,
        });
        let mut out = String::new();
        let mut n = 0;
        while let Some(Ok(AgentEvent::Delta(d))) = s.next().await {
            out.push_str(&d);
            n += 1;
        }
        assert_eq!(out, "echo: hello  big\nworld");
        assert_eq!(n, 4);
    }
}
