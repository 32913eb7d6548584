//! Uploaded files, content-addressed under `$HOME/attachments`: images, and
//! text files and PDFs whose text goes to the model (Decision 82).
//!
//! A message references an attachment by id; the bytes are written once,
//! whatever the number of retries or messages that use them. A PDF's text is
//! extracted once, on upload, into `<id>.txt` beside it (a name [`Attachments::path`]
//! never serves), so that a broken PDF is refused before any message names it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Image types the UI can show.
const IMAGES: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

/// Files whose text is sent to the model (chat attachments only).
const FILES: &[(&str, &str)] = &[
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("text/csv", "csv"),
    ("application/json", "json"),
    ("application/pdf", "pdf"),
];

/// Characters of one file's text given to the model; the rest is cut, with
/// a line saying so (Decision 82).
pub const MAX_FILE_TEXT_CHARS: usize = 100_000;

/// What an attachment is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    /// Text (a text file, or what a PDF's text layer holds).
    File,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("unsupported attachment type {0:?}; accepted: {1}")]
    UnsupportedType(String, &'static str),
    #[error("the attachment is empty")]
    Empty,
    #[error("the attachment's bytes are not a {0} image")]
    NotAnImage(String),
    #[error("the file is not UTF-8 text (send it as the type it is, or convert it first)")]
    NotText,
    #[error("the file is not a PDF (it does not start with %PDF-)")]
    NotAPdf,
    #[error("the PDF's text could not be read: {0}")]
    Pdf(String),
    #[error("the PDF has no text to read (a scan or images only?)")]
    PdfNoText,
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct Attachments {
    dir: PathBuf,
    /// Text files and PDFs are accepted too (the chat's store; alert images
    /// are images only).
    files: bool,
}

#[derive(Debug, Clone)]
pub struct SavedAttachment {
    pub id: String,
    pub mime_type: String,
    pub size: u64,
}

impl Attachments {
    /// A store of images only.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, files: false }
    }

    /// The chat's store: images, text files and PDFs.
    pub fn with_files(dir: PathBuf) -> Self {
        Self { dir, files: true }
    }

    /// The declared types an upload may have, for `/webchat/info`.
    pub fn accepted_types(&self) -> Vec<String> {
        self.accepted().map(|(m, _)| (*m).to_owned()).collect()
    }

    fn accepted(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        let files: &[_] = if self.files { FILES } else { &[] };
        IMAGES.iter().chain(files)
    }

    /// The id `bytes` would be stored under, once they pass the type checks.
    pub fn content_id(&self, mime_type: &str, bytes: &[u8]) -> Result<String, AttachmentError> {
        let (_, ext) = self.checked(mime_type, bytes)?;
        Ok(format!("{}.{ext}", hex(&Sha256::digest(bytes))))
    }

    /// Checks and stores the bytes (blocking: a PDF's text is extracted
    /// here, which may take a while for a large one).
    pub fn save(&self, mime_type: &str, bytes: &[u8]) -> Result<SavedAttachment, AttachmentError> {
        let (mime, ext) = self.checked(mime_type, bytes)?;
        let digest = Sha256::digest(bytes);
        let id = format!("{}.{ext}", hex(&digest));
        let text = if ext == "pdf" {
            Some(pdf_text(bytes)?)
        } else {
            None
        };
        crate::home::create_private_dir(&self.dir)?;
        let path = self.dir.join(&id);
        if let Some(text) = text {
            let sidecar = self.dir.join(format!("{id}.txt"));
            if !sidecar.exists() {
                crate::durable::write_atomically(&sidecar, text.as_bytes())?;
            }
        }
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
            && self.accepted().any(|(_, e)| *e == ext);
        let path = self.dir.join(id);
        (valid && path.is_file()).then_some(path)
    }

    pub fn mime_of(id: &str) -> &'static str {
        let ext = Path::new(id)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        IMAGES
            .iter()
            .chain(FILES)
            .find(|(_, e)| *e == ext)
            .map_or("application/octet-stream", |(m, _)| m)
    }

    pub fn kind_of(id: &str) -> Kind {
        if Self::mime_of(id).starts_with("image/") {
            Kind::Image
        } else {
            Kind::File
        }
    }

    pub fn read(&self, id: &str) -> Option<Vec<u8>> {
        fs::read(self.path(id)?).ok()
    }

    /// The text a file attachment gives the model (a text file's own text, a
    /// PDF's extracted text), cut at [`MAX_FILE_TEXT_CHARS`]; `None` for an
    /// image or a missing file.
    pub fn text_of(&self, id: &str) -> Option<String> {
        if Self::kind_of(id) != Kind::File {
            return None;
        }
        let path = self.path(id)?;
        let bytes = if Self::mime_of(id) == "application/pdf" {
            fs::read(self.dir.join(format!("{id}.txt"))).ok()?
        } else {
            fs::read(path).ok()?
        };
        let text = String::from_utf8(bytes).ok()?;
        Some(bounded(text))
    }

    /// The accepted type and extension, if the declared type is accepted
    /// and the bytes are of that type.
    fn checked(
        &self,
        mime_type: &str,
        bytes: &[u8],
    ) -> Result<(&'static str, &'static str), AttachmentError> {
        let mime = mime_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((mime, ext)) = self.accepted().find(|(m, _)| *m == mime) else {
            let names = if self.files {
                "PNG, JPEG, GIF, WebP, UTF-8 text (text/plain, text/markdown, text/csv, application/json), PDF"
            } else {
                "PNG, JPEG, GIF, WebP"
            };
            return Err(AttachmentError::UnsupportedType(mime, names));
        };
        if bytes.is_empty() {
            return Err(AttachmentError::Empty);
        }
        match *ext {
            "pdf" if !bytes.starts_with(b"%PDF-") => Err(AttachmentError::NotAPdf),
            // NUL is valid UTF-8 but says "binary", and would reach the
            // model as garbage.
            "txt" | "md" | "csv" | "json"
                if std::str::from_utf8(bytes).is_err() || bytes.contains(&0) =>
            {
                Err(AttachmentError::NotText)
            }
            "pdf" | "txt" | "md" | "csv" | "json" => Ok((mime, ext)),
            _ if !magic_matches(ext, bytes) => Err(AttachmentError::NotAnImage((*ext).to_owned())),
            _ => Ok((mime, ext)),
        }
    }
}

