//! `write`: a whole file, creating its parent directories.

use serde_json::{Value, json};

use super::{Output, Workspace, arg_str};

pub const DESCRIPTION: &str = "Write content to a file. Creates the file if it doesn't exist, overwrites if it does. Automatically creates parent directories.";

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Path to the file to write (relative or absolute)"},
            "content": {"type": "string", "description": "Content to write to the file"}
        },
        "required": ["path", "content"]
    })
}

pub async fn run(ws: &Workspace, args: &Value) -> Output {
    let path = arg_str(args, "path");
    let content = arg_str(args, "content");
    let real = match ws.resolve(path) {
        Ok(p) => p,
        Err(e) => return Output::error(e),
    };
    if let Some(dir) = real.parent()
        && let Err(e) = tokio::fs::create_dir_all(dir).await
    {
        return Output::error(format!("Could not create the directories of {path}: {e}"));
    }
    if let Err(e) = tokio::fs::write(&real, content).await {
        return Output::error(format!("Could not write {path}: {e}"));
    }
    // pi counts `content.length`: UTF-16 code units.
    let n = content.encode_utf16().count();
    Output::text(format!("Successfully wrote {n} bytes to {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_parents_and_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path(), true).unwrap();
        let out = run(&ws, &json!({"path": "a/b/c.txt", "content": "héllo"})).await;
        assert_eq!(out.text_of(), "Successfully wrote 5 bytes to a/b/c.txt");
        assert_eq!(
            std::fs::read_to_string(d.path().join("a/b/c.txt")).unwrap(),
            "héllo"
        );
        run(&ws, &json!({"path": "a/b/c.txt", "content": "x"})).await;
        assert_eq!(
            std::fs::read_to_string(d.path().join("a/b/c.txt")).unwrap(),
            "x"
        );
        let out = run(&ws, &json!({"path": "../escape.txt", "content": "x"})).await;
        assert!(out.is_error && out.text_of().contains("outside the workspace"));
        assert!(!d.path().parent().unwrap().join("escape.txt").exists());
    }
}
