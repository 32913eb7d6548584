use serde::{Deserialize, Serialize};

/// `$LOOPCHAT_HOME/relay.json`: how clients (CLI, shell, remote shell over
/// SSH) find a running relay without any port configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub version: u32,
    pub pid: u32,
    pub port: u16,
    pub base_url: String,
    pub token: String,
    pub started_at: String,
    pub store: String,
}
