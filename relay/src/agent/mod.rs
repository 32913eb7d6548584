//! Agent backends behind one streaming trait.
//!
//! A backend turns a conversation into a stream of text deltas. It knows
//! nothing of the store, the event log or HTTP clients; cancellation is
//! dropping the stream, which closes an upstream request or kills a child
//! process.

mod command;
mod echo;
mod openai;
mod pi;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use loopchat_proto::{AgentInfo, ModelsResponse, Role, ThinkingLevel};

use crate::config::{AgentConfig, Backend};
use crate::tools::ToolSpec;

pub use command::CommandAgent;
pub use echo::EchoAgent;
pub use openai::OpenAiAgent;
#[cfg(feature = "fuzzing")]
pub(crate) use openai::decode_reply;
pub use pi::PiAgent;

/// One message of the history handed to a backend.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    pub role: Role,
    pub text: String,
    /// Images attached to the message, as files under the home.
    pub images: Vec<ImageFile>,
    /// An assistant message's tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// A `toolResult` message: the call it answers.
    pub tool_call_id: Option<String>,
    /// Images a tool returned, as `data:` URLs.
    pub data_images: Vec<String>,
}

impl ChatTurn {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            text: text.into(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            data_images: Vec::new(),
        }
    }
}

/// A tool call as the model made it: `arguments` is the JSON text it sent
/// (assembled from the streamed pieces), not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone)]
pub struct ImageFile {
    pub mime_type: String,
    pub path: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub session_key: String,
    pub run_id: String,
    /// Oldest first; the last entry is the user's new message.
    pub history: Vec<ChatTurn>,
    pub thinking: ThinkingLevel,
    /// The session's transcript, for a backend that writes it itself
    /// ([`Agent::writes_transcript`]).
    pub transcript: Option<std::path::PathBuf>,
    /// Cancelled when the run is aborted. Most backends are stopped by
    /// dropping their stream instead; one that writes the transcript is
    /// told here and ends its stream once it has stopped.
    pub abort: tokio_util::sync::CancellationToken,
    /// The tools the model may call (backends that cannot call tools
    /// ignore them).
    pub tools: Arc<[ToolSpec]>,
    /// When the tool step before this request ended, for the relay's
    /// per-step cost (logged at debug by the backend as it sends).
    pub tools_ended_at: Option<std::time::Instant>,
    /// The model the session chose (Decision 80), checked against
    /// [`Agent::models`]; `None`: the configured one.
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Delta(String),
    Thinking(String),
    /// The next piece of a tool call's arguments as the model writes them
    /// (pi: shown while the call is written).
    ToolArgs {
        call_id: String,
        name: String,
        delta: String,
    },
    /// A tool call the backend runs itself (pi) began to run.
    ToolStart {
        call_id: String,
        name: String,
        args: serde_json::Value,
    },
    /// The next piece of such a call's output, in order.
    ToolOutput {
        call_id: String,
        text: String,
    },
    /// Such a call ended.
    ToolEnd {
        call_id: String,
        is_error: bool,
        duration_ms: u64,
    },
    /// A complete tool call for the relay to run; sent when the reply is
    /// complete, in order.
    ToolCall(ToolCall),
    /// The token counts the server reported for this request (Decision 81).
    Usage {
        input: u64,
        output: u64,
        /// The server's own generation speed, when it gives one.
        tokens_per_sec: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
}

/// A backend that cannot be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "the command backend needs [agent.command] argv (or LOOPCHAT_AGENT_COMMAND as a JSON array)"
    )]
    NoCommand,
    #[error("the pi backend needs [agent.pi] command (or LOOPCHAT_PI_COMMAND as a JSON array)")]
    NoPiCommand,
    #[error("[agent.openai] base_url {0:?} is not an http(s) URL such as http://127.0.0.1:8080/v1")]
    BadBaseUrl(String),
    #[error("cannot set up the HTTP client for the openai backend: {0}")]
    HttpClient(reqwest::Error),
}

pub type AgentStream = Pin<Box<dyn Stream<Item = Result<AgentEvent, AgentError>> + Send>>;

/// What [`Agent::models`] resolves to.
pub type ModelsFuture = Pin<Box<dyn std::future::Future<Output = ModelsResponse> + Send>>;

pub trait Agent: Send + Sync + 'static {
    fn info(&self) -> AgentInfo;
    /// The models a turn may choose from (Decision 80). Never an error: a
    /// list that cannot be had is an empty one with the reason.
    fn models(&self) -> ModelsFuture {
        let default = self.info().model;
        Box::pin(async move {
            ModelsResponse {
                ok: true,
                models: Vec::new(),
                default,
                source: "none".into(),
                error: None,
            }
        })
    }
    fn run(&self, request: AgentRequest) -> AgentStream;
    /// The backend appends the turn to the session's transcript itself (pi
    /// does): the pipeline writes nothing into the file and reads what the
    /// backend wrote through the store's foreign-writer path.
    fn writes_transcript(&self) -> bool {
        false
    }
}

/// The backend the configuration asks for.
pub fn from_config(config: &AgentConfig) -> Result<Arc<dyn Agent>, SetupError> {
    Ok(match config.backend {
        Backend::Echo => Arc::new(EchoAgent::new(config.echo.clone())),
        Backend::Command => Arc::new(CommandAgent::new(config.command.clone())?),
        Backend::Openai => Arc::new(OpenAiAgent::new(config.openai.clone())?),
        Backend::Pi => Arc::new(PiAgent::new(config.pi.clone())?),
    })
}
