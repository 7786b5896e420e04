//! Room device credentials: a secret handed once to the kiosk when a room is enrolled. Only its
//! hash is stored, so re-enrolling replaces it and revoking removes it.

use super::{digest, new_secret};

/// Marks a room device credential.
const PREFIX: &str = "ghr_";

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
