//! GitHub webhooks: signatures, push and ping payloads in GitHub's documented shapes,
//! push decisions, and the specific error of each bad input.
#![allow(clippy::unwrap_used)]

use ferry_hooks::{
    CommitInfo, GithubEvent, HookError, IgnoreReason, Push, PushDecision, parse_github,
    verify_signature,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &[u8] = b"whsec-ferry-4c1f9e2a7b";

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push(fixture: &[u8]) -> Push {
    match parse_github("push", fixture) {
        Ok(GithubEvent::Push(push)) => push,
        other => panic!("expected a push, got {other:?}"),
    }
}

const MAIN: &[u8] = include_bytes!("fixtures/github_push_main.json");
const FEATURE: &[u8] = include_bytes!("fixtures/github_push_forced_feature.json");
const TAG: &[u8] = include_bytes!("fixtures/github_push_tag.json");
const DELETE_BRANCH: &[u8] = include_bytes!("fixtures/github_push_delete_branch.json");
const DELETE_TAG: &[u8] = include_bytes!("fixtures/github_push_delete_tag.json");
const PING: &[u8] = include_bytes!("fixtures/github_ping.json");

// --- signatures --------------------------------------------------------------------

#[test]
fn githubs_documented_test_vector_verifies() {
    let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(
        verify_signature(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(header)
        ),
        Ok(())
    );
}

#[test]
fn a_signed_fixture_verifies_and_uppercase_hex_too() {
    let header = sign(SECRET, MAIN);
    assert_eq!(verify_signature(SECRET, MAIN, Some(&header)), Ok(()));
    let upper = format!("sha256={}", header["sha256=".len()..].to_uppercase());
    assert_eq!(verify_signature(SECRET, MAIN, Some(&upper)), Ok(()));
    // Surrounding whitespace a proxy may leave is tolerated.
    assert_eq!(
        verify_signature(SECRET, MAIN, Some(&format!(" {header}\t"))),
        Ok(())
    );
}

#[test]
fn a_changed_body_or_another_secret_is_a_mismatch() {
    let header = sign(SECRET, MAIN);
    let mut body = MAIN.to_vec();
    body[10] ^= 1;
    assert_eq!(
        verify_signature(SECRET, &body, Some(&header)),
        Err(HookError::SignatureMismatch)
    );
    assert_eq!(
        verify_signature(b"another secret", MAIN, Some(&header)),
        Err(HookError::SignatureMismatch)
    );
}

#[test]
fn missing_header_is_its_own_error() {
    let err = verify_signature(SECRET, MAIN, None).unwrap_err();
    assert_eq!(err, HookError::MissingSignature);
    assert!(err.is_authentication());
    assert!(err.to_string().contains("X-Hub-Signature-256"));
}

#[test]
fn wrong_prefix_is_its_own_error() {
    // The legacy SHA-1 header's value, sent in the SHA-256 header.
    let err = verify_signature(
        SECRET,
        MAIN,
        Some("sha1=d03207e4b030cf234e3447bac4d93add4c6643d8"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        HookError::SignaturePrefix {
            found: "sha1=d03207e4b03…".into()
        }
    );
    assert!(
        err.to_string().contains("must start with `sha256=`"),
        "{err}"
    );
    assert!(matches!(
        verify_signature(SECRET, MAIN, Some("")),
        Err(HookError::SignaturePrefix { .. })
    ));
    assert!(matches!(
        verify_signature(SECRET, MAIN, Some("SHA256=00")),
        Err(HookError::SignaturePrefix { .. })
    ));
}

#[test]
fn bad_hex_is_its_own_error() {
    let mut digits = sign(SECRET, MAIN)["sha256=".len()..].to_string();
    digits.replace_range(6..7, "g");
    let err = verify_signature(SECRET, MAIN, Some(&format!("sha256={digits}"))).unwrap_err();
    assert_eq!(
        err,
        HookError::SignatureNotHex {
            position: 7,
            character: "g".into()
        }
    );
    assert!(err.is_authentication());
}

#[test]
fn wrong_length_is_its_own_error() {
    let header = sign(SECRET, MAIN);
    for cut in [header.len() - 1, header.len() - 2, "sha256=".len()] {
        let err = verify_signature(SECRET, MAIN, Some(&header[..cut])).unwrap_err();
        assert_eq!(
            err,
            HookError::SignatureLength {
                found: cut - "sha256=".len()
            }
        );
    }
    let longer = format!("{header}00");
    assert_eq!(
        verify_signature(SECRET, MAIN, Some(&longer)),
        Err(HookError::SignatureLength { found: 66 })
    );
}

#[test]
fn an_empty_secret_is_refused() {
    let header = sign(b"", MAIN);
    let err = verify_signature(b"", MAIN, Some(&header)).unwrap_err();
    assert_eq!(err, HookError::EmptySecret);
    assert!(!err.is_authentication());
}

#[test]
fn no_signature_error_message_contains_the_secret_or_the_expected_signature() {
    let secret = b"s3cr3t-do-not-log";
    let good = sign(secret, MAIN);
    let good_digits = &good["sha256=".len()..];
    let headers = [
        None,
        Some("sha1=abc".to_string()),
        Some("sha256=zz".to_string()),
        Some("sha256=abcd".to_string()),
        Some(format!("sha256={}", "0".repeat(64))),
    ];
    for header in headers {
        let err = verify_signature(secret, MAIN, header.as_deref()).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains(good_digits), "{text}");
    }
}

// --- push --------------------------------------------------------------------------

#[test]
fn push_to_main_reads_every_field() {
    let push = push(MAIN);
    assert_eq!(
        push,
        Push {
            git_ref: "refs/heads/main".into(),
            before: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4".into(),
            after: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b".into(),
            branch: Some("main".into()),
            tag: None,
            deleted: false,
            created: false,
            forced: false,
            head_commit: Some(CommitInfo {
                id: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b".into(),
                message: "Merge pull request #212 from acme/fix-cart-prices\n\n\
                          cart: keep quantities when a price changes"
                    .into(),
                author_name: "María García".into(),
                author_email: "maria.garcia@acme.example".into(),
                url: "https://github.com/acme/shop-api/commit/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
                    .into(),
            }),
            repository_full_name: "acme/shop-api".into(),
            pusher: "mgarcia".into(),
            compare_url: "https://github.com/acme/shop-api/compare/e3b0c44298fc...9f86d081884c"
                .into(),
        }
    );
    assert_eq!(
        push.decision("main"),
        PushDecision::Run {
            sha: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b".into()
        }
    );
    assert_eq!(push.decision("refs/heads/main"), push.decision("main"));
}

#[test]
fn push_to_another_branch_is_ignored() {
    let push = push(FEATURE);
    assert!(push.forced);
    assert_eq!(push.branch.as_deref(), Some("fix-cart-prices"));
    let decision = push.decision("main");
    assert_eq!(
        decision,
        PushDecision::Ignore(IgnoreReason::OtherBranch {
            pushed: "fix-cart-prices".into(),
            watched: "main".into()
        })
    );
    // A forced push to the watched branch still runs.
    assert_eq!(
        push.decision("fix-cart-prices"),
        PushDecision::Run {
            sha: "2c26b46b68ffc68ff99b453c1d30413413422d70".into()
        }
    );
}

#[test]
fn tag_push_is_ignored() {
    let push = push(TAG);
    assert_eq!(push.tag.as_deref(), Some("v1.4.0"));
    assert_eq!(push.branch, None);
    assert!(push.created);
    assert_eq!(
        push.decision("main"),
        PushDecision::Ignore(IgnoreReason::Tag {
            tag: "v1.4.0".into()
        })
    );
    let PushDecision::Ignore(reason) = push.decision("main") else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "tag push `v1.4.0`: ferry runs pushes to its branch only"
    );
}

