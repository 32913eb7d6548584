//! The agent's built-in tools, with pi's names, schemas and semantics
//! (`read`, `write`, `edit`, `bash`), and what decides whether a call runs.
//!
//! A [`Toolbox`] knows the workspace, the limits and the policies; the
//! pipeline asks it for the tool list of a request, checks each call with
//! [`Toolbox::prepare`] and runs it with [`Toolbox::run`]. It knows nothing
//! of the store, events or HTTP: output goes to a callback.

pub mod bash;
pub mod edit;
pub mod mcp;
pub mod policy;
pub mod read;
pub mod schema;
pub mod truncate;
pub mod workspace;
pub mod write;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use bash::BashLimits;
pub use policy::{Policy, policy_for};
pub use workspace::Workspace;

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments.
    pub parameters: Value,
}

/// A tool's result in pi's shape: content blocks (`text`, `image`) and
/// whether it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub content: Vec<Value>,
    pub is_error: bool,
}

impl Output {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![json!({"type": "text", "text": text.into()})],
            is_error: false,
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            is_error: true,
            ..Self::text(text)
        }
    }

    /// The text blocks joined.
    pub fn text_only(&self) -> String {
        loopchat_proto::Content::Parts(self.content.clone()).text()
    }
}

#[cfg(test)]
impl Output {
    fn text_of(&self) -> String {
        self.text_only()
    }
}

const BUILTIN: [&str; 4] = ["read", "write", "edit", "bash"];

pub struct Toolbox {
    workspace: Workspace,
    bash: BashLimits,
    policies: BTreeMap<String, Policy>,
    env: Vec<(OsString, OsString)>,
    mcp: Option<Arc<mcp::McpHub>>,
}

/// A tool in a listing: where it comes from (`builtin` or the MCP server's
/// name), its policy, and whether it can be called right now.
#[derive(Debug, Clone)]
pub struct Listed {
    pub spec: ToolSpec,
    pub source: String,
    pub policy: Policy,
    pub available: bool,
}

impl Toolbox {
    /// `secrets` are values that must not reach a command's environment
    /// (the relay's token): a variable holding one is left out, like every
    /// `LOOPCHAT_*` variable.
    pub fn new(
        workspace: Workspace,
        bash: BashLimits,
        policies: BTreeMap<String, Policy>,
        secrets: &[String],
    ) -> Self {
        let env = std::env::vars_os()
            .filter(|(k, v)| {
                let k = k.to_string_lossy();
                let v = v.to_string_lossy();
                !k.starts_with("LOOPCHAT_")
                    && !secrets
                        .iter()
                        .any(|s| !s.is_empty() && v.contains(s.as_str()))
            })
            .collect();
        Self {
            workspace,
            bash,
            policies,
            env,
            mcp: None,
        }
    }

