//! The join-link signing keys, kept in the data folder: the current Ed25519 key signs new links;
//! every earlier public key stays trusted so links issued before a rotation keep working.

use std::fs;
use std::path::{Path, PathBuf};

use super::link_token::{self, LinkClaims, LinkError, LinkSigner, LinkVerifier};

const SIGNING_KEY_FILE: &str = "link-signing-key.p8";
const PUBLIC_KEYS_FILE: &str = "link-public-keys.txt";

#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the link signing key {path} is not usable: {detail}")]
    Bad { path: PathBuf, detail: String },
}

/// Signs and verifies join links.
pub struct LinkKeys {
    signer: LinkSigner,
    verifier: LinkVerifier,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys").field("kid", &self.signer.kid()).finish_non_exhaustive()
    }
}

impl LinkKeys {
    /// Loads the keys from `data_dir/keys`, generating the first key on first use.
    pub fn load(data_dir: &Path) -> Result<Self, LinkKeyError> {
        let dir = data_dir.join("keys");
        let path = dir.join(SIGNING_KEY_FILE);
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::rotate(data_dir),
            Err(source) => return Err(LinkKeyError::Io { action: "read", path, source }),
        };
        let signer = LinkSigner::from_pkcs8(&pkcs8)
            .map_err(|e| LinkKeyError::Bad { path: path.clone(), detail: e.to_string() })?;
        remember(&dir, &signer.public_key())?;
        Self::with_signer(&dir, signer)
    }

    /// Makes a new signing key; links signed with earlier keys stay valid.
    pub fn rotate(data_dir: &Path) -> Result<Self, LinkKeyError> {
        let dir = data_dir.join("keys");
        let path = dir.join(SIGNING_KEY_FILE);
        let bad = |detail: String| LinkKeyError::Bad { path: path.clone(), detail };
        let pkcs8 = link_token::generate_pkcs8().map_err(|e| bad(e.to_string()))?;
        let signer = LinkSigner::from_pkcs8(&pkcs8).map_err(|e| bad(e.to_string()))?;
        // The public key is listed before the private key is written: a crash between the two
        // leaves a trusted key that signed nothing, never a link nobody can verify.
        remember(&dir, &signer.public_key())?;
        write_private(&path, &pkcs8)?;
        Self::with_signer(&dir, signer)
    }

    fn with_signer(dir: &Path, signer: LinkSigner) -> Result<Self, LinkKeyError> {
        let mut verifier = LinkVerifier::new();
        for key in public_keys(dir)? {
            verifier.add(key);
        }
        Ok(Self { signer, verifier })
    }

    pub fn sign(&self, claims: &LinkClaims) -> Result<String, LinkError> {
        self.signer.sign(claims)
    }

    pub fn verify(&self, token: &str, now_unix: u64) -> Result<LinkClaims, LinkError> {
        self.verifier.verify(token, now_unix)
    }
}

fn public_keys(dir: &Path) -> Result<Vec<[u8; 32]>, LinkKeyError> {
    let path = dir.join(PUBLIC_KEYS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(LinkKeyError::Io { action: "read", path, source }),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(l.trim(), &mut key)
                .map_err(|e| LinkKeyError::Bad { path: path.clone(), detail: e.to_string() })?;
            Ok(key)
        })
        .collect()
}

fn remember(dir: &Path, key: &[u8; 32]) -> Result<(), LinkKeyError> {
    if public_keys(dir)?.contains(key) {
        return Ok(());
    }
    let path = dir.join(PUBLIC_KEYS_FILE);
    crate::files::append_line(&path, &hex::encode(key)).map_err(|source| LinkKeyError::Io {
        action: "write",
        path,
        source,
    })
}

fn write_private(path: &Path, pkcs8: &[u8]) -> Result<(), LinkKeyError> {
    crate::files::write_atomic(path, pkcs8, 0o600).map_err(|source| LinkKeyError::Io {
        action: "write",
        path: path.into(),
        source,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::link_token::LinkRole;

    #[test]
    fn links_signed_before_a_rotation_still_verify_and_the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let claims = LinkClaims {
            link_id: uuid::Uuid::new_v4(),
            appointment: uuid::Uuid::new_v4(),
            participant: uuid::Uuid::new_v4(),
            role: LinkRole::Guest,
            not_before: 100,
            expires: 200,
        };
        let old = LinkKeys::load(dir.path()).unwrap().sign(&claims).unwrap();
        let mode = fs::metadata(dir.path().join("keys").join(SIGNING_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let rotated = LinkKeys::rotate(dir.path()).unwrap();
        let new = rotated.sign(&claims).unwrap();
        assert_ne!(old.split('.').next(), new.split('.').next(), "the key id changes");
        let reloaded = LinkKeys::load(dir.path()).unwrap();
        assert_eq!(reloaded.verify(&old, 150).unwrap(), claims);
        assert_eq!(reloaded.verify(&new, 150).unwrap(), claims);
    }
}
