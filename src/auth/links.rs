//! The join-link signing keys, kept in the data folder: the current Ed25519 key signs new links;
//! every earlier public key stays trusted so links issued before a rotation keep working.

use std::path::{Path, PathBuf};

use super::link_token::{self, LinkClaims, LinkError, LinkSigner, LinkVerifier};
use crate::files::KeyFiles;

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
    fn files(data_dir: &Path) -> KeyFiles {
        KeyFiles::new(&data_dir.join("keys"), SIGNING_KEY_FILE, PUBLIC_KEYS_FILE)
    }

    /// Loads the keys from `data_dir/keys`, generating the first key on first use.
    pub fn load(data_dir: &Path) -> Result<Self, LinkKeyError> {
        let files = Self::files(data_dir);
        let path = files.private_path();
        let Some(pkcs8) = files.read_private().map_err(|source| io_error("read", path, source))? else {
            return Self::rotate(data_dir);
        };
        let signer = LinkSigner::from_pkcs8(&pkcs8).map_err(|e| bad(path, e))?;
        files
            .remember(&hex::encode(signer.public_key()))
            .map_err(|source| io_error("write", files.publics_path(), source))?;
        Self::with_signer(&files, signer)
    }

    /// Makes a new signing key; links signed with earlier keys stay valid.
    pub fn rotate(data_dir: &Path) -> Result<Self, LinkKeyError> {
        let files = Self::files(data_dir);
        let path = files.private_path();
        let pkcs8 = link_token::generate_pkcs8().map_err(|e| bad(path, e))?;
        let signer = LinkSigner::from_pkcs8(&pkcs8).map_err(|e| bad(path, e))?;
        files.install(&pkcs8, &hex::encode(signer.public_key())).map_err(|source| io_error("write", path, source))?;
        Self::with_signer(&files, signer)
    }

    fn with_signer(files: &KeyFiles, signer: LinkSigner) -> Result<Self, LinkKeyError> {
        let path = files.publics_path();
        let mut verifier = LinkVerifier::new();
        for line in files.public_lines().map_err(|source| io_error("read", path, source))? {
            let mut key = [0u8; 32];
            hex::decode_to_slice(&line, &mut key).map_err(|e| bad(path, e))?;
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

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> LinkKeyError {
    LinkKeyError::Io { action, path: path.into(), source }
}

fn bad(path: &Path, detail: impl std::fmt::Display) -> LinkKeyError {
    LinkKeyError::Bad { path: path.into(), detail: detail.to_string() }
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
        let mode = std::fs::metadata(dir.path().join("keys").join(SIGNING_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let rotated = LinkKeys::rotate(dir.path()).unwrap();
        let new = rotated.sign(&claims).unwrap();
        assert_ne!(old.split('.').next(), new.split('.').next(), "the key id changes");
        let reloaded = LinkKeys::load(dir.path()).unwrap();
        assert_eq!(reloaded.verify(&old, 150).unwrap(), claims);
        assert_eq!(reloaded.verify(&new, 150).unwrap(), claims);
    }
}
