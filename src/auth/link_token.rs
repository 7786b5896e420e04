//! Signed join links: compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), algorithm pinned.
//!
//! Written by hand rather than with a JWT library so that exactly one algorithm is ever accepted and no header
//! field can steer verification (no `alg` negotiation, no embedded keys, no `crit` extensions).

use std::fmt;

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

const ALGORITHM: &str = "EdDSA";
const TYPE: &str = "JWT";
const ISSUER: &str = "gatehouse";
const AUDIENCE: &str = "gatehouse-join";

/// Real links are a few hundred bytes; the cap stops hostile input costing us decoding and parsing work.
pub const MAX_TOKEN_BYTES: usize = 2048;

const PUBLIC_KEY_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// One variant for every kind of forgery or corruption, so callers and attackers learn nothing about which
    /// check failed.
    #[error("the join link is not valid")]
    Invalid,
    #[error("the join link cannot be used yet: it opens at unix time {opens_at}")]
    NotYetValid { opens_at: u64 },
    #[error("the join link has expired")]
    Expired,
    #[error("the Ed25519 signing key was rejected: {0}")]
    KeyRejected(String),
    #[error("an Ed25519 signing key could not be generated")]
    KeyGeneration,
    #[error("the join link could not be signed")]
    Signing,
}

impl LinkError {
    /// Stable machine-readable code for API responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid => "link_invalid",
            Self::NotYetValid { .. } => "window_not_open",
            Self::Expired => "link_expired",
            Self::KeyRejected(_) => "signing_key_rejected",
            Self::KeyGeneration => "key_generation_failed",
            Self::Signing => "signing_failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkRole {
    Clinician,
    Guest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub link_id: Uuid,
    pub appointment: Uuid,
    pub participant: Uuid,
    pub role: LinkRole,
    /// Unix seconds; the link is refused before this instant.
    pub not_before: u64,
    /// Unix seconds; the link is refused at and after this instant.
    pub expires: u64,
}

/// Field order here is the order on the wire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireClaims {
    iss: String,
    aud: String,
    lid: Uuid,
    apt: Uuid,
    sub: Uuid,
    role: LinkRole,
    nbf: u64,
    exp: u64,
}

/// Unknown members (notably `crit`, `jwk`, `jku`, `x5u`) fail parsing, which is how they are refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// 8 lower-case hex digits: the first 4 bytes of SHA-256 over the raw public key.
fn key_id(public_key: &[u8]) -> String {
    let hash = digest::digest(&SHA256, public_key);
    hash.as_ref().iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// JWS Signing Input per RFC 7515 section 5.1: `BASE64URL(header) || '.' || BASE64URL(payload)`, then the
/// signature appended as a third base64url part.
fn sign_compact(key: &Ed25519KeyPair, header_json: &[u8], payload: &[u8]) -> Result<String, LinkError> {
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.try_sign(token.as_bytes()).map_err(|_| LinkError::Signing)?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
    Ok(token)
}

/// Signs join links with one Ed25519 key.
pub struct LinkSigner {
    key: Ed25519KeyPair,
    kid: String,
}

impl fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A fresh Ed25519 private key as PKCS#8 v2 DER, for storing in the secret store.
pub fn generate_pkcs8() -> Result<Vec<u8>, LinkError> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| LinkError::KeyGeneration)?;
    Ok(document.as_ref().to_vec())
}

impl LinkSigner {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, LinkError> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| LinkError::KeyRejected(e.to_string()))?;
        let kid = key_id(key.public_key().as_ref());
        Ok(Self { key, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        let raw = self.key.public_key().as_ref();
        // Ed25519 public keys are always 32 bytes; a mismatch would leave zeros, which no verifier will trust.
        if raw.len() == PUBLIC_KEY_LEN {
            out.copy_from_slice(raw);
        }
        out
    }

    pub fn sign(&self, claims: &LinkClaims) -> Result<String, LinkError> {
        let header = Header { alg: ALGORITHM.to_owned(), kid: self.kid.clone(), typ: TYPE.to_owned() };
        let payload = WireClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            lid: claims.link_id,
            apt: claims.appointment,
            sub: claims.participant,
            role: claims.role,
            nbf: claims.not_before,
            exp: claims.expires,
        };
        let header_json = serde_json::to_vec(&header).map_err(|_| LinkError::Signing)?;
        let payload_json = serde_json::to_vec(&payload).map_err(|_| LinkError::Signing)?;
        sign_compact(&self.key, &header_json, &payload_json)
    }
}

