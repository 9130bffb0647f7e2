//! Properties of secret redaction (DESIGN invariant 8): no secret survives, text without
//! secrets is unchanged, and a stream cut anywhere gives what redacting the whole gives.

use ferry_core::redact::{MASK, Redactor};
use proptest::prelude::*;

/// Secrets: 4 to 12 characters from a small alphabet, so they overlap and share prefixes
/// with each other and with the surrounding text.
fn secret() -> impl Strategy<Value = String> {
    "[abcXY0]{4,12}"
}

/// Text built from pieces of secrets and ordinary text (never `*`, which is the mask).
fn text(secrets: Vec<String>) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[abcXY0 \n]{0,8}".boxed(),
        proptest::sample::select(secrets.clone()).boxed(),
        proptest::sample::select(secrets)
            .prop_flat_map(|s| {
                let n = s.len();
                (Just(s), 0..n)
            })
            .prop_map(|(s, k)| s[..k].to_string())
            .boxed(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn case() -> impl Strategy<Value = (Vec<String>, String, Vec<usize>)> {
    proptest::collection::vec(secret(), 1..4).prop_flat_map(|secrets| {
        let t = text(secrets.clone());
        (
            Just(secrets),
            t,
            proptest::collection::vec(0usize..64, 0..8),
        )
    })
}

fn streamed(r: &Redactor, text: &str, cuts: &[usize]) -> String {
    let bytes = text.as_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        out.extend(s.push(&bytes[from..p]));
        from = p;
    }
    out.extend(s.push(&bytes[from..]));
    out.extend(s.finish());
    String::from_utf8(out).expect("utf-8")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_secret_survives((secrets, text, cuts) in case()) {
        let r = Redactor::new(&secrets);
        let whole = r.redact(&text);
        for s in &secrets {
            prop_assert!(!whole.contains(s.as_str()), "{s:?} survived in {whole:?}");
        }
        let stream = streamed(&r, &text, &cuts);
        for s in &secrets {
            prop_assert!(!stream.contains(s.as_str()), "{s:?} survived the stream: {stream:?}");
        }
    }

    #[test]
    fn a_stream_cut_anywhere_equals_the_whole((secrets, text, cuts) in case()) {
        let r = Redactor::new(&secrets);
        prop_assert_eq!(streamed(&r, &text, &cuts), r.redact(&text));
    }

    #[test]
    fn text_without_secrets_is_unchanged(
        secrets in proptest::collection::vec("[abc]{4,10}", 1..4),
        text in "[XYZ0-9 \\n.:=-]{0,80}",
        cuts in proptest::collection::vec(0usize..100, 0..6),
    ) {
        let r = Redactor::new(&secrets);
        prop_assert_eq!(r.redact(&text), text.clone());
        prop_assert_eq!(streamed(&r, &text, &cuts), text);
    }

    #[test]
    fn only_secrets_are_replaced((secrets, text, _cuts) in case()) {
        // Taking the masks out leaves the text with the secrets taken out, in order:
        // every byte outside a secret occurrence is kept.
        let r = Redactor::new(&secrets);
        let out = r.redact(&text);
        let kept: usize = out.split(MASK).map(str::len).sum();
        prop_assert!(kept <= text.len());
        let masks = out.matches(MASK).count();
        let longest = secrets.iter().map(String::len).max().unwrap_or(0);
        let shortest = secrets.iter().map(String::len).min().unwrap_or(0);
        prop_assert!(kept + masks * longest >= text.len());
        prop_assert!(kept + masks * shortest <= text.len());
    }
}
