//! Export and import of sessions (`GET /webchat/export`,
//! `POST /webchat/import`, `loopchat export`/`import`): the formats, the
//! names of exported files and the import's answer.

use serde::{Deserialize, Serialize};

/// How a session is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The conversation (the current branch) as Markdown.
    Md,
    /// The conversation as one self-contained HTML file: nothing fetched.
    Html,
    /// The session's transcript (pi's session file, every branch), byte
    /// for byte as stored.
    Jsonl,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Md => "md",
            Self::Html => "html",
            Self::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Md => "text/markdown; charset=utf-8",
            Self::Html => "text/html; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
        }
    }

    /// The file name an export of `key` is offered under: the key (whose
    /// characters are safe in a file name, `:` aside) and the extension.
    pub fn file_name(self, key: &str) -> String {
        format!("{}.{}", key.replace(':', "-"), self.extension())
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "md" | "markdown" => Ok(Self::Md),
            "html" => Ok(Self::Html),
            "jsonl" => Ok(Self::Jsonl),
            other => Err(format!(
                "unknown export format {other:?}: expected md, html or jsonl"
            )),
        }
    }
}

/// What an imported file is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// Told apart by the first character: `[` is a ChatGPT export, `{` a
    /// JSONL transcript.
    #[default]
    Auto,
    /// A pi (or loopchat) session file, any version the store reads.
    Pi,
    /// ChatGPT's `conversations.json`.
    Chatgpt,
}

impl std::str::FromStr for ImportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "pi" | "jsonl" => Ok(Self::Pi),
            "chatgpt" => Ok(Self::Chatgpt),
            other => Err(format!(
                "unknown import format {other:?}: expected auto, pi or chatgpt"
            )),
        }
    }
}

/// The largest file `POST /webchat/import` takes unless `import_limit`
/// says otherwise (served in `InfoResponse::import_limit`).
pub const DEFAULT_IMPORT_LIMIT: usize = 64 * 1024 * 1024;

/// One session an import created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedSession {
    /// The new session's key (generated: `import-` and 12 hex digits).
    pub key: String,
    pub session_id: String,
    /// Its name (pi's `session_info`), when the file had one.
    pub title: Option<String>,
    /// Messages on its conversation (the current branch).
    pub messages: usize,
}

/// `POST /webchat/import`: the sessions created, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportResponse {
    pub ok: bool,
    pub sessions: Vec<ImportedSession>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_files() {
        assert_eq!("md".parse::<ExportFormat>(), Ok(ExportFormat::Md));
        assert!("pdf".parse::<ExportFormat>().is_err());
        assert_eq!(ExportFormat::Html.file_name("a:b"), "a-b.html");
        assert_eq!("chatgpt".parse::<ImportFormat>(), Ok(ImportFormat::Chatgpt));
        assert!("zip".parse::<ImportFormat>().is_err());
    }
}
