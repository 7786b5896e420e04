//! RFC 8785 JSON Canonicalization Scheme (JCS) for audit records, so that a record hashes the same everywhere.
//!
//! Hand-written rather than a crate dependency: audit records hold no floats,
//! and without them JCS reduces to key sorting plus string escaping, which is
//! short enough to review in full. Numbers other than integers that every JCS
//! implementation prints identically are refused instead of approximated.

use serde_json::{Map, Number, Value};
use thiserror::Error;

/// 2^53 - 1: beyond this, JCS (which treats numbers as IEEE 754 doubles)
/// would round the integer, so other implementations would hash a different value.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CanonicalError {
    #[error("number {0} is not allowed: audit records may only hold integers between -(2^53 - 1) and 2^53 - 1")]
    UnsupportedNumber(String),
}

/// The canonical JSON text of `value`.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    match n.as_i64() {
        Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => {
            out.push_str(&i.to_string());
            Ok(())
        }
        _ => Err(CanonicalError::UnsupportedNumber(n.to_string())),
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            // Everything else, including DEL, U+2028 and non-ASCII, stays literal.
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), CanonicalError> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // JCS orders keys by UTF-16 code units, which differs from UTF-8 byte
    // order (and so from serde_json's BTreeMap) above U+FFFF.
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v)?;
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(json: &str) -> Result<String, CanonicalError> {
        to_canonical_string(&serde_json::from_str(json).unwrap())
    }

    // Input/expected pairs from the RFC 8785 authors' reference test data,
    // github.com/cyberphone/json-canonicalization, testdata/input/*.json and
    // testdata/output/*.json. "weird" is the RFC 8785 §3.2.3 sorting example
    // extended with extra keys.
    #[test]
    fn weird_sorting_example() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\u000a": "Newline",
          "1": "One",
          "\u0080": "Control\u007f",
          "\ud83d\ude02": "Smiley",
          "\u00f6": "Latin Small Letter O With Diaeresis",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "</script>": "Browser Challenge"
        }"#;
        let want = "{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\",\
                    \"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\
                    \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                    \"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input).unwrap(), want);
    }

    #[test]
    fn string_escaping_example() {
        // testdata/values.json (RFC 8785 §3.2.2) without its floating-point "numbers" member.
        let input = r#"{
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let want = r#"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canon(input).unwrap(), want);
    }

    #[test]
    fn french_unicode_and_arrays_examples() {
        let french = r#"{
          "peach": "This sorting order",
          "péché": "is wrong according to French",
          "pêche": "but canonicalization MUST",
          "sin":   "ignore locale"
        }"#;
        assert_eq!(
            canon(french).unwrap(),
            r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ignore locale"}"#
        );
        // No Unicode normalisation: A + combining ring stays two code points.
        assert_eq!(canon(r#"{"Unnormalized Unicode":"A\u030a"}"#).unwrap(), "{\"Unnormalized Unicode\":\"A\u{30a}\"}");
        assert_eq!(canon(r#"[56, {"d": true, "10": null, "1": [ ]}]"#).unwrap(), r#"[56,{"1":[],"10":null,"d":true}]"#);
    }

    #[test]
    fn floats_in_reference_data_are_refused() {
        // values.json and structures.json contain floats (e.g. 4.50, 56.0).
        let values = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}"#;
        assert!(matches!(canon(values), Err(CanonicalError::UnsupportedNumber(_))));
        assert!(canon(r#"{"1": {"\n": 56.0}}"#).is_err());
    }

    #[test]
    fn integer_range() {
        assert_eq!(canon("9007199254740991").unwrap(), "9007199254740991");
        assert_eq!(canon("-9007199254740991").unwrap(), "-9007199254740991");
        assert_eq!(canon("0").unwrap(), "0");
        for bad in ["9007199254740992", "-9007199254740992", "18446744073709551615", "1.5", "-0", "1e2"] {
            assert!(matches!(canon(bad), Err(CanonicalError::UnsupportedNumber(_))), "{bad}");
        }
    }

    #[test]
    fn control_characters_and_specials() {
        let v = Value::String("\u{0}\u{8}\u{9}\u{b}\u{c}\u{1f} \u{7f}\u{2028}/".into());
        assert_eq!(to_canonical_string(&v).unwrap(), "\"\\u0000\\b\\t\\u000b\\f\\u001f \u{7f}\u{2028}/\"");
        assert_eq!(to_canonical_string(&Value::Null).unwrap(), "null");
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // In UTF-8, U+FB33 (EF AC B3) sorts before U+1F602 (F0 9F 98 82);
        // in UTF-16, U+1F602 (D83D DE02) sorts before U+FB33.
        let v = serde_json::json!({"\u{fb33}": 1, "\u{1f602}": 2});
        assert_eq!(to_canonical_string(&v).unwrap(), "{\"\u{1f602}\":2,\"\u{fb33}\":1}");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(|i| Value::Number(i.into())),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_form_parses_back_and_is_stable(v in arb_json()) {
            let s = to_canonical_string(&v).unwrap();
            let back: Value = serde_json::from_str(&s).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(to_canonical_string(&back).unwrap(), s);
        }
    }
}
