//! The audit signing key and the list of every verifier key the log has been signed with, kept
//! in the data folder. Rotation replaces the private key and keeps the old public key, so old
//! checkpoints stay verifiable.

use std::fs;
use std::path::{Path, PathBuf};

use super::note::{self, NoteSigner, NoteVerifier};

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
}

impl KeyRing {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join(KEYS_DIR) }
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
        self.write(&path, format!("{origin}\n").as_bytes(), 0o644)?;
        Ok(origin)
    }

    /// The current signer, generating the first key on first use.
    pub fn signer(&self) -> Result<NoteSigner, KeyError> {
        let path = self.dir.join(SIGNING_KEY_FILE);
        let origin = self.origin()?;
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.rotate(),
            Err(source) => return Err(KeyError::Io { action: "read", path, source }),
        };
        let signer = NoteSigner::new(&origin, &pkcs8)
            .map_err(|e| KeyError::BadKey { path: path.clone(), detail: e.to_string() })?;
        self.remember(&signer)?;
        Ok(signer)
    }

    /// Makes a new signing key, keeping the old one's verifier key in the list.
    pub fn rotate(&self) -> Result<NoteSigner, KeyError> {
        let path = self.dir.join(SIGNING_KEY_FILE);
        let origin = self.origin()?;
        let bad = |detail: String| KeyError::BadKey { path: path.clone(), detail };
        let pkcs8 = note::generate_pkcs8().map_err(|e| bad(e.to_string()))?;
        let signer = NoteSigner::new(&origin, &pkcs8).map_err(|e| bad(e.to_string()))?;
        // The verifier goes on the list first: a crash in between leaves an unused public key,
        // never a signing key whose checkpoints cannot be verified.
        self.remember(&signer)?;
        self.write(&path, &pkcs8, 0o600)?;
        Ok(signer)
    }

    /// Every verifier key this data folder has signed with, oldest first.
    pub fn verifiers(&self) -> Result<Vec<NoteVerifier>, KeyError> {
        let path = self.dir.join(VERIFIERS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(KeyError::Io { action: "read", path, source }),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                NoteVerifier::parse(l.trim())
                    .map_err(|e| KeyError::BadKey { path: path.clone(), detail: e.to_string() })
            })
            .collect()
    }

    fn remember(&self, signer: &NoteSigner) -> Result<(), KeyError> {
        let key = signer.verifier_key();
        if self.verifiers()?.iter().any(|v| v.verifier_key() == key) {
            return Ok(());
        }
        let path = self.dir.join(VERIFIERS_FILE);
        crate::files::append_line(&path, &key).map_err(|source| KeyError::Io { action: "write", path, source })
    }

    fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
        crate::files::write_atomic(path, bytes, mode).map_err(|source| KeyError::Io {
            action: "write",
            path: path.into(),
            source,
        })
    }
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
