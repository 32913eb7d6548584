//! `loopchat token create|list|revoke|rotate`: edit the home's token files
//! directly (no relay needed; a running relay picks the change up itself).

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::home::Home;
use crate::notify::tokens::{self, Scope};
use crate::{auth, discovery};

/// Prints the new token alone on stdout (for `$(loopchat token create …)`).
pub fn create(home: &Home, scope: Scope, name: Option<String>) -> anyhow::Result<ExitCode> {
    let (token, secret) = tokens::create(&home.tokens_file(), scope, name)
        .with_context(|| format!("cannot update {}", home.tokens_file().display()))?;
    println!("{secret}");
    eprintln!(
        "created {} token {} — shown once; revoke it with `loopchat token revoke {}`",
        token.scope.as_str(),
        token.id,
        token.id
    );
    Ok(ExitCode::SUCCESS)
}

/// A token as listed: never its secret (which is not stored) nor its hash.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    name: Option<String>,
    scope: Scope,
    created_at: String,
}

pub fn list(home: &Home, as_json: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<Listed> = tokens::read(&home.tokens_file())?
        .into_iter()
        .map(|t| Listed {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_at: t.created_at,
        })
        .collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tokens": list }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no scoped tokens (create one with `loopchat token create --scope notify`)");
    }
    for t in list {
        println!(
            "{:<14} {:<8} {}  {}",
            t.id,
            t.scope.as_str(),
            t.created_at,
            t.name.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(home: &Home, id: &str) -> anyhow::Result<ExitCode> {
    if !tokens::revoke(&home.tokens_file(), id)
        .with_context(|| format!("cannot update {}", home.tokens_file().display()))?
    {
        bail!("no token with id {id:?} (see `loopchat token list`)");
    }
    eprintln!("revoked {id}");
    Ok(ExitCode::SUCCESS)
}

/// Replaces the main token. Open windows must log in again (the relay
/// closes their streams, see `credentials`); the discovery file is updated
/// so that client commands keep working at once.
pub fn rotate(home: &Home) -> anyhow::Result<ExitCode> {
    let token = auth::new_token();
    auth::write_token(&home.token_file(), &token)
        .with_context(|| format!("cannot write {}", home.token_file().display()))?;
    let path = home.discovery_file();
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(mut d) = loopchat_proto::Discovery::parse(&bytes)
    {
        d.token = token;
        discovery::write(&path, &d).with_context(|| format!("cannot update {}", path.display()))?;
    }
    eprintln!(
        "the main token was replaced; within a second a running relay refuses the old one and \
         closes the streams opened with it. Open windows must be opened again \
         (`loopchat info --json` shows the token)."
    );
    Ok(ExitCode::SUCCESS)
}
