//! Whether a tool call runs, asks first, or is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Allow,
    Ask,
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Ask => "ask",
            Self::Deny => "deny",
        }
    }
}

/// The policy for `tool`: the configured one, else the default, which lets
/// only `read` (it changes nothing) run without asking. Everything else —
/// `write`, `edit`, `bash` and every MCP tool — asks.
pub fn policy_for(configured: &BTreeMap<String, Policy>, tool: &str) -> Policy {
    if let Some(p) = configured.get(tool) {
        return *p;
    }
    match tool {
        "read" => Policy::Allow,
        _ => Policy::Ask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let mut c = BTreeMap::new();
        assert_eq!(policy_for(&c, "read"), Policy::Allow);
        for t in ["write", "edit", "bash", "everything__echo"] {
            assert_eq!(policy_for(&c, t), Policy::Ask);
        }
        c.insert("bash".to_owned(), Policy::Deny);
        c.insert("read".to_owned(), Policy::Ask);
        assert_eq!(policy_for(&c, "bash"), Policy::Deny);
        assert_eq!(policy_for(&c, "read"), Policy::Ask);
    }
}
