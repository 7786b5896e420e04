//! Time-based one-time passwords for staff second factor (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1).

use std::fmt;

use aws_lc_rs::{constant_time, hmac};
use data_encoding::BASE32_NOPAD;
use thiserror::Error;

/// RFC 6238 defaults, and the only values authenticator apps reliably support.
pub const PERIOD_SECONDS: u64 = 30;
pub const DIGITS: u32 = 6;

/// RFC 4226 section 4 recommends 160-bit secrets, the natural key size for HMAC-SHA1.
const GENERATED_SECRET_BYTES: usize = 20;
/// RFC 4226 section 4, requirement R6: the shared secret MUST be at least 128 bits.
const MIN_SECRET_BYTES: usize = 16;

/// Digits beyond 10 would only add leading zeros: dynamic truncation yields a 31-bit number.
const MAX_DIGITS: u32 = 10;

#[derive(Debug, Error)]
pub enum TotpError {
    #[error("the system random number generator failed, so no TOTP secret could be made")]
    Random,
    #[error("the TOTP secret is not valid base32 (letters A-Z and digits 2-7)")]
    InvalidBase32,
    #[error("the TOTP secret is too short: it must be at least {min_bytes} bytes")]
    TooShort { min_bytes: usize },
}

/// A shared TOTP secret. Deliberately not `PartialEq`, so no one compares secrets in variable time.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    pub fn generate() -> Result<Self, TotpError> {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TotpError::Random)?;
        Ok(Self(bytes))
    }

    /// Accepts what people copy from an authenticator screen: any case, spaces, and optional `=` padding.
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let cleaned: String =
            text.chars().filter(|c| !c.is_ascii_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
        let bytes = BASE32_NOPAD.decode(cleaned.as_bytes()).map_err(|_| TotpError::InvalidBase32)?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(TotpError::TooShort { min_bytes: MIN_SECRET_BYTES });
        }
        Ok(Self(bytes))
    }

    /// RFC 4648 base32, upper case, unpadded: the form the Key Uri Format expects.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }
}

/// RFC 4226 section 5.3: HMAC-SHA1 over the 8-byte big-endian counter, then dynamic truncation.
fn hotp(secret: &TotpSecret, counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret.0);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // SHA-1 tags are 20 bytes, so the low nibble of the last byte (at most 15) plus four always fits;
    // the fallbacks only keep this function free of indexing panics.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let mut word = [0u8; 4];
    if let Some(chunk) = mac.get(offset..offset + 4) {
        word.copy_from_slice(chunk);
    }
    let truncated = u64::from(u32::from_be_bytes(word) & 0x7fff_ffff);
    let digits = digits.clamp(1, MAX_DIGITS);
    let modulus = 10u64.pow(digits);
    format!("{:0width$}", truncated % modulus, width = digits as usize)
}

/// The code for the 30-second step containing `unix_seconds`, zero-padded to `digits` (clamped to 1..=10).
pub fn code_at(secret: &TotpSecret, unix_seconds: u64, digits: u32) -> String {
    hotp(secret, unix_seconds / PERIOD_SECONDS, digits)
}

