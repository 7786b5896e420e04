//! C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys: signing, verifier keys and verification.
//!
//! Interoperates with golang.org/x/mod/sumdb/note and the transparency-dev
//! tooling, so checkpoints signed here can be checked by standard witnesses
//! and monitors.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use thiserror::Error;

/// Signature type byte for Ed25519 in key IDs and verifier keys.
pub const ALG_ED25519: u8 = 0x01;

/// Upper bound on signature lines, bounding the work an untrusted note can cause.
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

// Signature lines can come from cosigners we do not know; Go's decoder accepts
// non-zero trailing bits, so we do too rather than reject a note over an
// encoding quirk in a signature we would ignore anyway.
const LENIENT_B64: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

/// Why a key could not be used or a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("key name {0:?} is invalid: it must be non-empty and contain no spaces, '+' or control characters")]
    InvalidKeyName(String),
    #[error("the PKCS#8 Ed25519 private key was rejected: {0}")]
    InvalidPrivateKey(String),
    #[error("could not generate an Ed25519 private key")]
    KeyGeneration,
    #[error("verifier key is malformed: {0}")]
    MalformedVerifierKey(&'static str),
    #[error("verifier key uses signature type 0x{0:02x}; only Ed25519 (0x01) is supported")]
    UnsupportedAlgorithm(u8),
    #[error("verifier key ID {stated:08x} does not match its name and public key (expected {computed:08x})")]
    VerifierKeyIdMismatch { stated: u32, computed: u32 },
    #[error("note text must end with a newline")]
    TextMissingNewline,
    #[error("note text contains a control character other than newline")]
    TextControlCharacter,
    #[error("at least one signer is needed to sign a note")]
    NoSigners,
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("note has more than {max} signatures")]
    TooManySignatures { max: usize },
    #[error("more than one trusted verifier key is named {name}+{key_id:08x}")]
    AmbiguousVerifier { name: String, key_id: u32 },
    #[error("signature from trusted key {name}+{key_id:08x} does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note has no valid signature from a trusted key")]
    NoVerifiedSignature,
}

/// Whether `name` may be used as a key name in a signed note.
pub fn is_valid_key_name(name: &str) -> bool {
    // Control characters are banned from the whole note, so a name holding
    // one could never appear in a valid signature line.
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Key ID of an Ed25519 key: SHA-256(name || "\n" || 0x01 || public key)[:4], big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 34);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(ALG_ED25519);
    buf.extend_from_slice(public_key);
    let d = digest(&SHA256, &buf);
    let mut id = [0u8; 4];
    for (o, b) in id.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    u32::from_be_bytes(id)
}

fn format_verifier_key(name: &str, key_id: u32, public_key: &[u8; 32]) -> String {
    let mut key = Vec::with_capacity(33);
    key.push(ALG_ED25519);
    key.extend_from_slice(public_key);
    format!("{name}+{key_id:08x}+{}", STANDARD.encode(key))
}

/// A fresh Ed25519 private key as a PKCS#8 v2 document.
///
/// The returned bytes are secret; store them with care.
pub fn generate_pkcs8() -> Result<Vec<u8>, NoteError> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| NoteError::KeyGeneration)
}

/// An Ed25519 key and the name it signs under.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
    key_pair: Ed25519KeyPair,
}