#[test]
fn branch_deletion_is_ignored() {
    let push = push(DELETE_BRANCH);
    assert!(push.deleted);
    assert_eq!(push.head_commit, None);
    assert_eq!(
        push.decision("release/2.x"),
        PushDecision::Ignore(IgnoreReason::BranchDeleted {
            branch: "release/2.x".into()
        })
    );
    assert!(matches!(
        push.decision("main"),
        PushDecision::Ignore(IgnoreReason::OtherBranch { .. })
    ));
}

#[test]
fn all_zeros_after_is_a_deletion_even_without_the_flag() {
    let mut push = push(DELETE_BRANCH);
    push.deleted = false;
    assert!(matches!(
        push.decision("release/2.x"),
        PushDecision::Ignore(IgnoreReason::BranchDeleted { .. })
    ));
}

#[test]
fn githubs_documented_tag_deletion_is_ignored() {
    let push = push(DELETE_TAG);
    assert_eq!(push.repository_full_name, "Codertocat/Hello-World");
    assert_eq!(push.pusher, "Codertocat");
    assert_eq!(push.tag.as_deref(), Some("simple-tag"));
    assert_eq!(
        push.decision("master"),
        PushDecision::Ignore(IgnoreReason::Tag {
            tag: "simple-tag".into()
        })
    );
}

