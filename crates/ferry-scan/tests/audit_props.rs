//! Properties of reading outside input: no report, however mangled, panics the parser,
//! and every finding it returns names its scanner, its file and a non-empty id.

use ferry_scan::allowlist::validate;
use ferry_scan::{AllowEntry, Date, parse_audit};
use proptest::prelude::*;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/audit/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replaces the `n`-th value (in a depth-first walk) of `doc` with `with`.
fn replace_nth(doc: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *doc = with.clone();
        return true;
    }
    *n -= 1;
    match doc {
        Value::Array(items) => items.iter_mut().any(|x| replace_nth(x, n, with)),
        Value::Object(map) => map.values_mut().any(|x| replace_nth(x, n, with)),
        _ => false,
    }
}

fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("CVSS:3.1/AV:X")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1, "x", null])),
    ]
}

proptest! {
    #[test]
    fn mangled_reports_never_panic(
        which in 0..5usize,
        n in 0..400usize,
        with in odd_value(),
    ) {
        let name = ["npm7.json", "npm6.json", "cargo.json", "cargo-clean.json", "pip.json"][which];
        let mut doc = fixture(name);
        let mut k = n;
        replace_nth(&mut doc, &mut k, &with);
        let bytes = serde_json::to_vec(&doc).expect("serializes");
        if let Ok(findings) = parse_audit(&bytes, "r.json") {
            for f in findings {
                prop_assert!(["npm-audit", "cargo-audit", "pip-audit"].contains(&f.scanner.as_str()));
                prop_assert_eq!(f.location.file.as_deref(), Some("r.json"));
                prop_assert!(!f.id.is_empty());
                prop_assert!(f.allowed.is_none());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_audit(&bytes, "r.json");
    }

    #[test]
    fn dates_never_panic_and_round_trip(s in "\\PC{0,12}", y in 1u16..=9999, m in 1u8..=12, d in 1u8..=31) {
        let _ = s.parse::<Date>();
        if let Some(date) = Date::new(y, m, d) {
            prop_assert_eq!(date.to_string().parse::<Date>(), Ok(date));
        }
        let e = AllowEntry { id: "X".into(), package: None, reason: "r".into(), expires: Some(s.clone()) };
        prop_assert_eq!(validate(&[e]).is_empty(), s.trim().parse::<Date>().is_ok());
    }
}
