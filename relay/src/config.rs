//! `config.toml` plus environment overrides → one [`Config`] value.
//!
//! Precedence: command-line flags (applied by the CLI) > environment >
//! config file > defaults. Unknown keys in the file are an error, so a typo
//! does not silently fall back to a default.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name} is not valid: {message}")]
    Env { name: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Fixed port; `None` means "last used if free, else random".
    pub port: Option<u16>,
    pub bind: IpAddr,
    /// Extra Host header names accepted besides loopback names.
    pub allowed_hosts: Vec<String>,
    /// Limit for JSON request bodies, bytes.
    pub body_limit: usize,
    /// Limit for one uploaded attachment, bytes.
    pub attachment_limit: usize,
    /// Limit for one imported file (`POST /webchat/import`), bytes.
    pub import_limit: usize,
    /// Messages of history sent to the agent with each turn.
    pub history_messages: usize,
    /// How long in-flight turns may run on after SIGTERM before they are
    /// stored as aborted, seconds.
    pub shutdown_grace_secs: u64,
    /// Open connections served at once. When all are taken, a new one
    /// closes the connection that has waited longest for its headers (never
    /// one serving a request); if none is waiting, it waits in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open, seconds (at most
    /// [`crate::http::conn::PRESSURE_HEADER_TIMEOUT`] for connections
    /// accepted while more than 3/4 of `max_connections` are taken).
    pub header_read_timeout_secs: u64,
    /// Longest pause while a request body arrives, seconds.
    pub body_read_timeout_secs: u64,
    /// A session with no turn for this long gives back the memory it keeps
    /// for quick answers (event replay, recent messages), seconds.
    pub idle_session_secs: u64,
    /// Bytes one session keeps in memory for quick answers, whatever the
    /// size of its messages: half for the event replay ring, half for the
    /// decoded recent messages. Older ones are read from the transcript.
    pub session_memory_bytes: usize,
    /// A new session's title is written by the agent after its first reply
    /// (in the background), instead of staying its first message's line.
    pub auto_title: bool,
    /// Days a deleted (archived) session is kept before it is purged; 0
    /// keeps archives until purged by hand.
    pub archive_keep_days: u64,
    pub agent: AgentConfig,
    /// The agent's tools (`read`, `write`, `edit`, `bash`): workspace,
    /// limits and the approval policy.
    pub tools: ToolsConfig,
    /// Named places a reply can be delivered to with rpc `to` (besides the
    /// default: every connected window and shell).
    pub targets: BTreeMap<String, TargetConfig>,
    /// The owner's scheduled scripts (`[[checks]]`), see `crate::checks`.
    pub checks: Vec<crate::checks::config::CheckConfig>,
    /// MCP servers whose tools the agent may call (`[[mcp_servers]]`),
    /// see `crate::tools::mcp`.
    pub mcp_servers: Vec<crate::tools::mcp::McpServerConfig>,
    /// The WebSocket ping interval, seconds (`LOOPCHAT_WS_PING_SECS` only:
    /// the protocol fixes 30 s, tests shorten it).
    #[serde(skip)]
    pub ws_ping_secs: u64,
    /// `TCP_USER_TIMEOUT` of every accepted socket, seconds
    /// (`LOOPCHAT_TCP_USER_TIMEOUT_SECS` only: 3 × the 30 s ping of the seed
    /// protocol, shorter for tests).
    #[serde(skip)]
    pub tcp_user_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: None,
            bind: IpAddr::from([127, 0, 0, 1]),
            allowed_hosts: Vec::new(),
            body_limit: 1024 * 1024,
            attachment_limit: 10 * 1024 * 1024,
            import_limit: loopchat_proto::DEFAULT_IMPORT_LIMIT,
            history_messages: 40,
            shutdown_grace_secs: 10,
            max_connections: 1024,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            idle_session_secs: 600,
            session_memory_bytes: 8 * 1024 * 1024,
            auto_title: false,
            archive_keep_days: 30,
            agent: AgentConfig::default(),
            tools: ToolsConfig::default(),
            targets: BTreeMap::new(),
            checks: Vec::new(),
            mcp_servers: Vec::new(),
            ws_ping_secs: 30,
            tcp_user_timeout_secs: 90,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Echo,
    Openai,
    Command,
    Pi,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Openai => "openai",
            Self::Command => "command",
            Self::Pi => "pi",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub backend: Backend,
    pub echo: EchoConfig,
    pub openai: OpenAiConfig,
    pub command: CommandConfig,
    pub pi: PiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiConfig {
    /// How to run pi (no shell); `--mode rpc --session <file>` and the
    /// provider/model flags are added.
    pub command: Vec<String>,
    /// pi's provider name (`--provider`, and `set_model` with `model`).
    pub provider: Option<String>,
    /// pi's model id or pattern (`--model`).
    pub model: Option<String>,
    /// The directory pi works in (its tools' cwd); the relay's by default.
    pub cwd: Option<std::path::PathBuf>,
    /// A session's pi exits after this long without a turn, seconds.
    pub idle_exit_secs: u64,
    /// How long pi may take to stop after an abort before it is killed,
    /// seconds.
    pub abort_grace_secs: u64,
}

impl Default for PiConfig {
    fn default() -> Self {
        Self {
            command: vec!["pi".into()],
            provider: None,
            model: None,
            cwd: None,
            idle_exit_secs: 300,
            abort_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EchoConfig {
    /// Delay between streamed words, to see streaming without a model.
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The key itself (from `LOOPCHAT_OPENAI_API_KEY`); prefer `api_key_env`.
    #[serde(skip)]
    pub api_key: Option<String>,
    pub system_prompt: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub connect_timeout_secs: u64,
    /// Longest silence between two streamed chunks.
    pub idle_timeout_secs: u64,
    /// The models the picker offers; empty: ask the server
    /// (`GET {base_url}/models`, Decision 80).
    pub models: Vec<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "default".into(),
            api_key_env: None,
            api_key: None,
            system_prompt: None,
            max_tokens: None,
            temperature: None,
            connect_timeout_secs: 10,
            idle_timeout_secs: 120,
            models: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandConfig {
    pub argv: Vec<String>,
    pub timeout_secs: u64,
    /// What the program reads on stdin.
    pub stdin: CommandStdin,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            argv: Vec::new(),
            timeout_secs: 300,
            stdin: CommandStdin::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CommandStdin {
    /// The user's new message only (the original behaviour).
    #[default]
    Text,
    /// The turn and the session's history as one JSON document
    /// (`loopchat_proto::CommandInput`).
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Offer the tools to the model (backends that can call tools: openai).
    pub enabled: bool,
    /// Where the tools work; default: the directory `serve` started in.
    pub workspace: Option<std::path::PathBuf>,
    /// Keep the file tools inside the workspace (symlinks followed first).
    pub confine: bool,
    /// Tool steps one run may take before it ends with an error.
    pub max_steps: usize,
    /// An `ask` nobody answers within this many seconds is denied.
    pub approval_timeout_secs: u64,
    /// `bash` timeout when the call gives none, and the most it may ask.
    pub bash_timeout_secs: u64,
    pub bash_max_timeout_secs: u64,
    /// Output (stdout + stderr) past which a `bash` command is killed.
    pub bash_output_limit_bytes: usize,
    /// Output of one call streamed to the windows; the rest only counts.
    pub bash_stream_limit_bytes: usize,
    /// `allow`, `ask` or `deny` per tool name (`read`, `bash`,
    /// `server__tool`…). Defaults: `read` allow, everything else ask.
    pub policy: BTreeMap<String, crate::tools::Policy>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        let bash = crate::tools::BashLimits::default();
        Self {
            enabled: true,
            workspace: None,
            confine: true,
            max_steps: 25,
            approval_timeout_secs: 300,
            bash_timeout_secs: bash.default_timeout.as_secs(),
            bash_max_timeout_secs: bash.max_timeout.as_secs(),
            bash_output_limit_bytes: bash.output_limit,
            bash_stream_limit_bytes: bash.stream_limit,
            policy: BTreeMap::new(),
        }
    }
}

impl ToolsConfig {
    pub fn bash_limits(&self) -> crate::tools::BashLimits {
        crate::tools::BashLimits {
            default_timeout: Duration::from_secs(self.bash_timeout_secs.max(1)),
            max_timeout: Duration::from_secs(self.bash_max_timeout_secs.max(1)),
            output_limit: self.bash_output_limit_bytes.max(1024),
            stream_limit: self.bash_stream_limit_bytes,
        }
    }
}

/// A delivery target: exactly one of `webhook` and `command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// POST the reply, as JSON, to this http(s) URL.
    pub webhook: Option<String>,
    /// Extra request headers for `webhook` (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Run this argv (no shell) with the reply as JSON on stdin.
    pub command: Option<Vec<String>>,
    /// How long one attempt may take, seconds.
    #[serde(default = "default_target_timeout")]
    pub timeout_secs: u64,
    /// Further attempts after a transient failure (at most 5).
    #[serde(default = "default_target_retries")]
    pub retries: u32,
}

fn default_target_retries() -> u32 {
    2
}

fn default_target_timeout() -> u64 {
    30
}

impl TargetConfig {
    fn check(&self, name: &str) -> Result<(), String> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(format!(
                "target name {name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        match (&self.webhook, &self.command) {
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "targets.{name}.webhook must be an http(s) URL, not {url:?}"
                    ));
                }
            }
            (None, Some(argv)) if argv.is_empty() => {
                return Err(format!("targets.{name}.command is empty"));
            }
            (None, Some(_)) if !self.headers.is_empty() => {
                return Err(format!("targets.{name}.headers only applies to a webhook"));
            }
            (None, Some(_)) => {}
            _ => {
                return Err(format!(
                    "targets.{name} needs exactly one of webhook and command"
                ));
            }
        }
        let most = RETRY_WAITS.len();
        if self.retries as usize > most {
            return Err(format!("targets.{name}.retries is at most {most}"));
        }
        Ok(())
    }
}

