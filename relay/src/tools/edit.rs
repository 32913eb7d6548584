//! `edit`: exact-text replacements, each of which must match once.
//!
//! pi's current schema (`edits: [{oldText, newText}]`), and its legacy form
//! (`oldText`/`newText` beside `path`) folded into it as pi does. Matching
//! is exact (pi also tries a whitespace- and quote-normalised match; a
//! relay that asks before it writes shows the exact text instead). A BOM is
//! kept and CRLF files stay CRLF.

use serde_json::{Value, json};

use super::{Output, Workspace, arg_str};

pub const DESCRIPTION: &str = "Edit a single file using exact text replacement. Every edits[].oldText must match a unique, non-overlapping region of the original file. If two changes affect the same block or nearby lines, merge them into one edit instead of emitting overlapping edits. Do not include large unchanged regions just to connect distant changes.";

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Path to the file to edit (relative or absolute)"},
            "edits": {
                "type": "array",
                "description": "One or more targeted replacements. Each edit is matched against the original file, not incrementally. Do not include overlapping or nested edits. If two changes touch the same block or nearby lines, merge them into one edit instead.",
                "items": {
                    "type": "object",
                    "properties": {
                        "oldText": {"type": "string", "description": "Exact text for one targeted replacement. It must be unique in the original file and must not overlap with any other edits[].oldText in the same call."},
                        "newText": {"type": "string", "description": "Replacement text for this targeted edit."}
                    },
                    "required": ["oldText", "newText"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["path", "edits"],
        "additionalProperties": false
    })
}

/// pi's `prepareEditArguments`: `edits` sent as a JSON string is parsed, and
/// a top-level `oldText`/`newText` pair becomes one more edit. Runs before
/// the schema check.
pub fn prepare(mut args: Value) -> Value {
    let Some(obj) = args.as_object_mut() else {
        return args;
    };
    if let Some(Value::String(s)) = obj.get("edits")
        && let Ok(parsed @ Value::Array(_)) = serde_json::from_str::<Value>(s)
    {
        obj.insert("edits".into(), parsed);
    }
    if let (Some(Value::String(_)), Some(Value::String(_))) =
        (obj.get("oldText"), obj.get("newText"))
    {
        let old = obj.remove("oldText").unwrap_or_default();
        let new = obj.remove("newText").unwrap_or_default();
        let mut edits = match obj.remove("edits") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        edits.push(json!({"oldText": old, "newText": new}));
        obj.insert("edits".into(), Value::Array(edits));
    }
    args
}

pub async fn run(ws: &Workspace, args: &Value) -> Output {
    let path = arg_str(args, "path");
    let edits: Vec<(String, String)> = args["edits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        arg_str(e, "oldText").to_owned(),
                        arg_str(e, "newText").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if edits.is_empty() {
        return Output::error(
            "Edit tool input is invalid. edits must contain at least one replacement.",
        );
    }
    let real = match ws.resolve(path) {
        Ok(p) => p,
        Err(e) => return Output::error(e),
    };
    let raw = match tokio::fs::read(&real).await {
        Ok(b) => b,
        Err(e) => return Output::error(format!("Could not edit file: {path}. {e}.")),
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return Output::error(format!(
            "Could not edit file: {path}. It is not UTF-8 text."
        ));
    };
    let (bom, content) = match raw.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", raw.as_str()),
    };
    let crlf = content.contains("\r\n");
    let normalised = content.replace("\r\n", "\n");
    let new = match apply(&normalised, &edits, path) {
        Ok(n) => n,
        Err(e) => return Output::error(e),
    };
    let restored = if crlf { new.replace('\n', "\r\n") } else { new };
    if let Err(e) = tokio::fs::write(&real, format!("{bom}{restored}")).await {
        return Output::error(format!("Could not edit file: {path}. {e}."));
    }
    Output::text(format!(
        "Successfully replaced {} block(s) in {path}.",
        edits.len()
    ))
}