// Hand-written so the private key can never end up in logs.
impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Builds a signer from a PKCS#8 (v1 or v2) Ed25519 private key.
    pub fn new(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| NoteError::InvalidPrivateKey(e.to_string()))?;
        let public_key: [u8; 32] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::InvalidPrivateKey("public key is not 32 bytes".into()))?;
        Ok(Self { name: name.to_owned(), key_id: key_id(name, &public_key), public_key, key_pair })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public verifier key, `<name>+<hex key ID>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        format_verifier_key(&self.name, self.key_id, &self.public_key)
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, public_key: self.public_key }
    }

    /// Signs `text` (which must end in a newline) and returns the signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        sign(text, &[self])
    }

    fn signature_line(&self, text: &str) -> String {
        let sig = self.key_pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Signs `text` with every signer, one signature line each, in the order given.
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    if signers.is_empty() {
        return Err(NoteError::NoSigners);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextMissingNewline);
    }
    if has_forbidden_control(text) {
        return Err(NoteError::TextControlCharacter);
    }
    // No other check is needed: the separator we add is always the last blank
    // line because signature lines are never empty, so `open` recovers `text`
    // exactly even when it contains or ends with blank lines.
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 110);
    note.push_str(text);
    note.push('\n');
    for s in signers {
        note.push_str(&s.signature_line(text));
    }
    Ok(note)
}

fn has_forbidden_control(s: &str) -> bool {
    s.chars().any(|c| c < ' ' && c != '\n')
}

/// A trusted Ed25519 public key with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key of the form `<name>+<hex8 key ID>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, rest) = vkey.split_once('+').ok_or(NoteError::MalformedVerifierKey("expected name+keyid+key"))?;
        // The key part is base64 and may itself contain '+', so split only once more.
        let (id_hex, key_b64) =
            rest.split_once('+').ok_or(NoteError::MalformedVerifierKey("expected name+keyid+key"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::MalformedVerifierKey("key ID must be 8 hexadecimal digits"));
        }
        let stated = u32::from_str_radix(id_hex, 16)
            .map_err(|_| NoteError::MalformedVerifierKey("key ID must be 8 hexadecimal digits"))?;
        let key =
            STANDARD.decode(key_b64).map_err(|_| NoteError::MalformedVerifierKey("public key is not valid base64"))?;
        let (&alg, public_key) = key.split_first().ok_or(NoteError::MalformedVerifierKey("public key is empty"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm(alg));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| NoteError::MalformedVerifierKey("Ed25519 public key must be 32 bytes"))?;
        let computed = key_id(name, &public_key);
        if computed != stated {
            return Err(NoteError::VerifierKeyIdMismatch { stated, computed });
        }
        Ok(Self { name: name.to_owned(), key_id: computed, public_key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    pub fn verifier_key(&self) -> String {
        format_verifier_key(&self.name, self.key_id, &self.public_key)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key).verify(msg, sig).is_ok()
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

struct SigLine<'a> {
    name: &'a str,
    key_id: u32,
    sig: Vec<u8>,
}

fn parse_sig_line(line: &str) -> Result<SigLine<'_>, NoteError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(NoteError::MalformedNote("signature line does not start with an em dash and a space"))?;
    let (name, b64) =
        rest.split_once(' ').ok_or(NoteError::MalformedNote("signature line has no space after the key name"))?;
    if !is_valid_key_name(name) {
        return Err(NoteError::MalformedNote("signature line has an invalid key name"));
    }
    let blob = LENIENT_B64.decode(b64).map_err(|_| NoteError::MalformedNote("signature is not valid base64"))?;
    match blob.as_slice() {
        [a, b, c, d, sig @ ..] if !sig.is_empty() => {
            Ok(SigLine { name, key_id: u32::from_be_bytes([*a, *b, *c, *d]), sig: sig.to_vec() })
        }
        _ => Err(NoteError::MalformedNote("signature is too short")),
    }
}

