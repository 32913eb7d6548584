//! The page's ES modules as one script, made when the relay first serves it.
//!
//! `webchat-dist/` stays hand-written modules with no build step: the files
//! on disk work as they are. But a browser that opens the page loads,
//! parses and links every module separately (thirteen requests, each read
//! back from its cache and compiled in a new tab), which is most of the time
//! to the first painted message. The relay therefore serves the page with one
//! script, `app.bundle.js`, made here from `app.js` and what it imports.
//!
//! The modules are written in a subset that makes this a textual
//! transformation, and anything outside it is refused (the page is then
//! served with its modules as they are, so nothing breaks):
//! - imports are one line each, at the start of the line, of named bindings
//!   from a relative path: `import { a, b as c } from './x.js';`;
//! - exports are declarations at the start of a line: `export function`,
//!   `export async function`, `export class`, `export const`;
//! - no `export default`, `export {…}`, `export let`/`var`, `import(…)` or
//!   `import.meta`; no import cycles.
//!
//! Each module becomes a function run once, in dependency order, that returns
//! its exports; an import becomes a destructuring of that object. Within the
//! subset this keeps the modules' meaning: every exported binding is a
//! `const`, a function or a class that is never reassigned, so a copy is as
//! good as ES modules' live binding, and each module keeps its own scope.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A module the bundler cannot take as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("{module}: not found")]
    Missing { module: String },
    #[error("{module}:{line}: {what}")]
    Unsupported {
        module: String,
        line: usize,
        what: &'static str,
    },
    #[error("{module}: import cycle")]
    Cycle { module: String },
}

/// One `import` line: its index, its bindings as (imported, local), and the
/// module it names (a path of the bundle).
type Import = (usize, Vec<(String, String)>, String);

/// One module, read and split.
struct Module {
    imports: Vec<Import>,
    /// Line indexes of `export ` declarations, and the names they export.
    exports: Vec<(usize, String)>,
    lines: Vec<String>,
}