/// All edits matched against the same original, applied back to front. The
/// errors are pi's sentences.
pub fn apply(content: &str, edits: &[(String, String)], path: &str) -> Result<String, String> {
    let n = edits.len();
    let mut matched = Vec::with_capacity(n);
    for (i, (old, new)) in edits.iter().enumerate() {
        let old = old.replace("\r\n", "\n");
        let new = new.replace("\r\n", "\n");
        if old.is_empty() {
            return Err(if n == 1 {
                format!("oldText must not be empty in {path}.")
            } else {
                format!("edits[{i}].oldText must not be empty in {path}.")
            });
        }
        let Some(at) = content.find(&old) else {
            return Err(if n == 1 {
                format!(
                    "Could not find the exact text in {path}. The old text must match exactly including all whitespace and newlines."
                )
            } else {
                format!(
                    "Could not find edits[{i}] in {path}. The oldText must match exactly including all whitespace and newlines."
                )
            });
        };
        let count = content.matches(&old).count();
        if count > 1 {
            return Err(if n == 1 {
                format!(
                    "Found {count} occurrences of the text in {path}. The text must be unique. Please provide more context to make it unique."
                )
            } else {
                format!(
                    "Found {count} occurrences of edits[{i}] in {path}. Each oldText must be unique. Please provide more context to make it unique."
                )
            });
        }
        matched.push((at, old.len(), new, i));
    }
    matched.sort_by_key(|m| m.0);
    for w in matched.windows(2) {
        if w[0].0 + w[0].1 > w[1].0 {
            return Err(format!(
                "edits[{}] and edits[{}] overlap in {path}. Merge them into one edit or target disjoint regions.",
                w[0].3, w[1].3
            ));
        }
    }
    let mut out = content.to_owned();
    for (at, len, new, _) in matched.iter().rev() {
        out.replace_range(*at..*at + *len, new);
    }
    if out == content {
        return Err(if n == 1 {
            format!(
                "No changes made to {path}. The replacement produced identical content. This might indicate an issue with special characters or the text not existing as expected."
            )
        } else {
            format!("No changes made to {path}. The replacements produced identical content.")
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(old: &str, new: &str) -> (String, String) {
        (old.into(), new.into())
    }

    #[test]
    fn unique_exact_matches() {
        assert_eq!(apply("a b c", &[e("b", "B")], "f").unwrap(), "a B c");
        assert_eq!(
            apply("one two three", &[e("three", "3"), e("one", "1")], "f").unwrap(),
            "1 two 3"
        );
        let err = apply("x x", &[e("x", "y")], "f").unwrap_err();
        assert_eq!(
            err,
            "Found 2 occurrences of the text in f. The text must be unique. Please provide more context to make it unique."
        );
        let err = apply("abc", &[e("zzz", "y")], "f").unwrap_err();
        assert!(err.starts_with("Could not find the exact text in f."));
        let err = apply("abc", &[e("a", "b"), e("zz", "y")], "f").unwrap_err();
        assert!(err.starts_with("Could not find edits[1] in f."));
        let err = apply("abcdef", &[e("abc", "x"), e("cde", "y")], "f").unwrap_err();
        assert!(err.contains("overlap"));
        assert!(
            apply("abc", &[e("", "y")], "f")
                .unwrap_err()
                .contains("must not be empty")
        );
        assert!(
            apply("abc", &[e("b", "b")], "f")
                .unwrap_err()
                .starts_with("No changes made to f.")
        );
    }

    #[test]
    fn legacy_and_string_forms() {
        let a = prepare(json!({"path": "p", "oldText": "a", "newText": "b"}));
        assert_eq!(
            a,
            json!({"path": "p", "edits": [{"oldText": "a", "newText": "b"}]})
        );
        let a = prepare(json!({"path": "p", "edits": "[{\"oldText\":\"a\",\"newText\":\"b\"}]"}));
        assert_eq!(a["edits"][0]["newText"], "b");
    }

    #[tokio::test]
    async fn keeps_bom_and_crlf() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path(), true).unwrap();
        std::fs::write(d.path().join("f.txt"), "\u{feff}one\r\ntwo\r\n").unwrap();
        let out = run(
            &ws,
            &json!({"path": "f.txt", "edits": [{"oldText": "one\ntwo", "newText": "1\n2"}]}),
        )
        .await;
        assert_eq!(
            out.text_of(),
            "Successfully replaced 1 block(s) in f.txt.",
            "{out:?}"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("f.txt")).unwrap(),
            "\u{feff}1\r\n2\r\n"
        );
        let out = run(
            &ws,
            &json!({"path": "nope.txt", "edits": [{"oldText": "a", "newText": "b"}]}),
        )
        .await;
        assert!(out.is_error && out.text_of().starts_with("Could not edit file: nope.txt."));
        // A failed edit leaves the file as it was.
        let out = run(
            &ws,
            &json!({"path": "f.txt", "edits": [{"oldText": "zz", "newText": "b"}]}),
        )
        .await;
        assert!(out.is_error);
        assert_eq!(
            std::fs::read_to_string(d.path().join("f.txt")).unwrap(),
            "\u{feff}1\r\n2\r\n"
        );
    }
}