/// Checks a signed note against trusted verifiers.
///
/// Returns the note text and the names of the trusted keys whose signatures
/// verified (each once, in note order). Signatures from unknown keys are
/// ignored; a bad signature from a trusted key rejects the whole note.
pub fn open(note: &[u8], verifiers: &[NoteVerifier]) -> Result<(String, Vec<String>), NoteError> {
    let note = std::str::from_utf8(note).map_err(|_| NoteError::MalformedNote("note is not valid UTF-8"))?;
    if has_forbidden_control(note) {
        return Err(NoteError::MalformedNote("note contains a control character other than newline"));
    }
    let split =
        note.rfind("\n\n").ok_or(NoteError::MalformedNote("no blank line separates the text from the signatures"))?;
    let text = &note[..split + 1];
    let sig_block = &note[split + 2..];
    if sig_block.is_empty() {
        return Err(NoteError::MalformedNote("note has no signature lines"));
    }
    let sig_block = sig_block
        .strip_suffix('\n')
        .ok_or(NoteError::MalformedNote("last signature line does not end with a newline"))?;

    // Parse everything before verifying anything, so an oversized or
    // malformed note costs no signature checks.
    let mut lines = Vec::new();
    for line in sig_block.split('\n') {
        if lines.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { max: MAX_SIGNATURES });
        }
        lines.push(parse_sig_line(line)?);
    }

    let mut verified: Vec<String> = Vec::new();
    for line in &lines {
        let mut candidates = verifiers.iter().filter(|v| v.name == line.name && v.key_id == line.key_id);
        let Some(v) = candidates.next() else {
            continue;
        };
        if candidates.next().is_some() {
            return Err(NoteError::AmbiguousVerifier { name: line.name.to_owned(), key_id: line.key_id });
        }
        if !v.verify(text.as_bytes(), &line.sig) {
            return Err(NoteError::InvalidSignature { name: line.name.to_owned(), key_id: line.key_id });
        }
        if !verified.iter().any(|n| n == line.name) {
            verified.push(line.name.to_owned());
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok((text.to_owned(), verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from golang.org/x/mod/sumdb/note, file sumdb/note/note_test.go in
    // github.com/golang/mod (TestNewVerifier, TestSign, TestOpen).
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    /// Go's private key encoding is base64(0x01 || 32-byte seed); turn it into PKCS#8.
    fn peter_signer() -> NoteSigner {
        // The base64 part itself contains '+', so split a fixed number of times.
        let b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        let kp = Ed25519KeyPair::from_seed_unchecked(&raw[1..]).unwrap();
        let pkcs8 = kp.to_pkcs8().unwrap();
        NoteSigner::new("PeterNeumann", pkcs8.as_ref()).unwrap()
    }

    fn peter() -> NoteVerifier {
        NoteVerifier::parse(PETER_VKEY).unwrap()
    }

    fn enoch() -> NoteVerifier {
        NoteVerifier::parse(ENOCH_VKEY).unwrap()
    }

    fn open_str(note: &str, vs: &[NoteVerifier]) -> Result<(String, Vec<String>), NoteError> {
        open(note.as_bytes(), vs)
    }

    #[test]
    fn signer_reproduces_go_key_id_and_verifier_key() {
        let s = peter_signer();
        assert_eq!(s.key_id(), 0xc74f20a3);
        assert_eq!(s.verifier_key(), PETER_VKEY);
        assert_eq!(s.verifier(), peter());
        assert_eq!(key_id("PeterNeumann", peter().public_key()), 0xc74f20a3);
        assert_eq!(enoch().key_id(), 0xaf0cfe78);
        assert_eq!(enoch().verifier_key(), ENOCH_VKEY);
        assert_eq!(format!("{s:?}"), "NoteSigner { name: \"PeterNeumann\", key_id: c74f20a3, .. }");
    }

    #[test]
    fn sign_reproduces_go_output() {
        let got = peter_signer().sign(TEXT).unwrap();
        assert_eq!(got, format!("{TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn open_one_of_two_verified() {
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let (text, names) = open_str(&note, &[peter()]).unwrap();
        assert_eq!(text, TEXT);
        assert_eq!(names, vec!["PeterNeumann"]);
    }

    #[test]
    fn open_both_verified() {
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let (_, names) = open_str(&note, &[peter(), enoch()]).unwrap();
        assert_eq!(names, vec!["PeterNeumann", "EnochRoot"]);
    }

    #[test]
    fn open_without_trusted_signature_fails() {
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(open_str(&note, &[]), Err(NoteError::NoVerifiedSignature));
        // A key sharing the name but not the ID (or vice versa) is a different key.
        let misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
        assert_eq!(open_str(&format!("{TEXT}\n{misnamed}"), &[peter()]), Err(NoteError::NoVerifiedSignature));
        let wrong_id = PETER_SIG.replace("x08g", "xxxx");
        assert_eq!(open_str(&format!("{TEXT}\n{wrong_id}"), &[peter()]), Err(NoteError::NoVerifiedSignature));
    }

    #[test]
    fn duplicated_verifiers() {
        assert_eq!(
            open_str(&format!("{TEXT}\n{ENOCH_SIG}"), &[enoch(), peter(), enoch()]),
            Err(NoteError::AmbiguousVerifier { name: "EnochRoot".into(), key_id: 0xaf0cfe78 })
        );
        // Duplicates that no signature refers to do no harm.
        assert!(open_str(&format!("{TEXT}\n{PETER_SIG}"), &[enoch(), peter(), enoch()]).is_ok());
    }

    #[test]
    fn signature_count_limit() {
        let at_limit = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
        let (_, names) = open_str(&at_limit, &[peter()]).unwrap();
        assert_eq!(names, vec!["PeterNeumann"]);
        let over = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
        for vs in [vec![peter()], vec![]] {
            assert_eq!(open_str(&over, &vs), Err(NoteError::TooManySignatures { max: 100 }));
        }
    }

    #[test]
    fn bad_signature_from_trusted_key_rejects_note() {
        let bad = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let want = Err(NoteError::InvalidSignature { name: "PeterNeumann".into(), key_id: 0xc74f20a3 });
        assert_eq!(open_str(&format!("{TEXT}\n{bad}"), &[peter()]), want);
        // Even after a good signature from the same key.
        assert_eq!(open_str(&format!("{TEXT}\n{PETER_SIG}{bad}"), &[peter()]), want);
        // A corrupted signature from an unknown key is ignored.
        let bad_enoch = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
        let note = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{bad_enoch}");
        let (_, names) = open_str(&note, &[peter()]).unwrap();
        assert_eq!(names, vec!["PeterNeumann"]);
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let mut bad: Vec<Vec<u8>> = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            // Our own additions.
            format!("{TEXT}\r\n{PETER_SIG}"),
            format!("{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann\n"),
            format!("{TEXT}\n\u{2014}  x08go/ZJ\n"),
            format!("{TEXT}\n\u{2014} P+N x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann x08go/ZJ kuBS\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann AAAAAA==\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann not*base64\n"),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        let mut invalid_utf8 = format!("{TEXT}\n{PETER_SIG}").into_bytes();
        invalid_utf8.insert(0, 0xff);
        bad.push(invalid_utf8);
        for note in bad {
            let got = open(&note, &[peter()]);
            assert!(
                matches!(got, Err(NoteError::MalformedNote(_))),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(&note)
            );
        }
    }

    // Every proper substring and every single-character change of a verifier
    // key must be refused, as in Go's TestNewVerifier.
    #[test]
    fn verifier_key_manglings_are_rejected() {
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(NoteVerifier::parse(s).is_err(), "{s:?} accepted");
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let s = String::from_utf8(m).unwrap();
            assert!(NoteVerifier::parse(&s).is_err(), "{s:?} accepted");
        }
        // Wrong key length (key ID adjusted) and unknown algorithm, from Go's test.
        assert!(
            NoteVerifier::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==").is_err()
        );
        assert_eq!(
            NoteVerifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(NoteError::UnsupportedAlgorithm(0x65))
        );
        assert_eq!(
            NoteVerifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(NoteError::VerifierKeyIdMismatch { stated: 0xc74f20a4, computed: 0xc74f20a3 })
        );
        assert_eq!(
            "x".parse::<NoteVerifier>().map(|_| ()),
            Err(NoteError::MalformedVerifierKey("expected name+keyid+key"))
        );
    }

    #[test]
    fn generated_key_round_trip() {
        let pkcs8 = generate_pkcs8().unwrap();
        let signer = NoteSigner::new("gatehouse.example/audit", &pkcs8).unwrap();
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        for text in ["a\n", "\n", "a\n\nb\n", "ends blank\n\n", "— looks like a sig\n\n"] {
            let note = signer.sign(text).unwrap();
            let (got, names) = open(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
            assert_eq!(got, text);
            assert_eq!(names, vec!["gatehouse.example/audit"]);
        }
        let other = NoteSigner::new("other", &generate_pkcs8().unwrap()).unwrap();
        let both = sign("hi\n", &[&signer, &other]).unwrap();
        let (_, names) = open(both.as_bytes(), &[other.verifier(), verifier]).unwrap();
        assert_eq!(names, vec!["gatehouse.example/audit", "other"]);
    }

    #[test]
    fn signs_and_opens_a_checkpoint() {
        use super::super::checkpoint::Checkpoint;
        use super::super::merkle::{TreeBuilder, leaf_hash};
        let mut tree = TreeBuilder::new();
        for e in [b"one".as_slice(), b"two", b"three"] {
            tree.push(leaf_hash(e)).unwrap();
        }
        let cp = Checkpoint {
            origin: "gatehouse.example/audit".into(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        };
        let signer = NoteSigner::new(&cp.origin, &generate_pkcs8().unwrap()).unwrap();
        let note = signer.sign(&cp.to_body()).unwrap();
        let (text, _) = open(note.as_bytes(), &[signer.verifier()]).unwrap();
        assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
    }

    #[test]
    fn sign_rejects_bad_input() {
        let s = peter_signer();
        assert_eq!(s.sign("abc"), Err(NoteError::TextMissingNewline));
        assert_eq!(s.sign(""), Err(NoteError::TextMissingNewline));
        assert_eq!(s.sign("a\tb\n"), Err(NoteError::TextControlCharacter));
        assert_eq!(sign("a\n", &[]), Err(NoteError::NoSigners));
        let pkcs8 = generate_pkcs8().unwrap();
        for name in ["", "a b", "a+b", "a\u{3000}b", "a\nb"] {
            assert_eq!(NoteSigner::new(name, &pkcs8).map(|_| ()), Err(NoteError::InvalidKeyName(name.into())));
        }
        assert!(matches!(NoteSigner::new("x", b"not a key"), Err(NoteError::InvalidPrivateKey(_))));
    }
}
