//! A strict check of tool arguments against their JSON schema.
//!
//! The built-in tools' schemas are flat objects of strings and numbers (and
//! `edit`'s array of two-string objects), and MCP servers use the same
//! subset in practice. This checks that subset exactly — `type`,
//! `properties`, `required`, `additionalProperties: false`, `items`, `enum`
//! — and ignores keywords it does not know, rather than pulling in a full
//! JSON-schema engine (and its HTTP resolver) for them. The error names the
//! argument, for the model to correct itself.

use serde_json::Value;

pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    check_at(schema, value, "")
}

fn check_at(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let here = || {
        if at.is_empty() {
            "the arguments".to_owned()
        } else {
            at.to_owned()
        }
    };
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "{} must be one of {}",
            here(),
            Value::Array(allowed.clone())
        ));
    }
    let Some(ty) = schema.get("type") else {
        return Ok(());
    };
    let types: Vec<&str> = match ty {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    if !types.iter().any(|t| has_type(value, t)) {
        return Err(format!(
            "{} must be {}, not {}",
            here(),
            types.join(" or "),
            kind(value)
        ));
    }
    match value {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for name in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(name) {
                        return Err(format!("{} is missing the required {name:?}", here()));
                    }
                }
            }
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (k, v) in obj {
                let sub = format!(
                    "{}{k}",
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!("{at}.")
                    }
                );
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check_at(s, v, &sub)?,
                    None if closed => {
                        let known: Vec<&String> =
                            props.map(|p| p.keys().collect()).unwrap_or_default();
                        return Err(format!("unknown argument {sub:?} (expected {known:?})"));
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check_at(
                        s,
                        v,
                        &format!("{}[{i}]", if at.is_empty() { "items" } else { at }),
                    )?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => {
            v.as_i64().is_some()
                || v.as_u64().is_some()
                || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "limit": {"type": "number"},
                "edits": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"oldText": {"type": "string"}, "newText": {"type": "string"}},
                    "required": ["oldText", "newText"],
                    "additionalProperties": false
                }},
                "mode": {"type": "string", "enum": ["a", "b"]}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_good_arguments() {
        check(&schema(), &json!({"path": "x"})).unwrap();
        check(
            &schema(),
            &json!({"path": "x", "limit": 3, "mode": "a",
            "edits": [{"oldText": "a", "newText": "b"}]}),
        )
        .unwrap();
    }

    #[test]
    fn names_what_is_wrong() {
        let e = |v: Value| check(&schema(), &v).unwrap_err();
        assert!(e(json!([])).contains("must be object"));
        assert!(e(json!({})).contains("missing the required \"path\""));
        assert!(e(json!({"path": 1})).contains("path must be string, not a number"));
        assert!(e(json!({"path": "x", "bogus": 1})).contains("unknown argument \"bogus\""));
        assert!(e(json!({"path": "x", "mode": "c"})).contains("mode must be one of"));
        assert!(e(json!({"path": "x", "edits": [{"oldText": "a"}]})).contains("edits[0]"));
        assert!(
            e(json!({"path": "x", "edits": [{"oldText": "a", "newText": "b", "x": 1}]}))
                .contains("edits[0].x")
        );
    }
}
