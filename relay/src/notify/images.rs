//! Alert images: one per alert, content-addressed under `$HOME/alert-images`
//! with the attachments store's type checks ([`Attachments`]).
//!
//! They live apart from the chat's attachments so that removing one can
//! never take a file a message still shows: a file here is used by alerts
//! only, and goes as soon as no kept alert refers to it (the hub calls
//! [`AlertImages::collect`] whenever alerts leave the kept set, and once at
//! start for whatever a crash left behind).
//!
//! Between "saved" and "submitted" an image is referenced by nothing yet;
//! a [`Pin`] keeps the collector off it for that moment.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use loopchat_proto::MAX_ALERT_IMAGE_BYTES;

use crate::attachments::{AttachmentError, Attachments, SavedAttachment};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the image is {0} bytes; the limit is {MAX_ALERT_IMAGE_BYTES} (512 KiB): scale it down or compress it"
    )]
    TooLarge(usize),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

#[derive(Clone)]
pub struct AlertImages {
    store: Attachments,
    dir: PathBuf,
    pins: Arc<Mutex<HashMap<String, usize>>>,
}

/// Keeps a saved image from being collected until dropped.
pub struct Pin {
    images: AlertImages,
    pub id: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.images.lock();
        if let Some(n) = pins.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.id);
            }
        }
    }
}

impl AlertImages {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            store: Attachments::new(dir.clone()),
            dir,
            pins: Arc::default(),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, usize>> {
        self.pins.lock()
    }

    /// Checks and stores the bytes (blocking I/O: call from a blocking
    /// task); the pin covers the file until the alert is submitted.
    pub fn save(
        &self,
        mime_type: &str,
        bytes: &[u8],
    ) -> Result<(Pin, SavedAttachment), ImageError> {
        if bytes.len() > MAX_ALERT_IMAGE_BYTES {
            return Err(ImageError::TooLarge(bytes.len()));
        }
        // Pinned before the write: a collection running meanwhile must not
        // delete the file this save found already there.
        let id = self.store.content_id(mime_type, bytes)?;
        *self.lock().entry(id.clone()).or_default() += 1;
        let pin = Pin {
            images: self.clone(),
            id,
        };
        let saved = self.store.save(mime_type, bytes)?;
        debug_assert_eq!(saved.id, pin.id);
        Ok((pin, saved))
    }

    pub fn read(&self, id: &str) -> Option<Vec<u8>> {
        self.store.read(id)
    }

    /// Deletes every file here that `used` does not name and no pin holds.
    /// Returns how many went.
    pub fn collect(&self, used: &HashSet<&str>) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let pins = self.lock();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // A save in flight writes `.<id>.<pid>.tmp` first.
            let subject = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .and_then(|n| n.rsplit_once('.'))
                .map_or(name, |(id, _pid)| id);
            if used.contains(subject) || pins.contains_key(subject) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "cannot remove an unused alert image"),
            }
        }
        Ok(removed)
    }
}