    /// Offers the tools of these MCP servers too.
    pub fn with_mcp(mut self, hub: Arc<mcp::McpHub>) -> Self {
        self.mcp = Some(hub);
        self
    }

    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    /// The environment `bash` commands get.
    pub fn command_env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The tools a request offers: not denied, and (MCP) their server up.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.listing()
            .into_iter()
            .filter(|t| t.available && t.policy != Policy::Deny)
            .map(|t| t.spec)
            .collect()
    }

    /// Every tool with its source and policy, denied and unavailable ones
    /// included (for listings).
    pub fn listing(&self) -> Vec<Listed> {
        let mut out: Vec<Listed> = BUILTIN
            .iter()
            .map(|n| Listed {
                spec: spec(n),
                source: "builtin".into(),
                policy: self.policy(n),
                available: true,
            })
            .collect();
        if let Some(hub) = &self.mcp {
            out.extend(hub.tools().into_iter().map(|t| Listed {
                policy: self.policy(&t.spec.name),
                spec: t.spec,
                source: t.server,
                available: t.available,
            }));
        }
        out
    }

    pub fn knows(&self, name: &str) -> bool {
        BUILTIN.contains(&name)
    }

    fn mcp_server_of(&self, name: &str) -> bool {
        !BUILTIN.contains(&name)
            && self
                .mcp
                .as_ref()
                .is_some_and(|h| h.server_of(name).is_some())
    }

    pub fn policy(&self, name: &str) -> Policy {
        policy_for(&self.policies, name)
    }

    /// The call's arguments, parsed and checked against the tool's schema;
    /// the error is a sentence for the model.
    pub fn prepare(&self, name: &str, arguments: &str) -> Result<Value, String> {
        let mcp_spec = match &self.mcp {
            Some(hub) if self.mcp_server_of(name) => Some(hub.spec_of(name)?),
            _ => None,
        };
        if mcp_spec.is_none() && !self.knows(name) {
            return Err(format!(
                "Tool {name} not found. The tools are: {}",
                self.specs()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let raw = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let args: Value = serde_json::from_str(raw).map_err(|e| {
            format!("The arguments of {name} are not valid JSON ({e}); send one JSON object")
        })?;
        let args = if name == "edit" {
            edit::prepare(args)
        } else {
            args
        };
        if !args.is_object() {
            return Err(format!("The arguments of {name} must be one JSON object"));
        }
        let parameters = match mcp_spec {
            Some(s) => s.parameters,
            None => spec(name).parameters,
        };
        schema::check(&parameters, &args)
            .map_err(|e| format!("Invalid arguments for {name}: {e}"))?;
        Ok(args)
    }

    /// Runs a prepared call. `on_output` gets streamed output (`bash`).
    pub async fn run(
        &self,
        name: &str,
        args: &Value,
        on_output: &(dyn Fn(String) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Output {
        let ws = &self.workspace;
        let work = async {
            match name {
                "read" => read::run(ws, args).await,
                "write" => write::run(ws, args).await,
                "edit" => edit::run(ws, args).await,
                "bash" => bash::run(ws, args, &self.env, &self.bash, on_output, cancel).await,
                other if self.mcp_server_of(other) => match &self.mcp {
                    Some(hub) => hub.call(other, args, cancel).await,
                    None => Output::error(format!("Tool {other} not found")),
                },
                other => Output::error(format!("Tool {other} not found")),
            }
        };
        tokio::select! {
            biased;
            // bash handles its own cancel (it must kill its group first).
            () = cancel.cancelled(), if name != "bash" => Output::error("Operation aborted"),
            out = work => out,
        }
    }
}

fn spec(name: &str) -> ToolSpec {
    let (description, parameters) = match name {
        "read" => (read::DESCRIPTION, read::schema()),
        "write" => (write::DESCRIPTION, write::schema()),
        "edit" => (edit::DESCRIPTION, edit::schema()),
        _ => (bash::DESCRIPTION, bash::schema()),
    };
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    }
}

/// A string argument (checked by the schema before a tool runs).
fn arg_str<'a>(args: &'a Value, key: &str) -> &'a str {
    args.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A positive whole-number argument; pi's `Type.Number` allows fractions,
/// which are cut.
fn arg_usize(args: &Value, key: &str) -> Option<usize> {
    let f = args.get(key)?.as_f64()?;
    (f >= 0.0).then_some(f as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolbox(dir: &std::path::Path) -> Toolbox {
        Toolbox::new(
            Workspace::new(dir, true).unwrap(),
            BashLimits::default(),
            BTreeMap::new(),
            &[],
        )
    }

    #[test]
    fn specs_are_pis() {
        let d = tempfile::tempdir().unwrap();
        let t = toolbox(d.path());
        let names: Vec<String> = t.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["read", "write", "edit", "bash"]);
        let mut p = BTreeMap::new();
        p.insert("bash".to_owned(), Policy::Deny);
        let t = Toolbox::new(
            Workspace::new(d.path(), true).unwrap(),
            BashLimits::default(),
            p,
            &[],
        );
        assert!(!t.specs().iter().any(|s| s.name == "bash"));
    }

    #[test]
    fn bad_calls_get_sentences() {
        let d = tempfile::tempdir().unwrap();
        let t = toolbox(d.path());
        assert!(
            t.prepare("rm", "{}")
                .unwrap_err()
                .starts_with("Tool rm not found.")
        );
        assert!(
            t.prepare("read", "{\"path\":")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            t.prepare("read", "{}")
                .unwrap_err()
                .contains("missing the required \"path\"")
        );
        assert!(
            t.prepare("write", r#"{"path":"a","content":3}"#)
                .unwrap_err()
                .contains("content must be string")
        );
        // The legacy edit form is accepted.
        let a = t
            .prepare("edit", r#"{"path":"a","oldText":"x","newText":"y"}"#)
            .unwrap();
        assert_eq!(a["edits"][0]["oldText"], "x");
        assert!(
            t.prepare("edit", r#"{"path":"a","edits":[],"bogus":1}"#)
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn secrets_and_loopchat_vars_stay_out_of_commands() {
        // SAFETY: tests of this module read the environment only here.
        unsafe {
            std::env::set_var("LOOPCHAT_TOOLS_TEST_VAR", "x");
            std::env::set_var("TOOLS_TEST_HOLDS_TOKEN", "Bearer tok-secret-123");
        }
        let d = tempfile::tempdir().unwrap();
        let t = Toolbox::new(
            Workspace::new(d.path(), true).unwrap(),
            BashLimits::default(),
            BTreeMap::new(),
            &["tok-secret-123".into()],
        );
        let keys: Vec<String> = t
            .command_env()
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(!keys.iter().any(|k| k.starts_with("LOOPCHAT_")));
        assert!(!keys.iter().any(|k| k == "TOOLS_TEST_HOLDS_TOKEN"));
        assert!(keys.iter().any(|k| k == "PATH"));
    }

    #[tokio::test]
    async fn runs_a_prepared_call() {
        let d = tempfile::tempdir().unwrap();
        let t = toolbox(d.path());
        let args = t
            .prepare("write", r#"{"path":"x/y.txt","content":"hi"}"#)
            .unwrap();
        let out = t
            .run("write", &args, &|_| {}, &CancellationToken::new())
            .await;
        assert!(!out.is_error);
        let args = t.prepare("read", r#"{"path":"x/y.txt"}"#).unwrap();
        let out = t
            .run("read", &args, &|_| {}, &CancellationToken::new())
            .await;
        assert_eq!(out.text_of(), "hi");
    }
}
