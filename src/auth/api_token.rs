//! Bearer tokens for the audit API, issued from the CLI to the security desk. The token is shown
//! once; only its SHA-256 is stored, so a copy of the database grants nothing.

use super::digest;
use crate::store::{Store, StoreError};

/// Marks the string as a Gatehouse audit token, so secret scanners and people can recognise it.
const PREFIX: &str = "gha_";

/// A newly issued token: `secret` goes to its holder and nowhere else.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the system random generator failed")]
    Random,
    #[error("the label must be 1 to 64 letters, digits, spaces or ._- characters")]
    BadLabel,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn issue(store: &dyn Store, label: &str) -> Result<IssuedToken, TokenError> {
    let label_ok = !label.trim().is_empty()
        && label.len() <= 64
        && label.chars().all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
    if !label_ok {
        return Err(TokenError::BadLabel);
    }
    let secret = super::new_secret(PREFIX).map_err(|_| TokenError::Random)?;
    let id = uuid::Uuid::now_v7().to_string();
    let created =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    store.add_api_token(&id, &digest(&secret), label, &created)?;
    Ok(IssuedToken { id, secret })
}

/// The id of the token `secret`, if it is one we issued.
pub fn authenticate(store: &dyn Store, secret: &str) -> Result<Option<String>, StoreError> {
    if !secret.starts_with(PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    store.api_token_by_hash(&digest(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn issued_tokens_authenticate_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let token = issue(&store, "security desk").unwrap();
        assert_eq!(authenticate(&store, &token.secret).unwrap(), Some(token.id));
        assert_eq!(authenticate(&store, "gha_forged").unwrap(), None);
        assert_eq!(authenticate(&store, "").unwrap(), None);
        assert!(matches!(issue(&store, "<script>"), Err(TokenError::BadLabel)));
    }
}
