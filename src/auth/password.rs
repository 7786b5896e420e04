//! Staff password hashing, verification and strength rules (argon2id, PHC strings).

use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use thiserror::Error;

/// OWASP Password Storage Cheat Sheet, argon2id option 1: 19 MiB of memory, two passes, one lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// 16 bytes is the salt length the PHC string format recommends; more buys nothing.
const SALT_LEN: usize = 16;

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Caps the work an attacker can make us do per attempt and keeps stored input sane.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// The dummy hash only has to cost the same as a real one, so its salt need not be secret or random.
const DUMMY_SALT: &[u8; SALT_LEN] = b"gatehouse-dummy!";
const DUMMY_PASSWORD: &[u8] = b"gatehouse dummy password, never a real one";

#[derive(Debug, Error)]
pub enum PasswordError {
    #[error("the password is too short: it needs at least {min} characters, it has {actual}")]
    TooShort { min: usize, actual: usize },
    #[error("the password is too long: it may be at most {max} bytes")]
    TooLong { max: usize },
    #[error("the password repeats a single character; choose one with some variety")]
    SingleRepeatedCharacter,
    #[error("the system random number generator failed, so no salt could be made")]
    Random,
    #[error("the password could not be hashed: {0}")]
    Hashing(String),
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with_salt(password: &[u8], salt: &[u8]) -> Result<String, PasswordError> {
    let hash = hasher()?.hash_password_with_salt(password, salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Hashes with argon2id and a fresh random salt, returning a self-describing PHC string to store.
///
/// Does not apply [`check_strength`]: callers enforce policy when a password is *chosen*, not whenever it is hashed.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| PasswordError::Random)?;
    hash_with_salt(password.as_bytes(), &salt)
}

/// True only when `password` matches the stored PHC string; any malformed or unsupported PHC gives false.
///
/// Parameters are taken from the PHC string, so hashes made with older settings keep verifying.
/// The final comparison is constant-time inside the `password-hash` crate.
pub fn verify_password(password: &str, phc: &str) -> bool {
    // The default instance is only a carrier: algorithm, version and costs are all read from `phc`.
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// Checks the password policy for a newly chosen password.
pub fn check_strength(password: &str) -> Result<(), PasswordError> {
    // Bytes first, so the character count below never walks an enormous string.
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong { max: MAX_PASSWORD_BYTES });
    }
    // Characters, not bytes: twelve accented letters are twelve characters to the person typing them.
    let actual = password.chars().count();
    if actual < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { min: MIN_PASSWORD_CHARS, actual });
    }
    let first = password.chars().next();
    if password.chars().all(|c| Some(c) == first) {
        return Err(PasswordError::SingleRepeatedCharacter);
    }
    Ok(())
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY.get_or_init(|| hash_with_salt(DUMMY_PASSWORD, DUMMY_SALT).ok()).as_deref()
}

/// Spends the same argon2id work as [`verify_password`] against a real hash, and always fails.
///
/// Call this when the account does not exist, so response time does not reveal which staff accounts exist.
/// The dummy hash is built on first use, which makes that first call roughly twice as slow; call it once at
/// start-up (with any input) to take that cost out of the request path.
pub fn verify_against_dummy(password: &str) {
    match dummy_hash() {
        Some(phc) => {
            let _ = verify_password(password, phc);
        }
        None => {
            // Only reachable if argon2 rejects our own constant parameters; still burn the same work.
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            if let Ok(argon2) = hasher() {
                let _ = argon2.hash_password_into(password.as_bytes(), DUMMY_SALT, &mut out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(verify_password("correct horse battery staple", &phc));
    }

    #[test]
    fn phc_string_pins_argon2id_and_owasp_parameters() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    }

    #[test]
    fn salts_differ_between_hashes() {
        let a = hash_password("correct horse battery staple").unwrap();
        let b = hash_password("correct horse battery staple").unwrap();
        assert_ne!(a, b);
        assert!(verify_password("correct horse battery staple", &a));
        assert!(verify_password("correct horse battery staple", &b));
    }

    #[test]
    fn wrong_password_is_refused() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn garbage_phc_is_refused() {
        for phc in ["", "not a hash", "$argon2id$", "$argon2id$v=19$m=19456,t=2,p=1$!!!$!!!", "$unknown$v=1$abc$def"] {
            assert!(!verify_password("correct horse battery staple", phc), "{phc}");
        }
    }

    #[test]
    fn tampered_phc_is_refused() {
        let phc = hash_password("correct horse battery staple").unwrap();
        let mut tampered = phc.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!verify_password("correct horse battery staple", &tampered));
    }

    #[test]
    fn dummy_verification_runs_and_never_panics() {
        verify_against_dummy("whatever");
        verify_against_dummy("");
        assert!(dummy_hash().is_some());
        assert!(!verify_password("whatever", dummy_hash().unwrap()));
    }

    #[test]
    fn strength_accepts_reasonable_passwords() {
        assert!(check_strength("correct horse").is_ok());
        assert!(check_strength("aaaaaaaaaaab").is_ok());
        assert!(check_strength(&"x1".repeat(128)).is_ok());
    }

    #[test]
    fn strength_refuses_short_passwords() {
        assert!(matches!(check_strength(""), Err(PasswordError::TooShort { min: 12, actual: 0 })));
        assert!(matches!(check_strength("abcdefghijk"), Err(PasswordError::TooShort { actual: 11, .. })));
    }

    #[test]
    fn strength_counts_characters_not_bytes() {
        // Eleven two-byte characters: 22 bytes but still too short.
        assert!(matches!(check_strength(&"é".repeat(11)), Err(PasswordError::TooShort { actual: 11, .. })));
        assert!(check_strength("éèêëàâäôöûüç").is_ok());
    }

    #[test]
    fn strength_refuses_long_passwords() {
        assert!(check_strength(&"ab".repeat(128)).is_ok());
        assert!(matches!(check_strength(&format!("{}c", "ab".repeat(128))), Err(PasswordError::TooLong { max: 256 })));
        // 129 two-byte characters: fewer than 256 characters but more than 256 bytes.
        assert!(matches!(check_strength(&"é".repeat(129)), Err(PasswordError::TooLong { .. })));
    }

    #[test]
    fn strength_refuses_one_repeated_character() {
        assert!(matches!(check_strength("aaaaaaaaaaaa"), Err(PasswordError::SingleRepeatedCharacter)));
        assert!(matches!(check_strength(&"é".repeat(20)), Err(PasswordError::SingleRepeatedCharacter)));
    }

    #[test]
    fn error_messages_are_readable() {
        let msg = check_strength("short").unwrap_err().to_string();
        assert_eq!(msg, "the password is too short: it needs at least 12 characters, it has 5");
    }
}