/// Verifies join links against a set of trusted public keys.
///
/// After a key rotation the old public key stays here until every link it signed has expired, then is removed.
#[derive(Debug, Clone, Default)]
pub struct LinkVerifier {
    keys: Vec<(String, [u8; PUBLIC_KEY_LEN])>,
}

/// base64url alphabet only: rejects padding, whitespace and the standard alphabet before any decoding.
fn is_base64url(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_part(part: &str) -> Result<Vec<u8>, LinkError> {
    if !is_base64url(part) {
        return Err(LinkError::Invalid);
    }
    // The engine also refuses non-canonical trailing bits, so each token has exactly one encoding.
    URL_SAFE_NO_PAD.decode(part).map_err(|_| LinkError::Invalid)
}

/// Parses a JSON object into `T`. serde's derive would also accept the struct as a JSON array in field order,
/// which JOSE forbids and which would dodge `deny_unknown_fields`, so anything but an object is refused first.
/// Parsing straight into `T` (not via `serde_json::Value`) keeps duplicate members an error rather than last-wins.
fn parse_object<T: DeserializeOwned>(json: &[u8]) -> Result<T, LinkError> {
    let first = json.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(LinkError::Invalid);
    }
    serde_json::from_slice(json).map_err(|_| LinkError::Invalid)
}