/// The waits before a delivery target's second, third… attempt; `retries`
/// is capped at its length.
pub const RETRY_WAITS: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
    Duration::from_secs(60),
    Duration::from_secs(60),
];

/// Below this, ordinary messages would keep falling out of the window.
const MIN_SESSION_MEMORY: usize = 64 * 1024;

impl Config {
    /// The event ring's and the recent window's shares of
    /// `session_memory_bytes`.
    pub fn session_memory_split(&self) -> (usize, usize) {
        let ring = self.session_memory_bytes / 2;
        (ring, self.session_memory_bytes - ring)
    }

    /// Reads `path` if it exists, then applies the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        config.apply_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))?;
        config.check().map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Rules the types alone do not express.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.session_memory_bytes < MIN_SESSION_MEMORY {
            return Err(format!(
                "session_memory_bytes is at least {MIN_SESSION_MEMORY} (64 KiB), not {}",
                self.session_memory_bytes
            ));
        }
        if self.tools.max_steps == 0 {
            return Err("tools.max_steps is at least 1".into());
        }
        self.targets
            .iter()
            .try_for_each(|(name, target)| target.check(name))?;
        let mut names = std::collections::BTreeSet::new();
        for m in &self.mcp_servers {
            m.validate()?;
            if !names.insert(m.name.as_str()) {
                return Err(format!("mcp_servers: the name {} is used twice", m.name));
            }
        }
        crate::checks::config::check_all(&self.checks)
    }

    pub(crate) fn apply_env(
        &mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = var("LOOPCHAT_AGENT") {
            self.agent.backend = match v.as_str() {
                "echo" => Backend::Echo,
                "openai" => Backend::Openai,
                "command" => Backend::Command,
                "pi" => Backend::Pi,
                _ => {
                    return Err(ConfigError::Env {
                        name: "LOOPCHAT_AGENT",
                        message: format!("{v:?} is not one of echo, openai, command, pi"),
                    });
                }
            };
        }
        if let Some(v) = var("LOOPCHAT_OPENAI_BASE_URL") {
            self.agent.openai.base_url = v;
        }
        if let Some(v) = var("LOOPCHAT_OPENAI_MODEL") {
            self.agent.openai.model = v;
        }
        if let Some(v) = var("LOOPCHAT_OPENAI_API_KEY") {
            self.agent.openai.api_key = Some(v);
        } else if let Some(name) = self.agent.openai.api_key_env.clone() {
            self.agent.openai.api_key = var(&name);
        }
        if let Some(v) = var("LOOPCHAT_AGENT_COMMAND") {
            self.agent.command.argv = serde_json::from_str(&v).map_err(|e| ConfigError::Env {
                name: "LOOPCHAT_AGENT_COMMAND",
                message: format!("expected a JSON array of strings: {e}"),
            })?;
        }
        if let Some(v) = var("LOOPCHAT_AGENT_COMMAND_STDIN") {
            self.agent.command.stdin = match v.as_str() {
                "text" => CommandStdin::Text,
                "json" => CommandStdin::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "LOOPCHAT_AGENT_COMMAND_STDIN",
                        message: format!("{v:?} is not one of text, json"),
                    });
                }
            };
        }
        if let Some(v) = var("LOOPCHAT_PI_COMMAND") {
            self.agent.pi.command = serde_json::from_str(&v).map_err(|e| ConfigError::Env {
                name: "LOOPCHAT_PI_COMMAND",
                message: format!("expected a JSON array of strings: {e}"),
            })?;
        }
        if let Some(v) = var("LOOPCHAT_PI_PROVIDER") {
            self.agent.pi.provider = Some(v);
        }
        if let Some(v) = var("LOOPCHAT_PI_MODEL") {
            self.agent.pi.model = Some(v);
        }
        if let Some(v) = var("LOOPCHAT_PI_IDLE_EXIT_SECS") {
            self.agent.pi.idle_exit_secs = v.parse().map_err(|_| ConfigError::Env {
                name: "LOOPCHAT_PI_IDLE_EXIT_SECS",
                message: "expected seconds".into(),
            })?;
        }
        if let Some(v) = var("LOOPCHAT_ECHO_DELAY_MS") {
            self.agent.echo.delay_ms = v.parse().map_err(|_| ConfigError::Env {
                name: "LOOPCHAT_ECHO_DELAY_MS",
                message: "expected milliseconds".into(),
            })?;
        }
        for (name, slot) in [
            ("LOOPCHAT_WS_PING_SECS", &mut self.ws_ping_secs),
            (
                "LOOPCHAT_TCP_USER_TIMEOUT_SECS",
                &mut self.tcp_user_timeout_secs,
            ),
        ] {
            if let Some(v) = var(name) {
                // Zero would make the ping timer spin (tokio refuses it).
                *slot =
                    v.parse()
                        .ok()
                        .filter(|&secs| secs > 0)
                        .ok_or_else(|| ConfigError::Env {
                            name,
                            message: "expected a whole number of seconds, at least 1".into(),
                        })?;
            }
        }
        if let Some(v) = var("LOOPCHAT_PORT") {
            self.port = Some(v.parse().map_err(|_| ConfigError::Env {
                name: "LOOPCHAT_PORT",
                message: "expected a port number".into(),
            })?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env() {
        let mut c: Config = toml::from_str(
            r#"
            allowed_hosts = ["box.lan"]
            [agent]
            backend = "openai"
            [agent.openai]
            base_url = "http://127.0.0.1:1/v1"
            model = "m"
            api_key_env = "MY_KEY"
            "#,
        )
        .unwrap();
        assert_eq!(c.agent.backend, Backend::Openai);
        c.apply_env(|n| match n {
            "MY_KEY" => Some("sk-1".into()),
            "LOOPCHAT_OPENAI_MODEL" => Some("m2".into()),
            "LOOPCHAT_AGENT_COMMAND" => Some(r#"["/bin/cat"]"#.into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.agent.openai.model, "m2");
        assert_eq!(c.agent.openai.api_key.as_deref(), Some("sk-1"));
        assert_eq!(c.agent.command.argv, vec!["/bin/cat"]);
        assert!(toml::from_str::<Config>("prot = 1").is_err());
        assert!(
            Config::default()
                .apply_env(|n| (n == "LOOPCHAT_AGENT").then(|| "gpt".into()))
                .is_err()
        );
    }

    #[test]
    fn pi_and_command_stdin_from_the_environment() {
        let mut c = Config::default();
        assert_eq!(c.agent.pi.command, vec!["pi"]);
        c.apply_env(|n| match n {
            "LOOPCHAT_AGENT" => Some("pi".into()),
            "LOOPCHAT_PI_COMMAND" => Some(r#"["/opt/pi/bin/pi","--verbose"]"#.into()),
            "LOOPCHAT_PI_PROVIDER" => Some("llama".into()),
            "LOOPCHAT_PI_MODEL" => Some("qwen".into()),
            "LOOPCHAT_PI_IDLE_EXIT_SECS" => Some("30".into()),
            "LOOPCHAT_AGENT_COMMAND_STDIN" => Some("json".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.agent.backend, Backend::Pi);
        assert_eq!(c.agent.pi.command, vec!["/opt/pi/bin/pi", "--verbose"]);
        assert_eq!(c.agent.pi.provider.as_deref(), Some("llama"));
        assert_eq!(c.agent.pi.model.as_deref(), Some("qwen"));
        assert_eq!(c.agent.pi.idle_exit_secs, 30);
        assert_eq!(c.agent.command.stdin, CommandStdin::Json);
        for (name, bad) in [
            ("LOOPCHAT_PI_COMMAND", "pi"),
            ("LOOPCHAT_PI_IDLE_EXIT_SECS", "soon"),
            ("LOOPCHAT_AGENT_COMMAND_STDIN", "yaml"),
        ] {
            let err = Config::default()
                .apply_env(|n| (n == name).then(|| bad.into()))
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let c: Config = toml::from_str(
            "[agent]\nbackend = \"pi\"\n[agent.pi]\nmodel = \"m\"\nidle_exit_secs = 5",
        )
        .unwrap();
        assert_eq!(
            (c.agent.backend, c.agent.pi.idle_exit_secs),
            (Backend::Pi, 5)
        );
        assert!(toml::from_str::<Config>("[agent.pi]\nmodle = \"m\"").is_err());
    }

    #[test]
    fn keepalive_timings_come_from_the_environment_only() {
        let mut c = Config::default();
        assert_eq!((c.ws_ping_secs, c.tcp_user_timeout_secs), (30, 90));
        c.apply_env(|n| match n {
            "LOOPCHAT_WS_PING_SECS" => Some("1".into()),
            "LOOPCHAT_TCP_USER_TIMEOUT_SECS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.ws_ping_secs, c.tcp_user_timeout_secs), (1, 5));
        for name in ["LOOPCHAT_WS_PING_SECS", "LOOPCHAT_TCP_USER_TIMEOUT_SECS"] {
            for bad in ["0", "-1", "soon", "1.5"] {
                let err = Config::default()
                    .apply_env(|n| (n == name).then(|| bad.into()))
                    .unwrap_err();
                assert!(err.to_string().contains(name), "{name}={bad}: {err}");
            }
        }
        assert!(toml::from_str::<Config>("ws_ping_secs = 1").is_err());
    }

    #[test]
    fn targets_need_one_valid_kind() {
        let c: Config = toml::from_str(
            r#"
            [targets.phone]
            webhook = "https://ntfy.example/topic"
            headers = { Authorization = "Bearer x" }
            [targets.desk]
            command = ["notify-send", "loopchat"]
            timeout_secs = 5
            "#,
        )
        .unwrap();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.targets["desk"].timeout_secs, 5);
        assert_eq!(c.targets["phone"].timeout_secs, 30);
        assert_eq!(c.targets["phone"].retries, 2);
        for (bad, says) in [
            ("[targets.x]\n", "exactly one of"),
            (
                "[targets.x]\nwebhook = \"http://a\"\ncommand = [\"b\"]",
                "exactly one of",
            ),
            (
                "[targets.x]\nwebhook = \"file:///etc/passwd\"",
                "http(s) URL",
            ),
            ("[targets.x]\ncommand = []", "is empty"),
            (
                "[targets.x]\ncommand = [\"a\"]\nheaders = { A = \"b\" }",
                "only applies to a webhook",
            ),
            ("[targets.\"a b\"]\ncommand = [\"a\"]", "target name"),
            ("[targets.x]\ncommand = [\"a\"]\nretries = 6", "at most 5"),
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            let err = c.check().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(toml::from_str::<Config>("[targets.x]\nurl = \"http://a\"").is_err());
    }
}