#[test]
fn other_refs_are_not_branches() {
    let body = String::from_utf8(MAIN.to_vec()).expect("utf-8").replacen(
        "refs/heads/main",
        "refs/notes/commits",
        1,
    );
    let push = push(body.as_bytes());
    assert_eq!((push.branch.clone(), push.tag.clone()), (None, None));
    assert_eq!(
        push.decision("main"),
        PushDecision::Ignore(IgnoreReason::NotABranch {
            git_ref: "refs/notes/commits".into()
        })
    );
}

#[test]
fn sha256_repositories_have_64_digit_ids() {
    let long = "a".repeat(64);
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"{}","after":"{long}","created":true,
            "deleted":false,"forced":false,"compare":"https://github.com/o/r/compare/x",
            "head_commit":null,"repository":{{"full_name":"o/r"}},"pusher":{{"name":"p"}}}}"#,
        "0".repeat(64)
    );
    assert_eq!(
        push(body.as_bytes()).decision("main"),
        PushDecision::Run { sha: long }
    );
}

// --- ping and other events ---------------------------------------------------------

#[test]
fn ping_is_read() {
    assert_eq!(
        parse_github("ping", PING),
        Ok(GithubEvent::Ping {
            zen: "Non-blocking is better than blocking.".into(),
            hook_id: 481_239_117
        })
    );
}

#[test]
fn other_events_are_named_and_their_body_is_not_read() {
    assert_eq!(
        parse_github("pull_request", b"not even json"),
        Ok(GithubEvent::Other("pull_request".into()))
    );
    assert_eq!(parse_github("", MAIN), Err(HookError::MissingEvent));
    assert_eq!(parse_github("  ", MAIN), Err(HookError::MissingEvent));
}

// --- bad payloads ------------------------------------------------------------------

fn without(body: &[u8], pointer_parent: &str, key: &str) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("fixture is JSON");
    let parent = if pointer_parent.is_empty() {
        &mut value
    } else {
        value.pointer_mut(pointer_parent).expect("parent exists")
    };
    parent
        .as_object_mut()
        .expect("object")
        .remove(key)
        .expect("key exists");
    serde_json::to_vec(&value).expect("serializes")
}

fn with(body: &[u8], pointer: &str, new: serde_json::Value) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("fixture is JSON");
    *value.pointer_mut(pointer).expect("field exists") = new;
    serde_json::to_vec(&value).expect("serializes")
}

