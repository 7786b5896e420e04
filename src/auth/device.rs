//! Room device credentials: a secret handed once to the kiosk when a room is enrolled. Only its
//! hash is stored, so re-enrolling replaces it and revoking removes it.

use super::{digest, new_secret};

/// Marks a room device credential.
const PREFIX: &str = "ghr_";

/// The hash of the device credential a kiosk presented: which credential a room's principal
/// holds, so that replacing the room's credential ends a kiosk still connected on the old one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceHash(pub [u8; 32]);

impl std::fmt::Debug for DeviceHash {
    // Only the first bytes: enough to tell two credentials apart in a test failure.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A fresh credential and the hash to store for it.
pub fn issue() -> Result<(String, [u8; 32]), aws_lc_rs::error::Unspecified> {
    let secret = new_secret(PREFIX)?;
    let hash = digest(&secret);
    Ok((secret, hash))
}

/// The hash to look a presented credential up by, if it looks like one at all.
pub fn lookup_hash(presented: &str) -> Option<[u8; 32]> {
    (presented.starts_with(PREFIX) && presented.len() <= 128).then(|| digest(presented))
}
