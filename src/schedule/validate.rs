//! Checks on what schedulers type: names, e-mail addresses, pseudonyms, time zones and times.
//! Each failure names the field and says what would be accepted.

use jiff::{SignedDuration, Timestamp};

/// An input that cannot be accepted, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { field, message: message.into() }
}

/// The longest a consultation may be booked for.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(4);

/// How far ahead a consultation may be booked: two years, beyond any outpatient waiting list,
/// and far enough inside the calendar's end that no window arithmetic can leave it.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_hours(2 * 366 * 24);

/// A display name or label: 1 to `max` characters, no control characters, trimmed.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

pub fn email(field: &'static str, value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let ok = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, "must be an e-mail address such as name@hospital.nhs.uk"))
    }
}

/// The patient's pseudonymous identifier. It must not be a name (no spaces) or a prison
/// number (the letter-four-digits-two-letters pattern, such as A1234BC).
pub fn pseudonym(value: &str) -> Result<String, Invalid> {
    let field = "patient_pseudonym";
    let value = value.trim();
    let shape = (3..=40).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !shape {
        return Err(invalid(field, "must be 3 to 40 letters, digits or hyphens: a pseudonym, never a name"));
    }
    let b = value.as_bytes();
    let prison_number = b.len() == 7
        && b[0].is_ascii_alphabetic()
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5..].iter().all(u8::is_ascii_alphabetic);
    if prison_number {
        return Err(invalid(field, "looks like a prison number; use the pseudonym instead"));
    }
    Ok(value.to_owned())
}

/// An IANA time zone name such as Europe/London.
pub fn timezone(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    match jiff::tz::TimeZone::get(value) {
        Ok(_) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(invalid("timezone", "must be an IANA time zone name such as Europe/London")),
    }
}

/// Bookings are kept to the second: what is stored is what is shown and enforced.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A booking's times: end after start, at most four hours, not wholly in the past and at most
/// two years ahead.
pub fn times(start: Timestamp, end: Timestamp, now: Timestamp) -> Result<(), Invalid> {
    if end <= start {
        return Err(invalid("end", "must be after start"));
    }
    if start.duration_since(now) > MAX_AHEAD {
        return Err(invalid("start", "a consultation can be booked at most two years ahead"));
    }
    if end.duration_since(start) > MAX_DURATION {
        return Err(invalid("end", "a consultation can be booked for at most 4 hours"));
    }
    if end <= now {
        return Err(invalid("end", "is in the past"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_refuse_names_and_prison_numbers() {
        assert!(pseudonym("PT-7F3K2").is_ok());
        assert!(pseudonym("John Smith").is_err());
        assert!(pseudonym("A1234BC").is_err());
        assert!(pseudonym("ab").is_err());
    }

    #[test]
    fn times_and_zones() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let now = t("2026-11-24T09:00:00Z");
        assert!(times(t("2026-11-24T10:00:00Z"), t("2026-11-24T10:30:00Z"), now).is_ok());
        assert_eq!(times(t("2026-11-24T10:00:00Z"), t("2026-11-24T10:00:00Z"), now).unwrap_err().field, "end");
        assert!(times(t("2026-11-24T10:00:00Z"), t("2026-11-24T14:00:01Z"), now).is_err());
        assert!(times(t("2026-11-24T07:00:00Z"), t("2026-11-24T08:00:00Z"), now).is_err());
        assert!(times(t("2028-11-23T10:00:00Z"), t("2028-11-23T11:00:00Z"), now).is_ok());
        let far = times(t("9999-12-30T21:00:00Z"), t("9999-12-30T21:59:59Z"), now).unwrap_err();
        assert_eq!(far.field, "start");
        assert!(timezone("Europe/London").is_ok());
        assert!(timezone("Mars/Olympus").is_err());
        assert!(email("email", "a@b.nhs.uk").is_ok());
        assert!(email("email", "not an email").is_err());
        assert!(text("name", "  ", 10).is_err());
        assert!(text("name", "a\u{7}b", 10).is_err());
    }
}
