//! Sessions in and out as files: export (Markdown, self-contained HTML, the
//! transcript as stored) and import (pi session files, ChatGPT exports).
//! Knows the store and the renderer, not HTTP: the endpoints and the CLI
//! call it.

pub mod export;
pub mod import;