/// `text` cut at [`MAX_FILE_TEXT_CHARS`], with a line saying how much was left out.
fn bounded(text: String) -> String {
    let Some((cut, _)) = text.char_indices().nth(MAX_FILE_TEXT_CHARS) else {
        return text;
    };
    let total = text.chars().count();
    let mut out = text[..cut].to_owned();
    out.push_str(&format!(
        "\n[… cut: the file has {total} characters; the first {MAX_FILE_TEXT_CHARS} are given]"
    ));
    out
}

/// A PDF's text. pdf-extract (lopdf) refuses encrypted and broken files with
/// an error, but panics on some malformed ones: a panic is caught and becomes
/// the same clear refusal, never a dead worker.
fn pdf_text(bytes: &[u8]) -> Result<String, AttachmentError> {
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let text = match extracted {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            let detail = match &e {
                pdf_extract::OutputError::PdfError(lopdf::Error::Decryption(_)) => {
                    "it is encrypted with a password".to_owned()
                }
                other => other.to_string(),
            };
            return Err(AttachmentError::Pdf(detail));
        }
        Err(_) => {
            return Err(AttachmentError::Pdf(
                "the file is malformed (the PDF reader gave up on it)".into(),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(AttachmentError::PdfNoText);
    }
    Ok(text)
}

/// The image type whose magic bytes `bytes` start with, for a client that
/// has a file and no declared type (`loopchat notify --image`).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    IMAGES
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