/// `entry` and every module it imports, as one classic-free module script
/// (it still runs as `type="module"`: strict, deferred, its own scope).
/// `read` returns a file of the bundle by its path (`js/api.js`).
pub fn bundle(entry: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<String, BundleError> {
    let mut order = Vec::new();
    let mut modules = HashMap::new();
    visit(entry, read, &mut modules, &mut Vec::new(), &mut order)?;
    let mut out = String::new();
    out.push_str(
        "// The page's modules in one script, made by the relay from webchat-dist/ \
         (see relay/src/http/bundle.rs).\n",
    );
    for path in &order {
        let module = &modules[path];
        let is_entry = path == entry;
        let _ = writeln!(out, "// --- {path}");
        if is_entry {
            out.push_str("(() => {\n");
        } else {
            let _ = writeln!(out, "const {} = (() => {{", var_name(path));
        }
        let mut imports = module.imports.iter().peekable();
        let mut exports = module.exports.iter().peekable();
        for (i, line) in module.lines.iter().enumerate() {
            if let Some((_, bindings, from)) = imports.next_if(|(l, _, _)| *l == i) {
                let list: Vec<String> = bindings
                    .iter()
                    .map(|(name, local)| {
                        if name == local {
                            name.clone()
                        } else {
                            format!("{name}: {local}")
                        }
                    })
                    .collect();
                let _ = writeln!(out, "const {{ {} }} = {};", list.join(", "), var_name(from));
            } else if exports.next_if(|(l, _)| *l == i).is_some() {
                out.push_str(&line["export ".len()..]);
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if is_entry {
            out.push_str("})();\n");
        } else {
            let names: Vec<&str> = module.exports.iter().map(|(_, n)| n.as_str()).collect();
            let _ = writeln!(out, "return {{ {} }};\n}})();", names.join(", "));
        }
    }
    Ok(out)
}

/// Depth first: a module is pushed on `order` after everything it imports.
fn visit(
    path: &str,
    read: &dyn Fn(&str) -> Option<String>,
    modules: &mut HashMap<String, Module>,
    stack: &mut Vec<String>,
    order: &mut Vec<String>,
) -> Result<(), BundleError> {
    if modules.contains_key(path) {
        return Ok(());
    }
    if stack.iter().any(|p| p == path) {
        return Err(BundleError::Cycle {
            module: path.to_owned(),
        });
    }
    let text = read(path).ok_or_else(|| BundleError::Missing {
        module: path.to_owned(),
    })?;
    let module = parse(path, &text)?;
    stack.push(path.to_owned());
    for (_, _, from) in &module.imports {
        visit(from, read, modules, stack, order)?;
    }
    stack.pop();
    modules.insert(path.to_owned(), module);
    order.push(path.to_owned());
    Ok(())
}

fn parse(path: &str, text: &str) -> Result<Module, BundleError> {
    let unsupported = |line: usize, what| BundleError::Unsupported {
        module: path.to_owned(),
        line: line + 1,
        what,
    };
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut module = Module {
        imports: Vec::new(),
        exports: Vec::new(),
        lines: text.lines().map(str::to_owned).collect(),
    };
    for (i, line) in module.lines.iter().enumerate() {
        if line.contains("import(") || line.contains("import.meta") {
            return Err(unsupported(i, "dynamic import or import.meta"));
        }
        if let Some(rest) = line.strip_prefix("import ") {
            let (bindings, from) = parse_import(rest).ok_or(unsupported(
                i,
                "an import other than `import { a, b as c } from './x.js';`",
            ))?;
            let from =
                resolve(dir, &from).ok_or(unsupported(i, "an import from outside the page"))?;
            module.imports.push((i, bindings, from));
        } else if let Some(rest) = line.strip_prefix("export ") {
            let name = ["async function ", "function ", "class ", "const "]
                .iter()
                .find_map(|kw| rest.strip_prefix(kw))
                .map(|r| {
                    r.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                        .next()
                        .unwrap_or_default()
                })
                .filter(|n| !n.is_empty())
                .ok_or(unsupported(
                    i,
                    "an export other than a function, class or const declaration",
                ))?;
            module.exports.push((i, name.to_owned()));
        } else if line.trim_start().starts_with("import {")
            || line.trim_start().starts_with("export ")
        {
            return Err(unsupported(
                i,
                "an import or export that does not start its line",
            ));
        }
    }
    Ok(module)
}

/// `{ a, b as c } from './x.js';` → ([(a, a), (b, c)], "./x.js").
fn parse_import(rest: &str) -> Option<(Vec<(String, String)>, String)> {
    let rest = rest.trim().strip_prefix('{')?;
    let (names, rest) = rest.split_once('}')?;
    let from = rest.trim().strip_prefix("from")?.trim();
    let from = from.strip_suffix(';').unwrap_or(from).trim();
    let quote = from.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let from = from.strip_prefix(quote)?.strip_suffix(quote)?;
    let ident = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let mut bindings = Vec::new();
    for part in names.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, local) = match part.split_once(" as ") {
            Some((n, l)) => (n.trim(), l.trim()),
            None => (part, part),
        };
        if !ident(name) || !ident(local) {
            return None;
        }
        bindings.push((name.to_owned(), local.to_owned()));
    }
    Some((bindings, from.to_owned()))
}

/// `./x.js` or `../x.js` relative to `dir`, as a path of the bundle; `None`
/// for anything that is not a relative `.js` path inside it.
fn resolve(dir: &str, from: &str) -> Option<String> {
    if !(from.starts_with("./") || from.starts_with("../")) || !from.ends_with(".js") {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in from.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The bundle's variable for a module's exports: `js/api.js` → `__module_js_api_js`.
fn var_name(path: &str) -> String {
    let mut name = String::from("__module_");
    name.extend(
        path.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = list
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn modules_in_dependency_order_with_their_own_scopes() {
        let read = files(&[
            (
                "app.js",
                "import { a, b as bee } from './js/x.js';\nimport { c } from './js/y.js';\nconsole.log(a(), bee, c);\n",
            ),
            (
                "js/x.js",
                "import { c } from './y.js';\nconst hidden = 1;\nexport function a() { return c + hidden; }\nexport const b = 2;\n",
            ),
            ("js/y.js", "const hidden = 3;\nexport const c = hidden;\n"),
        ]);
        let out = bundle("app.js", &read).unwrap();
        let y = out.find("// --- js/y.js").unwrap();
        let x = out.find("// --- js/x.js").unwrap();
        let app = out.find("// --- app.js").unwrap();
        assert!(y < x && x < app, "{out}");
        assert!(out.contains("const __module_js_y_js = (() => {\nconst hidden = 3;\nconst c = hidden;\nreturn { c };\n})();"), "{out}");
        assert!(
            out.contains("const { c } = __module_js_y_js;\nconst hidden = 1;\nfunction a()"),
            "{out}"
        );
        assert!(
            out.contains("const { a, b: bee } = __module_js_x_js;"),
            "{out}"
        );
        assert!(
            !out.contains("import ") && !out.contains("export "),
            "{out}"
        );
        // each module once, although two import y
        assert_eq!(out.matches("// --- js/y.js").count(), 1);
    }

    #[test]
    fn what_it_cannot_take_is_refused_with_the_line() {
        for (text, line) in [
            ("import x from './y.js';", 1),
            ("const a = 1;\nexport default a;", 2),
            ("export { a };", 1),
            ("export let a = 1;", 1),
            ("const m = await import('./y.js');", 1),
            ("  export const a = 1;", 1),
            ("import { a } from 'https://example.com/y.js';", 1),
            ("import { a-b } from './y.js';", 1),
            ("import {\n  a,\n} from './y.js';", 1),
        ] {
            let read = files(&[("app.js", text), ("y.js", "export const a = 1;")]);
            match bundle("app.js", &read) {
                Err(BundleError::Unsupported { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let read = files(&[("app.js", "import { a } from './gone.js';")]);
        assert_eq!(
            bundle("app.js", &read),
            Err(BundleError::Missing {
                module: "gone.js".into()
            })
        );
        let read = files(&[
            ("app.js", "import { a } from './x.js';"),
            ("x.js", "import { b } from './app.js';\nexport const a = 1;"),
        ]);
        assert!(matches!(
            bundle("app.js", &read),
            Err(BundleError::Cycle { .. })
        ));
    }

    #[test]
    fn paths_resolve_inside_the_page_only() {
        assert_eq!(resolve("", "./js/api.js").as_deref(), Some("js/api.js"));
        assert_eq!(resolve("js", "./api.js").as_deref(), Some("js/api.js"));
        assert_eq!(resolve("js", "../app.js").as_deref(), Some("app.js"));
        assert_eq!(resolve("", "../x.js"), None);
        assert_eq!(resolve("", "/x.js"), None);
        assert_eq!(resolve("", "./x.mjs"), None);
    }

    /// The page's own modules are all inside the subset: if this fails, the
    /// page is served unbundled (slower), so it is a test, not a log line.
    #[test]
    fn the_pages_modules_bundle() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webchat-dist");
        let read = move |p: &str| std::fs::read_to_string(root.join(p)).ok();
        let out = bundle("app.js", &read).unwrap();
        for module in ["js/api.js", "js/util.js", "js/render.js", "js/tools.js"] {
            assert!(out.contains(&format!("// --- {module}\n")), "{module}");
        }
    }
}