#[test]
fn truncated_push_is_truncated_json() {
    let err = parse_github("push", &MAIN[..MAIN.len() / 2]).unwrap_err();
    assert!(
        matches!(
            err,
            HookError::TruncatedJson {
                what: "GitHub push payload",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(matches!(
        parse_github("push", b""),
        Err(HookError::TruncatedJson { .. })
    ));
}

#[test]
fn garbage_is_invalid_json_with_a_position() {
    let err = parse_github("push", b"{\"ref\": refs/heads/main}").unwrap_err();
    assert_eq!(
        err,
        HookError::InvalidJson {
            what: "GitHub push payload",
            detail: "expected value".into(),
            line: 1,
            column: 9
        }
    );
    assert_eq!(
        err.to_string(),
        "the GitHub push payload is not valid JSON: expected value (line 1, column 9)"
    );
    // Form-encoded deliveries (content type application/x-www-form-urlencoded).
    assert!(matches!(
        parse_github(
            "push",
            b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"
        ),
        Err(HookError::InvalidJson { .. })
    ));
}

#[test]
fn a_non_object_push_says_what_it_is() {
    assert_eq!(
        parse_github("push", b"[1, 2]"),
        Err(HookError::NotAnObject {
            what: "GitHub push payload",
            found: "an array"
        })
    );
}

#[test]
fn missing_fields_are_named_with_their_path() {
    let cases = [
        ("", "ref", "ref"),
        ("", "after", "after"),
        ("", "repository", "repository"),
        ("/repository", "full_name", "repository.full_name"),
        ("", "pusher", "pusher"),
        ("/pusher", "name", "pusher.name"),
        ("", "compare", "compare"),
        ("/head_commit", "author", "head_commit.author"),
        ("/head_commit/author", "email", "head_commit.author.email"),
    ];
    for (parent, key, path) in cases {
        let err = parse_github("push", &without(MAIN, parent, key)).unwrap_err();
        match &err {
            HookError::MissingField { what, field, .. } => {
                assert_eq!((*what, field.as_str()), ("GitHub push payload", path));
            }
            other => panic!("{path}: expected MissingField, got {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("has no `{path}`")),
            "{err}"
        );
    }
    let err = parse_github("ping", &without(PING, "", "hook_id")).unwrap_err();
    assert!(
        matches!(&err, HookError::MissingField { field, .. } if field == "hook_id"),
        "{err:?}"
    );
}

#[test]
fn wrong_types_are_named_with_what_was_found() {
    let err = parse_github("push", &with(MAIN, "/ref", serde_json::json!(42))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the GitHub push payload's `ref` is a number, expected a string: the full ref pushed, \
         such as `refs/heads/main`"
    );
    let err = parse_github("push", &with(MAIN, "/forced", serde_json::json!("yes"))).unwrap_err();
    assert!(
        matches!(&err, HookError::WrongType { field, found: "a string", expected: "a boolean", .. } if field == "forced"),
        "{err:?}"
    );
    let err = parse_github("push", &with(MAIN, "/head_commit", serde_json::json!([]))).unwrap_err();
    assert!(
        matches!(&err, HookError::WrongType { field, found: "an array", .. } if field == "head_commit"),
        "{err:?}"
    );
    let err = parse_github(
        "ping",
        &with(PING, "/hook_id", serde_json::json!("481239117")),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HookError::WrongType { field, .. } if field == "hook_id"),
        "{err:?}"
    );
    let err = parse_github("ping", &with(PING, "/hook_id", serde_json::json!(-1))).unwrap_err();
    assert!(
        matches!(&err, HookError::InvalidValue { field, .. } if field == "hook_id"),
        "{err:?}"
    );
}

#[test]
fn a_malformed_sha_is_an_invalid_value() {
    let err = parse_github("push", &with(MAIN, "/after", serde_json::json!("HEAD"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the GitHub push payload's `after` is \"HEAD\", expected a commit SHA: 40 (or, in \
         SHA-256 repositories, 64) lowercase hex digits"
    );
    let err = parse_github(
        "push",
        &with(
            MAIN,
            "/head_commit/id",
            serde_json::json!("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B"),
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HookError::InvalidValue { field, .. } if field == "head_commit.id"),
        "{err:?}"
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let huge = "x".repeat(10_000);
    let err = parse_github("push", &with(MAIN, "/before", serde_json::json!(huge))).unwrap_err();
    let text = err.to_string();
    assert!(text.len() < 300, "{text}");
    assert!(text.contains('…'));
}