impl LinkVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key` and returns its key id. Adding a key twice is harmless.
    pub fn add(&mut self, public_key: [u8; PUBLIC_KEY_LEN]) -> String {
        let kid = key_id(&public_key);
        if !self.keys.iter().any(|(_, known)| *known == public_key) {
            self.keys.push((kid.clone(), public_key));
        }
        kid
    }

    /// Stops trusting every key with this key id; returns whether any was removed.
    pub fn remove(&mut self, kid: &str) -> bool {
        let before = self.keys.len();
        self.keys.retain(|(known, _)| known != kid);
        self.keys.len() != before
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(kid, _)| kid.as_str())
    }

    /// Checks structure, algorithm, key, signature, issuer and audience, then the time window.
    ///
    /// The time window is only looked at once the signature holds, so `NotYetValid` and `Expired` are never
    /// reported for forged tokens.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<LinkClaims, LinkError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(LinkError::Invalid);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Invalid);
        };

        let header: Header = parse_object(&decode_part(header_b64)?)?;
        // Exact byte comparison: no case folding or trimming, so "eddsa" and "EdDSA " are refused like "none".
        if header.alg != ALGORITHM || header.typ != TYPE {
            return Err(LinkError::Invalid);
        }

        let signature = decode_part(signature_b64)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(LinkError::Invalid);
        }
        // The signed bytes are the encoded parts exactly as received (RFC 7515 section 5.2, step 8).
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = token.get(..signing_input_len).ok_or(LinkError::Invalid)?;
        // kid only selects among keys we already trust; every key sharing that id is tried, to survive the
        // (one in four billion) chance that two trusted keys share an id.
        let authentic = self
            .keys
            .iter()
            .filter(|(kid, _)| *kid == header.kid)
            .any(|(_, key)| verify_bytes(key, signing_input.as_bytes(), &signature));
        if !authentic {
            return Err(LinkError::Invalid);
        }

        let wire: WireClaims = parse_object(&decode_part(payload_b64)?)?;
        if wire.iss != ISSUER || wire.aud != AUDIENCE {
            return Err(LinkError::Invalid);
        }
        if now_unix < wire.nbf {
            return Err(LinkError::NotYetValid { opens_at: wire.nbf });
        }
        if now_unix >= wire.exp {
            return Err(LinkError::Expired);
        }
        Ok(LinkClaims {
            link_id: wire.lid,
            appointment: wire.apt,
            participant: wire.sub,
            role: wire.role,
            not_before: wire.nbf,
            expires: wire.exp,
        })
    }
}

fn verify_bytes(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key).verify(message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hmac;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

    const NOW: u64 = 1_800_000_000;

    fn new_signer() -> LinkSigner {
        LinkSigner::from_pkcs8(&generate_pkcs8().unwrap()).unwrap()
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            link_id: Uuid::new_v4(),
            appointment: Uuid::new_v4(),
            participant: Uuid::new_v4(),
            role: LinkRole::Guest,
            not_before: NOW - 600,
            expires: NOW + 3600,
        }
    }

    fn verifier_for(signer: &LinkSigner) -> LinkVerifier {
        let mut verifier = LinkVerifier::new();
        verifier.add(signer.public_key());
        verifier
    }

    fn wire_json(claims: &LinkClaims) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE,
            "lid": claims.link_id, "apt": claims.appointment, "sub": claims.participant,
            "role": claims.role, "nbf": claims.not_before, "exp": claims.expires,
        })
    }

    fn header_json(alg: &str, kid: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "alg": alg, "kid": kid, "typ": "JWT" })).unwrap()
    }

    /// Genuinely signed with `signer`'s key, so only the check under test can refuse it.
    fn signed_raw(signer: &LinkSigner, header: &[u8], payload: &[u8]) -> String {
        sign_compact(&signer.key, header, payload).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn round_trip() {
        let signer = new_signer();
        let claims = claims();
        let token = signer.sign(&claims).unwrap();
        assert_eq!(verifier_for(&signer).verify(&token, NOW).unwrap(), claims);
        let clinician = LinkClaims { role: LinkRole::Clinician, ..claims };
        assert_eq!(verifier_for(&signer).verify(&signer.sign(&clinician).unwrap(), NOW).unwrap(), clinician);
    }

    #[test]
    fn wire_format_is_exact() {
        let signer = new_signer();
        let claims = claims();
        let token = signer.sign(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"JWT"}}"#, signer.kid())
        );
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            format!(
                r#"{{"iss":"gatehouse","aud":"gatehouse-join","lid":"{}","apt":"{}","sub":"{}","role":"guest","nbf":{},"exp":{}}}"#,
                claims.link_id, claims.appointment, claims.participant, claims.not_before, claims.expires
            )
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    }

    #[test]
    fn kid_is_first_four_bytes_of_sha256_of_public_key() {
        let signer = new_signer();
        let hash = digest::digest(&SHA256, &signer.public_key());
        let expected: String = hash.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(signer.kid(), expected);
        assert_eq!(signer.kid().len(), 8);
        assert!(signer.kid().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn forged_payload_with_kept_signature_is_invalid() {
        let signer = new_signer();
        let token = signer.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = claims();
        forged_claims.role = LinkRole::Clinician;
        let forged_payload = b64(&serde_json::to_vec(&wire_json(&forged_claims)).unwrap());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verifier_for(&signer).verify(&forged, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn alg_none_with_empty_signature_is_invalid() {
        let signer = new_signer();
        let payload = b64(&serde_json::to_vec(&wire_json(&claims())).unwrap());
        let verifier = verifier_for(&signer);
        for header in [header_json("none", signer.kid()), br#"{"alg":"none"}"#.to_vec()] {
            let token = format!("{}.{}.", b64(&header), payload);
            assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid));
        }
    }

    #[test]
    fn hs256_keyed_with_the_public_key_is_invalid() {
        // The classic confusion attack: a verifier that trusts `alg` would check this HMAC with the public key.
        let signer = new_signer();
        let signing_input = format!(
            "{}.{}",
            b64(&header_json("HS256", signer.kid())),
            b64(&serde_json::to_vec(&wire_json(&claims())).unwrap())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &signer.public_key());
        let tag = hmac::sign(&key, signing_input.as_bytes());
        let token = format!("{signing_input}.{}", b64(tag.as_ref()));
        assert_eq!(verifier_for(&signer).verify(&token, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn es256_is_invalid() {
        let signer = new_signer();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let signing_input = format!(
            "{}.{}",
            b64(&header_json("ES256", signer.kid())),
            b64(&serde_json::to_vec(&wire_json(&claims())).unwrap())
        );
        let signature = ec.sign(&rng, signing_input.as_bytes()).unwrap();
        // A P-256 fixed signature is 64 bytes too, so only the algorithm check stands in the way.
        assert_eq!(signature.as_ref().len(), 64);
        let token = format!("{signing_input}.{}", b64(signature.as_ref()));
        assert_eq!(verifier_for(&signer).verify(&token, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn near_miss_algorithm_names_are_invalid_even_with_a_good_signature() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let payload = serde_json::to_vec(&wire_json(&claims())).unwrap();
        for alg in ["EdDSA ", " EdDSA", "eddsa", "EDDSA", "Ed25519", "ES256", "HS256", "RS256", "none", ""] {
            let token = signed_raw(&signer, &header_json(alg, signer.kid()), &payload);
            assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid), "{alg:?}");
        }
        let good = signed_raw(&signer, &header_json("EdDSA", signer.kid()), &payload);
        assert!(verifier.verify(&good, NOW).is_ok());
    }

    #[test]
    fn header_is_parsed_strictly() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let payload = serde_json::to_vec(&wire_json(&claims())).unwrap();
        let kid = signer.kid();
        let headers = [
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT","crit":["exp"]}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT","jwk":{{}}}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"jwt"}}"#),
            format!(r#"{{"alg":"EdDSA","alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#),
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}} trailing"#),
            format!(r#"["EdDSA","{kid}","JWT"]"#),
            r#"{"alg":"EdDSA","typ":"JWT"}"#.to_string(),
        ];
        for header in headers {
            let token = signed_raw(&signer, header.as_bytes(), &payload);
            assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid), "{header}");
        }
    }

    #[test]
    fn token_from_an_untrusted_key_is_invalid() {
        let trusted = new_signer();
        let stranger = new_signer();
        let token = stranger.sign(&claims()).unwrap();
        assert_eq!(verifier_for(&trusted).verify(&token, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn known_kid_signed_by_another_key_is_invalid() {
        let trusted = new_signer();
        let attacker = new_signer();
        let payload = serde_json::to_vec(&wire_json(&claims())).unwrap();
        let token = signed_raw(&attacker, &header_json("EdDSA", trusted.kid()), &payload);
        assert_eq!(verifier_for(&trusted).verify(&token, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn old_keys_stay_trusted_until_removed() {
        let old = new_signer();
        let new = new_signer();
        let mut verifier = LinkVerifier::new();
        let old_kid = verifier.add(old.public_key());
        assert_eq!(verifier.add(new.public_key()), new.kid());
        verifier.add(old.public_key());
        assert_eq!(verifier.kids().count(), 2);
        let old_token = old.sign(&claims()).unwrap();
        let new_token = new.sign(&claims()).unwrap();
        assert!(verifier.verify(&old_token, NOW).is_ok());
        assert!(verifier.verify(&new_token, NOW).is_ok());
        assert!(verifier.remove(&old_kid));
        assert!(!verifier.remove(&old_kid));
        assert_eq!(verifier.verify(&old_token, NOW), Err(LinkError::Invalid));
        assert!(verifier.verify(&new_token, NOW).is_ok());
    }

    #[test]
    fn empty_verifier_trusts_nothing() {
        let token = new_signer().sign(&claims()).unwrap();
        assert_eq!(LinkVerifier::new().verify(&token, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn time_window() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let claims = claims();
        let token = signer.sign(&claims).unwrap();
        assert_eq!(
            verifier.verify(&token, claims.not_before - 1),
            Err(LinkError::NotYetValid { opens_at: claims.not_before })
        );
        assert!(verifier.verify(&token, claims.not_before).is_ok());
        assert!(verifier.verify(&token, claims.expires - 1).is_ok());
        assert_eq!(verifier.verify(&token, claims.expires), Err(LinkError::Expired));
        assert_eq!(verifier.verify(&token, u64::MAX), Err(LinkError::Expired));
    }

    #[test]
    fn forged_tokens_never_report_time_errors() {
        let signer = new_signer();
        let stranger = new_signer();
        let token = stranger.sign(&claims()).unwrap();
        assert_eq!(verifier_for(&signer).verify(&token, 0), Err(LinkError::Invalid));
        assert_eq!(verifier_for(&signer).verify(&token, u64::MAX), Err(LinkError::Invalid));
    }

    #[test]
    fn wrong_issuer_audience_or_unknown_claims_are_invalid() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let header = header_json("EdDSA", signer.kid());
        let mut cases = Vec::new();
        for (field, value) in [
            ("iss", serde_json::json!("gatehouse ")),
            ("iss", serde_json::json!("Gatehouse")),
            ("aud", serde_json::json!("gatehouse")),
            ("aud", serde_json::json!(["gatehouse-join"])),
            ("admin", serde_json::json!(true)),
            ("role", serde_json::json!("admin")),
            ("role", serde_json::json!("Clinician")),
            ("exp", serde_json::json!(-1)),
            ("exp", serde_json::json!(1.5e10)),
        ] {
            let mut wire = wire_json(&claims());
            wire[field] = value;
            cases.push(wire);
        }
        for missing in ["iss", "aud", "lid", "apt", "sub", "role", "nbf", "exp"] {
            let mut wire = wire_json(&claims());
            wire.as_object_mut().unwrap().remove(missing);
            cases.push(wire);
        }
        let c = claims();
        cases.push(serde_json::json!([
            ISSUER,
            AUDIENCE,
            c.link_id,
            c.appointment,
            c.participant,
            c.role,
            c.not_before,
            c.expires
        ]));
        let mut duplicated = serde_json::to_string(&wire_json(&c)).unwrap();
        duplicated.insert_str(1, r#""role":"clinician","#);
        let token = signed_raw(&signer, &header, duplicated.as_bytes());
        assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid), "{duplicated}");
        for wire in cases {
            let token = signed_raw(&signer, &header, &serde_json::to_vec(&wire).unwrap());
            assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid), "{wire}");
        }
        let control = signed_raw(&signer, &header, &serde_json::to_vec(&wire_json(&claims())).unwrap());
        assert!(verifier.verify(&control, NOW).is_ok());
    }

    #[test]
    fn padded_or_non_url_base64_is_invalid() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let token = signer.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // An 86-character signature encodes 64 bytes with two padding characters omitted.
        assert_eq!(parts[2].len(), 86);
        let padded_signature = format!("{}.{}.{}==", parts[0], parts[1], parts[2]);
        assert_eq!(verifier.verify(&padded_signature, NOW), Err(LinkError::Invalid));
        // Re-encode header and payload with padding; the signature is recomputed so only padding is wrong.
        let padded = base64::engine::general_purpose::URL_SAFE;
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let padded_header = padded.encode(&header);
        let padded_payload = padded.encode(&payload);
        assert!(padded_header.ends_with('=') || padded_payload.ends_with('='), "test needs a part that pads");
        let input = format!("{padded_header}.{padded_payload}");
        let sig = signer.key.sign(input.as_bytes());
        let token = format!("{input}.{}", b64(sig.as_ref()));
        assert_eq!(verifier.verify(&token, NOW), Err(LinkError::Invalid));
        // Standard-alphabet characters and whitespace are refused too.
        for bad in [token.replace('-', "+").replace('_', "/"), format!(" {token}"), format!("{token}\n")] {
            assert_eq!(verifier.verify(&bad, NOW), Err(LinkError::Invalid));
        }
    }

    #[test]
    fn non_canonical_signature_encoding_is_invalid() {
        // The last character of an 86-character part carries 2 spare bits; flipping them must not still verify.
        let signer = new_signer();
        let token = signer.sign(&claims()).unwrap();
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = sig.as_bytes()[sig.len() - 1];
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        let sibling = alphabet[index ^ 1];
        let tweaked = format!("{rest}.{}{}", &sig[..sig.len() - 1], char::from(sibling));
        assert_eq!(verifier_for(&signer).verify(&tweaked, NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn wrong_number_of_parts_is_invalid() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let token = signer.sign(&claims()).unwrap();
        let (first_two, _) = token.rsplit_once('.').unwrap();
        for bad in [
            format!("{token}.{}", b64(b"extra")),
            format!("{token}."),
            first_two.to_string(),
            token.replacen('.', "", 1),
            String::new(),
            "..".to_string(),
            "...".to_string(),
        ] {
            assert_eq!(verifier.verify(&bad, NOW), Err(LinkError::Invalid), "{bad}");
        }
    }

    #[test]
    fn oversized_tokens_are_invalid_even_when_genuine() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let payload = serde_json::to_vec(&wire_json(&claims())).unwrap();
        let header_with_spaces = |spaces: usize| {
            format!(r#"{{"alg":"EdDSA",{}"kid":"{}","typ":"JWT"}}"#, " ".repeat(spaces), signer.kid()).into_bytes()
        };
        // JSON whitespace keeps the header valid, so only size differs between these two genuine tokens.
        let small = signed_raw(&signer, &header_with_spaces(10), &payload);
        assert!(verifier.verify(&small, NOW).is_ok());
        let big = signed_raw(&signer, &header_with_spaces(2000), &payload);
        assert!(big.len() > MAX_TOKEN_BYTES);
        assert_eq!(verifier.verify(&big, NOW), Err(LinkError::Invalid));
        assert_eq!(verifier.verify(&"A".repeat(1_000_000), NOW), Err(LinkError::Invalid));
    }

    #[test]
    fn truncated_or_corrupted_signatures_are_invalid() {
        let signer = new_signer();
        let verifier = verifier_for(&signer);
        let token = signer.sign(&claims()).unwrap();
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let short = format!("{rest}.{}", &sig[..sig.len() - 4]);
        let long = format!("{rest}.{}", b64(&[URL_SAFE_NO_PAD.decode(sig).unwrap(), vec![0]].concat()));
        let zeros = format!("{rest}.{}", b64(&[0u8; 64]));
        for bad in [short, long, zeros] {
            assert_eq!(verifier.verify(&bad, NOW), Err(LinkError::Invalid));
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(LinkError::Invalid.code(), "link_invalid");
        assert_eq!(LinkError::NotYetValid { opens_at: 5 }.code(), "window_not_open");
        assert_eq!(LinkError::Expired.code(), "link_expired");
        assert_eq!(LinkError::Invalid.to_string(), "the join link is not valid");
    }

    #[test]
    fn bad_pkcs8_is_rejected() {
        assert!(matches!(LinkSigner::from_pkcs8(b"not a key"), Err(LinkError::KeyRejected(_))));
        assert!(matches!(LinkSigner::from_pkcs8(&[]), Err(LinkError::KeyRejected(_))));
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        use aws_lc_rs::encoding::AsBigEndian;
        let pkcs8 = generate_pkcs8().unwrap();
        let signer = LinkSigner::from_pkcs8(&pkcs8).unwrap();
        let shown = format!("{signer:?}");
        assert!(shown.contains(signer.kid()));
        let seed = signer.key.seed().unwrap();
        let seed_hex: String = seed.as_be_bytes().unwrap().as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.to_lowercase().contains(&seed_hex));
    }

    /// RFC 8037 Appendix A.1 (the key), A.4 (signing) and A.5 (validation).
    /// https://www.rfc-editor.org/rfc/rfc8037#appendix-A.4
    /// The RFC's header is `{"alg":"EdDSA"}` with no kid, so it goes through `sign_compact`, which builds the
    /// JWS Signing Input exactly as the RFC does, rather than through `LinkSigner::sign`.
    #[test]
    fn rfc8037_appendix_a4_ed25519_signing() {
        let d = URL_SAFE_NO_PAD.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
        let jws = sign_compact(&key, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing").unwrap();
        assert_eq!(
            jws,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
             hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        // A.5: the same JWS validates against the public key alone.
        let (input, sig) = jws.rsplit_once('.').unwrap();
        assert!(verify_bytes(&x, input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap()));
        // ...but our verifier still refuses it: it has no kid, no typ and the wrong payload shape.
        let mut verifier = LinkVerifier::new();
        verifier.add(x.as_slice().try_into().unwrap());
        assert_eq!(verifier.verify(&jws, NOW), Err(LinkError::Invalid));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn arbitrary_input_never_panics_and_is_invalid(input in "\\PC{0,300}") {
                let signer = new_signer();
                prop_assert_eq!(verifier_for(&signer).verify(&input, NOW), Err(LinkError::Invalid));
            }

            #[test]
            fn any_single_character_change_is_invalid(index in 0usize..400, replacement in "[A-Za-z0-9_.-]") {
                let signer = new_signer();
                let token = signer.sign(&claims()).unwrap();
                let index = index % token.len();
                let original = &token[index..index + 1];
                prop_assume!(original != replacement);
                let tampered = format!("{}{}{}", &token[..index], replacement, &token[index + 1..]);
                prop_assert_eq!(verifier_for(&signer).verify(&tampered, NOW), Err(LinkError::Invalid));
            }
        }
    }
}
