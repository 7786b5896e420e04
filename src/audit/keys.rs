//! The audit signing key and the list of every verifier key the log has been signed with, kept
//! in the data folder. Rotation replaces the private key and keeps the old public key, so old
//! checkpoints stay verifiable.

use std::fs;
use std::path::{Path, PathBuf};

use super::note::{self, NoteSigner, NoteVerifier};
use crate::files::KeyFiles;

const KEYS_DIR: &str = "keys";
const SIGNING_KEY_FILE: &str = "audit-signing-key.p8";
const VERIFIERS_FILE: &str = "audit-verifiers.txt";
const ORIGIN_FILE: &str = "audit-origin.txt";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the audit signing key {path} is not usable: {detail}")]
    BadKey { path: PathBuf, detail: String },
}

/// The keys folder of a data folder.
#[derive(Debug, Clone)]
pub struct KeyRing {
    dir: PathBuf,
    keys: KeyFiles,
}

impl KeyRing {
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join(KEYS_DIR);
        Self { keys: KeyFiles::new(&dir, SIGNING_KEY_FILE, VERIFIERS_FILE), dir }
    }

    /// The log's origin line, made once per data folder so that two gateways' checkpoints can
    /// never be confused.
    pub fn origin(&self) -> Result<String, KeyError> {
        let path = self.dir.join(ORIGIN_FILE);
        if let Ok(text) = fs::read_to_string(&path) {
            let origin = text.trim().to_owned();
            if note::is_valid_key_name(&origin) {
                return Ok(origin);
            }
            return Err(KeyError::BadKey { path, detail: "the origin is not a valid key name".into() });
        }
        let origin = format!("gatehouse.audit/{}", uuid::Uuid::new_v4());
        crate::files::write_atomic(&path, format!("{origin}\n").as_bytes(), 0o644).map_err(|source| KeyError::Io {
            action: "write",
            path,
            source,
        })?;
        Ok(origin)
    }

    /// The current signer, generating the first key on first use.
    pub fn signer(&self) -> Result<NoteSigner, KeyError> {
        let origin = self.origin()?;
        let path = self.keys.private_path();
        let Some(pkcs8) = self.keys.read_private().map_err(|source| io_error("read", path, source))? else {
            return self.rotate();
        };
        let signer = NoteSigner::new(&origin, &pkcs8).map_err(|e| bad_key(path, e))?;
        self.keys
            .remember(&signer.verifier_key())
            .map_err(|source| io_error("write", self.keys.publics_path(), source))?;
        Ok(signer)
    }

    /// Makes a new signing key, keeping the old one's verifier key in the list.
    pub fn rotate(&self) -> Result<NoteSigner, KeyError> {
        let origin = self.origin()?;
        let path = self.keys.private_path();
        let pkcs8 = note::generate_pkcs8().map_err(|e| bad_key(path, e))?;
        let signer = NoteSigner::new(&origin, &pkcs8).map_err(|e| bad_key(path, e))?;
        self.keys.install(&pkcs8, &signer.verifier_key()).map_err(|source| io_error("write", path, source))?;
        Ok(signer)
    }

    /// Every verifier key this data folder has signed with, oldest first.
    pub fn verifiers(&self) -> Result<Vec<NoteVerifier>, KeyError> {
        let path = self.keys.publics_path();
        let lines = self.keys.public_lines().map_err(|source| io_error("read", path, source))?;
        lines.iter().map(|l| NoteVerifier::parse(l).map_err(|e| bad_key(path, e))).collect()
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io { action, path: path.into(), source }
}

fn bad_key(path: &Path, detail: impl std::fmt::Display) -> KeyError {
    KeyError::BadKey { path: path.into(), detail: detail.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_private_stable_and_rotation_keeps_old_verifiers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::new(dir.path());
        let first = ring.signer().unwrap();
        let mode = fs::metadata(dir.path().join("keys").join(SIGNING_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ring.signer().unwrap().verifier_key(), first.verifier_key());
        let second = ring.rotate().unwrap();
        assert_ne!(second.verifier_key(), first.verifier_key());
        let keys: Vec<String> = ring.verifiers().unwrap().iter().map(NoteVerifier::verifier_key).collect();
        assert_eq!(keys, vec![first.verifier_key(), second.verifier_key()]);
        assert_eq!(ring.signer().unwrap().verifier_key(), second.verifier_key());
    }
}
