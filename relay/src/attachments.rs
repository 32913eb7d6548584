//! Uploaded files (images), content-addressed under `$HOME/attachments`.
//!
//! A message references an attachment by id; the bytes are written once,
//! whatever the number of retries or messages that use them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Image types the UI can show; anything else is refused on upload.
const ACCEPTED: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("unsupported attachment type {0:?}; accepted: PNG, JPEG, GIF, WebP")]
    UnsupportedType(String),
    #[error("the attachment is empty")]
    Empty,
    #[error("the attachment's bytes are not a {0} image")]
    NotAnImage(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct Attachments {
    dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SavedAttachment {
    pub id: String,
    pub mime_type: String,
    pub size: u64,
}

impl Attachments {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The id `bytes` would be stored under, once they pass the type checks.
    pub fn content_id(&self, mime_type: &str, bytes: &[u8]) -> Result<String, AttachmentError> {
        let (_, ext) = checked(mime_type, bytes)?;
        Ok(format!("{}.{ext}", hex(&Sha256::digest(bytes))))
    }

    pub fn save(&self, mime_type: &str, bytes: &[u8]) -> Result<SavedAttachment, AttachmentError> {
        let (mime, ext) = checked(mime_type, bytes)?;
        let digest = Sha256::digest(bytes);
        let id = format!("{}.{ext}", hex(&digest));
        crate::home::create_private_dir(&self.dir)?;
        let path = self.dir.join(&id);
        if !path.exists() {
            crate::durable::write_atomically(&path, bytes)?;
        }
        Ok(SavedAttachment {
            id,
            mime_type: mime.to_owned(),
            size: bytes.len() as u64,
        })
    }

    /// The file of a stored attachment, if `id` is well-formed and present.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        let (hash, ext) = id.split_once('.')?;
        let valid = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && ACCEPTED.iter().any(|(_, e)| *e == ext);
        let path = self.dir.join(id);
        (valid && path.is_file()).then_some(path)
    }

    pub fn mime_of(id: &str) -> &'static str {
        let ext = Path::new(id)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        ACCEPTED
            .iter()
            .find(|(_, e)| *e == ext)
            .map_or("application/octet-stream", |(m, _)| m)
    }

    pub fn read(&self, id: &str) -> Option<Vec<u8>> {
        fs::read(self.path(id)?).ok()
    }
}

/// The accepted type and extension, if the declared type is accepted and
/// the bytes are of that type.
fn checked(mime_type: &str, bytes: &[u8]) -> Result<(&'static str, &'static str), AttachmentError> {
    let mime = mime_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((mime, ext)) = ACCEPTED.iter().find(|(m, _)| *m == mime) else {
        return Err(AttachmentError::UnsupportedType(mime));
    };
    if bytes.is_empty() {
        return Err(AttachmentError::Empty);
    }
    if !magic_matches(ext, bytes) {
        return Err(AttachmentError::NotAnImage((*ext).to_owned()));
    }
    Ok((mime, ext))
}

/// The image type whose magic bytes `bytes` start with, for a client that
/// has a file and no declared type (`loopchat notify --image`).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    ACCEPTED
        .iter()
        .find(|(_, ext)| magic_matches(ext, bytes))
        .map(|(m, _)| *m)
}

/// The declared type must match the bytes: the file is later served with
/// that type, and nosniff alone should not be the only guard.
fn magic_matches(ext: &str, b: &[u8]) -> bool {
    match ext {
        "png" => b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "jpg" => b.starts_with(&[0xFF, 0xD8, 0xFF]),
        "gif" => b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a"),
        "webp" => b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP",
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
