//! C2SP tlog-checkpoint note bodies (https://c2sp.org/tlog-checkpoint): origin, tree size and root hash of a log.
//!
//! Parsing is deliberately strict: a checkpoint is signed, so two different
//! byte strings must never be accepted as the same checkpoint.

use super::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// The unsigned text of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Unique identity of the log, conventionally a schema-less URL.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root hash of the tree at `size`.
    pub root: Hash,
    /// Opaque extra lines; the spec discourages them because monitors cannot audit them.
    pub extensions: Vec<String>,
}

/// Why a checkpoint body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("checkpoint body must end with a newline")]
    MissingFinalNewline,
    #[error("checkpoint body has {found} line(s); origin, tree size and root hash are required")]
    TooFewLines { found: usize },
    #[error("line {line} of the checkpoint is empty")]
    EmptyLine { line: usize },
    #[error("line {line} of the checkpoint contains a newline, which would split it")]
    EmbeddedNewline { line: usize },
    #[error("line {line} of the checkpoint contains a non-printable character")]
    NonPrintable { line: usize },
    #[error("tree size {0:?} is not a canonical decimal number (digits only, no leading zeros)")]
    NonCanonicalSize(String),
    #[error("tree size {0:?} is too large")]
    SizeOverflow(String),
    #[error("root hash is not valid standard padded base64")]
    RootNotBase64,
    #[error("root hash decodes to {0} bytes, expected 32")]
    RootWrongLength(usize),
}

impl Checkpoint {
    /// The note text: one line each for origin, size, root, then extensions.
    ///
    /// Call [`Checkpoint::validate`] first if the fields come from outside:
    /// an invalid origin or extension would produce a body that does not parse.
    pub fn to_body(&self) -> String {
        let mut body = String::with_capacity(self.origin.len() + 70);
        body.push_str(&self.origin);
        body.push('\n');
        body.push_str(&self.size.to_string());
        body.push('\n');
        body.push_str(&STANDARD.encode(self.root));
        body.push('\n');
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Checks that [`Checkpoint::to_body`] would produce a body that [`Checkpoint::parse`] accepts.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_line(1, &self.origin)?;
        for (i, ext) in self.extensions.iter().enumerate() {
            check_line(i + 4, ext)?;
        }
        Ok(())
    }

    /// Parses a checkpoint body (the note text, without signatures).
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let content = body.strip_suffix('\n').ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = content.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            // A body of "\n" splits into one empty line; report it as no lines.
            let found = if content.is_empty() { 0 } else { lines.len() };
            return Err(CheckpointError::TooFewLines { found });
        };
        for (i, line) in lines.iter().enumerate() {
            check_line(i + 1, line)?;
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

fn check_line(line: usize, text: &str) -> Result<(), CheckpointError> {
    if text.is_empty() {
        return Err(CheckpointError::EmptyLine { line });
    }
    if text.contains('\n') {
        return Err(CheckpointError::EmbeddedNewline { line });
    }
    // `is_control` covers C0, DEL and C1, e.g. a stray "\r" from CRLF text.
    if text.chars().any(char::is_control) {
        return Err(CheckpointError::NonPrintable { line });
    }
    Ok(())
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    // `u64::from_str` would accept "+5", so check the digits ourselves.
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::NonCanonicalSize(s.to_owned()));
    }
    s.parse().map_err(|_| CheckpointError::SizeOverflow(s.to_owned()))
}

fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    // The STANDARD engine requires canonical padding and zero trailing bits,
    // so each hash has exactly one accepted encoding.
    let bytes = STANDARD.decode(s).map_err(|_| CheckpointError::RootNotBase64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| CheckpointError::RootWrongLength(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example checkpoint from https://c2sp.org/tlog-checkpoint
    // (github.com/C2SP/C2SP, tlog-checkpoint.md), without its signature line.
    const SPEC_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn parses_spec_example() {
        let cp = Checkpoint::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(hex::encode(cp.root), "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62");
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_body(), SPEC_EXAMPLE);
    }

    #[test]
    fn round_trips_with_extensions() {
        let cp = Checkpoint {
            origin: "gatehouse.example/audit".into(),
            size: 0,
            root: super::super::merkle::empty_root(),
            extensions: vec!["ext one".into(), "— two".into()],
        };
        cp.validate().unwrap();
        let body = cp.to_body();
        assert_eq!(body, "gatehouse.example/audit\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n— two\n");
        assert_eq!(Checkpoint::parse(&body).unwrap(), cp);
    }

    #[test]
    fn max_size_round_trips() {
        let body = format!("o\n{}\n{}\n", u64::MAX, STANDARD.encode([7u8; 32]));
        assert_eq!(Checkpoint::parse(&body).unwrap().size, u64::MAX);
    }

    #[test]
    fn rejects_malformed_bodies() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases: Vec<(String, CheckpointError)> = vec![
            (format!("o\n1\n{root}"), CheckpointError::MissingFinalNewline),
            ("".into(), CheckpointError::MissingFinalNewline),
            ("\n".into(), CheckpointError::TooFewLines { found: 0 }),
            ("o\n1\n".into(), CheckpointError::TooFewLines { found: 2 }),
            (format!("\n1\n{root}\n"), CheckpointError::EmptyLine { line: 1 }),
            (format!("o\n1\n{root}\n\n"), CheckpointError::EmptyLine { line: 4 }),
            (format!("o\n1\n{root}\next\n\nmore\n"), CheckpointError::EmptyLine { line: 5 }),
            (format!("o\r\n1\n{root}\n"), CheckpointError::NonPrintable { line: 1 }),
            (format!("o\u{7f}\n1\n{root}\n"), CheckpointError::NonPrintable { line: 1 }),
            (format!("o\n1\n{root}\nbad\u{0}\n"), CheckpointError::NonPrintable { line: 4 }),
            (format!("o\n01\n{root}\n"), CheckpointError::NonCanonicalSize("01".into())),
            (format!("o\n00\n{root}\n"), CheckpointError::NonCanonicalSize("00".into())),
            (format!("o\n+1\n{root}\n"), CheckpointError::NonCanonicalSize("+1".into())),
            (format!("o\n-1\n{root}\n"), CheckpointError::NonCanonicalSize("-1".into())),
            (format!("o\n 1\n{root}\n"), CheckpointError::NonCanonicalSize(" 1".into())),
            (format!("o\n1e3\n{root}\n"), CheckpointError::NonCanonicalSize("1e3".into())),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::SizeOverflow("18446744073709551616".into()),
            ),
            ("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".into(), CheckpointError::RootNotBase64),
            (
                // URL-safe alphabet is not the standard one.
                "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n".into(),
                CheckpointError::RootNotBase64,
            ),
            (
                // Same bytes, but non-zero trailing bits: a second spelling of one hash.
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".into(),
                CheckpointError::RootNotBase64,
            ),
            (format!("o\n1\n {root}\n"), CheckpointError::RootNotBase64),
            (format!("o\n1\n{}\n", STANDARD.encode([1u8; 31])), CheckpointError::RootWrongLength(31)),
            (format!("o\n1\n{}\n", STANDARD.encode([1u8; 33])), CheckpointError::RootWrongLength(33)),
        ];
        for (body, want) in cases {
            assert_eq!(Checkpoint::parse(&body), Err(want), "body {body:?}");
        }
    }

    #[test]
    fn validate_rejects_fields_that_would_not_parse() {
        let mut cp = Checkpoint::parse(SPEC_EXAMPLE).unwrap();
        cp.origin = "two\nlines".into();
        assert_eq!(cp.validate(), Err(CheckpointError::EmbeddedNewline { line: 1 }));
        cp.origin = "o".into();
        cp.extensions = vec!["fine".into(), String::new()];
        assert_eq!(cp.validate(), Err(CheckpointError::EmptyLine { line: 5 }));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            CheckpointError::NonCanonicalSize("01".into()).to_string(),
            "tree size \"01\" is not a canonical decimal number (digits only, no leading zeros)"
        );
    }
}