/// Checks a 6-digit code typed at `unix_seconds`, returning the step it belongs to.
///
/// One step either side of the current one is accepted to absorb phone clock drift. Steps at or before
/// `last_used_step` are refused, so a code seen over someone's shoulder cannot be replayed; the caller must
/// store the returned step as the new `last_used_step`.
pub fn verify(secret: &TotpSecret, code: &str, unix_seconds: u64, last_used_step: Option<u64>) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = unix_seconds / PERIOD_SECONDS;
    let candidates = [current.checked_sub(1), Some(current), current.checked_add(1)];
    let mut matched = None;
    // Every candidate is computed and compared, so timing does not reveal which step (if any) matched.
    // Keeping the latest match is the stricter choice for replay protection.
    for step in candidates.into_iter().flatten() {
        let expected = hotp(secret, step, DIGITS);
        let equal = constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok();
        let fresh = last_used_step.is_none_or(|last| step > last);
        if equal && fresh {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 3986 section 2.3 unreserved characters pass; every other byte of the UTF-8 becomes `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI (Google Authenticator Key Uri Format) to show as a QR code at enrolment.
///
/// The result contains the secret: treat it as one (never log it).
pub fn enrolment_uri(secret: &TotpSecret, account: &str, issuer: &str) -> String {
    let issuer = percent_encode(issuer);
    let account = percent_encode(account);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        secret.to_base32()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B and RFC 4226 Appendix D share this ASCII secret for SHA-1.
    fn rfc_secret() -> TotpSecret {
        TotpSecret(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, expected) in vectors {
            assert_eq!(code_at(&rfc_secret(), time, 8), expected, "t = {time}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, code) in (0u64..).zip(expected) {
            assert_eq!(code_at(&rfc_secret(), counter * 30, 6), code, "counter = {counter}");
            // Anywhere inside the step gives the same code.
            assert_eq!(code_at(&rfc_secret(), counter * 30 + 29, 6), code, "counter = {counter}");
        }
    }

    #[test]
    fn digits_are_clamped_and_zero_padded() {
        assert_eq!(code_at(&rfc_secret(), 1_111_111_109, 8), "07081804");
        assert_eq!(code_at(&rfc_secret(), 0, 0).len(), 1);
        assert_eq!(code_at(&rfc_secret(), 0, 99).len(), 10);
    }

    #[test]
    fn accepts_current_step_and_one_either_side() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let step = now / 30;
        assert_eq!(verify(&secret, &code_at(&secret, now, 6), now, None), Some(step));
        assert_eq!(verify(&secret, &code_at(&secret, now - 30, 6), now, None), Some(step - 1));
        assert_eq!(verify(&secret, &code_at(&secret, now + 30, 6), now, None), Some(step + 1));
    }

    #[test]
    fn refuses_codes_outside_the_drift_window() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        assert_eq!(verify(&secret, &code_at(&secret, now - 60, 6), now, None), None);
        assert_eq!(verify(&secret, &code_at(&secret, now + 60, 6), now, None), None);
    }

    #[test]
    fn works_at_the_start_of_time() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, "755224", 0, None), Some(0));
        assert_eq!(verify(&secret, "287082", 0, None), Some(1));
    }

    #[test]
    fn refuses_replay_of_the_same_or_an_earlier_step() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let code = code_at(&secret, now, 6);
        let used = verify(&secret, &code, now, None);
        assert!(used.is_some());
        assert_eq!(verify(&secret, &code, now, used), None);
        assert_eq!(verify(&secret, &code, now + 30, used), None);
        let previous = code_at(&secret, now - 30, 6);
        assert_eq!(verify(&secret, &previous, now, used), None);
        // The next step is still fine.
        let next = code_at(&secret, now + 30, 6);
        assert_eq!(verify(&secret, &next, now + 30, used), used.map(|s| s + 1));
    }

    #[test]
    fn refuses_malformed_codes() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let good = code_at(&secret, now, 6);
        for bad in [
            "".to_string(),
            "12345".to_string(),
            "1234567".to_string(),
            format!(" {good}"),
            format!("{good} "),
            format!("{good}0"),
            "12a456".to_string(),
            "+12345".to_string(),
            "١٢٣٤٥٦".to_string(), // Arabic-Indic digits are digits, but not ASCII ones.
            code_at(&secret, now, 8),
        ] {
            assert_eq!(verify(&secret, &bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_round_trip_and_leniency() {
        let secret = rfc_secret();
        let text = secret.to_base32();
        assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let back = TotpSecret::from_base32(&text).unwrap();
        assert_eq!(back.0, secret.0);
        let spaced = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(spaced.0, secret.0);
    }

    #[test]
    fn base32_refuses_bad_input() {
        assert!(matches!(TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1"), Err(TotpError::InvalidBase32)));
        assert!(matches!(TotpSecret::from_base32("GEZDGNBV"), Err(TotpError::TooShort { min_bytes: 16 })));
        assert!(matches!(TotpSecret::from_base32(""), Err(TotpError::TooShort { .. })));
    }

    #[test]
    fn generated_secrets_are_20_random_bytes() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_eq!(a.0.len(), 20);
        assert_ne!(a.0, b.0);
        assert_eq!(a.to_base32().len(), 32);
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = rfc_secret();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "TotpSecret(<redacted>)");
        assert!(!shown.contains(&secret.to_base32()));
    }

    #[test]
    fn enrolment_uri_format() {
        let uri = enrolment_uri(&rfc_secret(), "dr.jane o'neil@example.nhs.uk", "Gatehouse Video");
        assert_eq!(
            uri,
            "otpauth://totp/Gatehouse%20Video:dr.jane%20o%27neil%40example.nhs.uk\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Gatehouse%20Video&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn percent_encoding_escapes_everything_but_unreserved() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode(":/?#&=+ %"), "%3A%2F%3F%23%26%3D%2B%20%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_current_code_verifies_once(bytes in proptest::collection::vec(any::<u8>(), 16..64),
                                             now in 30u64..4_000_000_000) {
                let secret = TotpSecret(bytes);
                let code = code_at(&secret, now, 6);
                let step = verify(&secret, &code, now, None);
                prop_assert!(step.is_some());
                prop_assert_eq!(verify(&secret, &code, now, step), None);
            }

            #[test]
            fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 16..64)) {
                let secret = TotpSecret(bytes.clone());
                prop_assert_eq!(TotpSecret::from_base32(&secret.to_base32()).unwrap().0, bytes);
            }
        }
    }
}
