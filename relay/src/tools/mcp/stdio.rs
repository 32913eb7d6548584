//! MCP servers run as a child process, spoken to over its stdin and stdout.

use std::ffi::OsString;
use std::path::Path;

use rmcp::transport::TokioChildProcess;
use tokio::io::AsyncBufReadExt;

use super::McpServerConfig;

/// Spawns the server's command; the caller initialises the connection.
pub(super) fn spawn(
    c: &McpServerConfig,
    env: &[(OsString, OsString)],
    cwd: &Path,
) -> Result<TokioChildProcess, String> {
    let program = c.command.as_deref().ok_or("no command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&c.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(&c.env)
        .current_dir(cwd)
        .kill_on_drop(true);
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(stderr) = stderr {
        let name = c.name.clone();
        // What a server prints on stderr is its log: kept at debug, so a
        // chatty server cannot fill the relay's log.
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "loopchat_relay::mcp", server = %name, "{line}");
            }
        });
    }
    Ok(transport)
}
