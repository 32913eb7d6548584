//! `relay.json`: written once the relay listens. Every client reads it
//! with [`Discovery::read_live`], the one reader, in `proto`.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use loopchat_proto::Discovery;

pub fn write(path: &Path, discovery: &Discovery) -> io::Result<()> {
    crate::durable::write_atomically(path, &encode(discovery)?).map(drop)
}

/// The file's contents for `discovery` (pretty JSON).
pub fn encode(discovery: &Discovery) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(discovery).map_err(io::Error::other)
}

/// How long a client waits for a relay's port to accept, judging it alive.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether the relay `d` names is running (see [`Discovery::check_alive`]).
pub fn is_alive(d: &Discovery) -> bool {
    d.check_alive(CONNECT_TIMEOUT).is_ok()
}

/// Removes the file if it still describes this process. The caller holds
/// the home's lock ([`crate::home::Home::lock`]), so no other relay can
/// write the file between the check and the removal; the pid check leaves
/// alone a file this relay did not write (a dead relay's, when this one
/// stopped before announcing itself).
pub fn remove_if_ours(path: &Path) {
    if let Ok(bytes) = fs::read(path)
        && let Ok(d) = Discovery::parse(&bytes)
        && d.pid == std::process::id()
    {
        let _ = fs::remove_file(path);
    }
}
