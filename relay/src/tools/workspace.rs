//! Where the file tools and `bash` work, and the confinement of the file
//! tools to it.
//!
//! A path is resolved like pi resolves it (a leading `@` dropped, `~`
//! expanded, relative to the workspace), then lexically normalised. When
//! confined, the longest part of it that exists is canonicalised — which
//! follows every symlink in it — and must lie inside the canonical
//! workspace; the rest does not exist yet, so it holds no symlink. The tools
//! then use the canonical path, so what was checked is what is opened. A
//! symlink swapped in between the check and the open by another program of
//! the same user is outside this model (that program can write the files
//! itself).

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    confine: bool,
}

impl Workspace {
    /// `root` must exist; it is canonicalised once.
    pub fn new(root: &Path, confine: bool) -> std::io::Result<Self> {
        Ok(Self {
            root: std::fs::canonicalize(root)?,
            confine,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn confined(&self) -> bool {
        self.confine
    }

    /// The path a tool argument names, checked against the confinement. The
    /// error is a sentence for the model.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        if path.is_empty() {
            return Err("path is empty".into());
        }
        if path.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        let p = path.strip_prefix('@').unwrap_or(path);
        let expanded = match (p, std::env::var_os("HOME")) {
            ("~", Some(h)) => PathBuf::from(h),
            (p, Some(h)) if p.starts_with("~/") => PathBuf::from(h).join(&p[2..]),
            (p, _) => PathBuf::from(p),
        };
        let joined = if expanded.is_absolute() {
            expanded
        } else {
            self.root.join(expanded)
        };
        let lexical = normalise(&joined);
        if !self.confine {
            return Ok(lexical);
        }
        let real = canonical_prefix(&lexical).map_err(|e| format!("cannot resolve {path}: {e}"))?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(format!(
                "{path} is outside the workspace {} (the file tools are confined to it)",
                self.root.display()
            ))
        }
    }
}

/// `.` dropped and `..` applied to the components before it, without
/// looking at the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The canonical form of the longest existing ancestor of `path` (itself
/// included), with the missing rest appended.
fn canonical_prefix(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink is not "missing": following it later
                // would leave the checked tree.
                if std::fs::symlink_metadata(&existing).is_ok() {
                    return Err(std::io::Error::other(
                        "it is a symlink to a path that does not exist",
                    ));
                }
                let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
                    return Err(e);
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("w")).unwrap();
        let w = Workspace::new(&dir.path().join("w"), true).unwrap();
        (dir, w)
    }

    #[test]
    fn inside_paths_resolve() {
        let (_d, w) = ws();
        std::fs::write(w.root().join("a.txt"), "x").unwrap();
        assert_eq!(w.resolve("a.txt").unwrap(), w.root().join("a.txt"));
        assert_eq!(w.resolve("@a.txt").unwrap(), w.root().join("a.txt"));
        assert_eq!(w.resolve("./sub/../a.txt").unwrap(), w.root().join("a.txt"));
        // Missing parents are fine (write creates them).
        assert_eq!(w.resolve("new/dir/f").unwrap(), w.root().join("new/dir/f"));
        let abs = w.root().join("a.txt");
        assert_eq!(w.resolve(abs.to_str().unwrap()).unwrap(), abs);
    }

    #[test]
    fn outside_paths_are_refused() {
        let (d, w) = ws();
        for p in ["../x", "/etc/passwd", "sub/../../x", "~/.ssh/id_rsa"] {
            let e = w.resolve(p).unwrap_err();
            assert!(e.contains("outside the workspace"), "{p}: {e}");
        }
        assert!(w.resolve("").is_err());
        assert!(w.resolve("a\0b").is_err());
        // A sibling whose name starts like the workspace is not inside it.
        std::fs::create_dir(d.path().join("w2")).unwrap();
        assert!(w.resolve(d.path().join("w2/f").to_str().unwrap()).is_err());
    }

    #[test]
    fn symlinks_out_are_refused() {
        let (d, w) = ws();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        symlink(d.path().join("secret"), w.root().join("link")).unwrap();
        symlink(d.path(), w.root().join("dirlink")).unwrap();
        symlink(d.path().join("nothing"), w.root().join("dangling")).unwrap();
        assert!(w.resolve("link").unwrap_err().contains("outside"));
        assert!(w.resolve("dirlink/secret").unwrap_err().contains("outside"));
        assert!(
            w.resolve("dirlink/new/file")
                .unwrap_err()
                .contains("outside")
        );
        assert!(w.resolve("dangling").unwrap_err().contains("symlink"));
        // A symlink that stays inside is fine, as its target.
        std::fs::write(w.root().join("real"), "r").unwrap();
        symlink(w.root().join("real"), w.root().join("inner")).unwrap();
        assert_eq!(w.resolve("inner").unwrap(), w.root().join("real"));
    }

    #[test]
    fn unconfined_allows_anything() {
        let d = tempfile::tempdir().unwrap();
        let w = Workspace::new(d.path(), false).unwrap();
        assert_eq!(
            w.resolve("/etc/hosts").unwrap(),
            PathBuf::from("/etc/hosts")
        );
        assert!(w.resolve("../x").is_ok());
    }
}
