//! Durability: how the relay makes a write survive a crash or a power cut,
//! for every file it keeps (transcripts and the index, the notification
//! journal, tokens, the discovery file, attachments, check histories).
//!
//! The rules, in one place:
//! - A file replaced whole goes through [`write_atomically`] (temp file,
//!   fsync, rename, fsync of the directory), the rule the shell shares
//!   (`loopchat_proto::home`).
//! - A file appended to is flushed with `fdatasync`; many writers share one
//!   flush through [`GroupCommit`], and a failed flush fails every write it
//!   covered for good ([`FlushKind`]).
//! - A file just created also needs its directory entry synced
//!   ([`sync_parent`]), or a crash can lose the whole file.
//! - A full disk is told apart from other failures ([`DiskError`]), because
//!   a client can do something about one (507) and not about the other.

mod commit;

use std::fs::File;
use std::io;
use std::path::Path;

pub(crate) use commit::{FlushKind, GroupCommit, note_slow_io};
pub use loopchat_proto::home::write_atomically;

/// A write that did not reach the disk: full, or failed otherwise.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("the disk is full: {0}")]
    Full(io::Error),
    #[error("store I/O failed: {0}")]
    Io(io::Error),
}

impl From<io::Error> for DiskError {
    fn from(e: io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC)
            || e.raw_os_error() == Some(libc::EDQUOT)
            || e.kind() == io::ErrorKind::StorageFull
        {
            Self::Full(e)
        } else {
            Self::Io(e)
        }
    }
}

/// Syncs the directory holding `path`, so that a file just created there
/// survives a crash along with its contents.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}
