//! `loopchat export` and `loopchat import`: the relay's export and import
//! endpoints, with files on this side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use loopchat_proto::{ExportFormat, ImportFormat, ImportResponse};

use super::Target;
use super::client::{Client, json, send};

/// Writes the export to `out` (atomically: a half-written file never takes
/// the name), or to stdout.
pub async fn export(
    target: &Target,
    key: &str,
    format: ExportFormat,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let format_name = format.extension();
    let bytes = send(
        client
            .get("/webchat/export")
            .query(&[("session", key), ("format", format_name)]),
    )
    .await?
    .bytes()
    .await
    .context("the export was cut off")?;
    match out {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
        Some(path) => {
            write_file(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    let part = dir.join(name);
    std::fs::write(&part, bytes)?;
    std::fs::rename(&part, path)
}

pub async fn import(
    target: &Target,
    file: &Path,
    format: ImportFormat,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let client = Client::connect(target)?;
    let format_name = match format {
        ImportFormat::Auto => "auto",
        ImportFormat::Pi => "pi",
        ImportFormat::Chatgpt => "chatgpt",
    };
    let answer: ImportResponse = json(
        client
            .post("/webchat/import")
            .query(&[("format", format_name)])
            .body(bytes),
    )
    .await
    .with_context(|| format!("{} was not imported", file.display()))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    for s in &answer.sessions {
        println!(
            "{}  {} messages  {}",
            s.key,
            s.messages,
            s.title.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
