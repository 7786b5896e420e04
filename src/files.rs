//! Writing the gateway's own files safely: whole, synced to disk, and with their final
//! permissions from the first byte, so a private key is never readable by others, not even
//! half-written.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes`: written to a temporary file with `mode`, synced, then renamed
/// over the old one, so readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Appends one line to `path` (created world-readable: it holds public keys) and syncs it.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::OpenOptions::new().create(true).append(true).mode(0o644).open(path)?;
    writeln!(file, "{line}")?;
    file.sync_all()
}

/// A signing key kept as a private PKCS#8 file (mode 0600) beside the list of every public key
/// it has ever had, one per line, so that rotation never strands what the old key signed.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    private: std::path::PathBuf,
    publics: std::path::PathBuf,
}

impl KeyFiles {
    pub fn new(dir: &Path, private: &str, publics: &str) -> Self {
        Self { private: dir.join(private), publics: dir.join(publics) }
    }

    pub fn private_path(&self) -> &Path {
        &self.private
    }

    pub fn publics_path(&self) -> &Path {
        &self.publics
    }

    /// The private key, or None when none has been made yet.
    pub fn read_private(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.private) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every public key line, oldest first.
    pub fn public_lines(&self) -> io::Result<Vec<String>> {
        match fs::read_to_string(&self.publics) {
            Ok(text) => Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Puts a public key on the list unless it is there already.
    pub fn remember(&self, public: &str) -> io::Result<()> {
        if self.public_lines()?.iter().any(|line| line == public) {
            return Ok(());
        }
        append_line(&self.publics, public)
    }

    /// Installs a new private key. Its public key goes on the list first: a crash in between
    /// leaves a trusted key that signed nothing, never a signature nobody can check.
    pub fn install(&self, pkcs8: &[u8], public: &str) -> io::Result<()> {
        self.remember(public)?;
        write_atomic(&self.private, pkcs8, 0o600)
    }
}
