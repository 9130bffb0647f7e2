//! SNS signatures: messages signed here with a test RSA key (fixtures made once with
//! `openssl req -x509 -newkey rsa:2048`), verified with its certificate for both
//! signature versions and both message kinds; any change to a signed field, another
//! certificate, a broken signature or certificate fails; only AWS's SNS certificate
//! URLs (and configured extra prefixes) are trusted.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use ferry_hooks::{
    SnsVerifyError, certificate_der, parse_sns, sns_string_to_sign, trusted_certificate_url,
    verify_sns_signature,
};
use proptest::prelude::*;
use serde_json::Value;

const CERT: &[u8] = include_bytes!("fixtures/sns_test_cert.pem");
const OTHER_CERT: &[u8] = include_bytes!("fixtures/sns_other_cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/sns_test_key.pk8");
const HELLO: &[u8] = include_bytes!("fixtures/sns_notification_hello.json");
const CONFIRMATION: &[u8] = include_bytes!("fixtures/sns_subscription_confirmation.json");
const SNS_EVENTBRIDGE: &[u8] = include_bytes!("fixtures/sns_eventbridge_alarm.json");

/// SHA1withRSA signatures of [`HELLO`], [`CONFIRMATION`] and [`SNS_EVENTBRIDGE`] as
/// version 1 messages, made with `openssl dgst -sha1 -sign` and the test key (ring
/// verifies SHA-1 signatures but does not make them).
const V1_SIGNATURES: &str = include_str!("fixtures/sns_v1_signatures.txt");

/// `body` with `SignatureVersion` set and `Signature` made with the test key.
fn signed(body: &[u8], version: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["SignatureVersion"] = version.into();
    if version == "1" {
        let i = [HELLO, CONFIRMATION, SNS_EVENTBRIDGE]
            .iter()
            .position(|b| *b == body)
            .expect("a version 1 signature is made for this fixture");
        v["Signature"] = V1_SIGNATURES.lines().nth(i).unwrap().into();
        return serde_json::to_vec(&v).unwrap();
    }
    let msg = parse_sns(&serde_json::to_vec(&v).unwrap()).unwrap();
    let text = sns_string_to_sign(&msg).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(KEY).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .unwrap();
    v["Signature"] = base64::engine::general_purpose::STANDARD.encode(sig).into();
    serde_json::to_vec(&v).unwrap()
}

fn verify(body: &[u8], cert: &[u8]) -> Result<(), SnsVerifyError> {
    let msg = parse_sns(body).unwrap();
    verify_sns_signature(&msg, &certificate_der(cert).unwrap())
}

#[test]
fn both_versions_and_both_kinds_verify() {
    for body in [HELLO, CONFIRMATION, SNS_EVENTBRIDGE] {
        for version in ["1", "2"] {
            let b = signed(body, version);
            assert_eq!(verify(&b, CERT), Ok(()), "version {version}");
        }
    }
}

#[test]
fn another_certificate_does_not_verify() {
    let b = signed(HELLO, "2");
    assert_eq!(
        verify(&b, OTHER_CERT),
        Err(SnsVerifyError::Mismatch("2".into()))
    );
}

#[test]
fn a_signature_made_for_the_other_version_does_not_verify() {
    let mut v: Value = serde_json::from_slice(&signed(HELLO, "1")).unwrap();
    v["SignatureVersion"] = "2".into();
    let b = serde_json::to_vec(&v).unwrap();
    assert_eq!(verify(&b, CERT), Err(SnsVerifyError::Mismatch("2".into())));
}

#[test]
fn broken_signatures_and_certificates() {
    let mut v: Value = serde_json::from_slice(&signed(HELLO, "2")).unwrap();
    v["Signature"] = "not base64!".into();
    assert_eq!(
        verify(&serde_json::to_vec(&v).unwrap(), CERT),
        Err(SnsVerifyError::SignatureNotBase64)
    );
    assert_eq!(certificate_der(b"hello"), Err(SnsVerifyError::NotPem));
    assert_eq!(
        certificate_der(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
        Err(SnsVerifyError::NotPem)
    );
    let msg = parse_sns(&signed(HELLO, "2")).unwrap();
    let not_a_cert = base64::engine::general_purpose::STANDARD
        .decode("MAMCAQE=")
        .unwrap();
    assert!(matches!(
        verify_sns_signature(&msg, &not_a_cert),
        Err(SnsVerifyError::BadCertificate(_))
    ));
}

#[test]
fn certificate_urls() {
    let ok = [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
    ];
    for u in ok {
        assert_eq!(trusted_certificate_url(u, &[]), Ok(()), "{u}");
    }
    let bad = [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/other.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns..amazonaws.com/SimpleNotificationService-abc.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-abc.pem",
    ];
    for u in bad {
        assert!(
            matches!(
                trusted_certificate_url(u, &[]),
                Err(SnsVerifyError::UntrustedCertificateUrl(_))
            ),
            "{u}"
        );
    }
    let extra = vec!["http://127.0.0.1:4566/_aws/sns/".to_string()];
    assert_eq!(
        trusted_certificate_url(
            "http://127.0.0.1:4566/_aws/sns/SimpleNotificationService-x.pem",
            &extra
        ),
        Ok(())
    );
    assert!(trusted_certificate_url("http://127.0.0.1:4566/_aws/sns/../x.pem", &extra).is_err());
    assert!(trusted_certificate_url("http://127.0.0.1:4567/x.pem", &extra).is_err());
}

#[test]
fn subscribe_urls() {
    use ferry_hooks::trusted_subscribe_url;
    assert!(trusted_subscribe_url(
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37",
        &[]
    ));
    assert!(!trusted_subscribe_url(
        "https://sns.us-west-2.amazonaws.com/?Action=Publish",
        &[]
    ));
    assert!(!trusted_subscribe_url(
        "https://evil.example/?Action=ConfirmSubscription",
        &[]
    ));
    assert!(!trusted_subscribe_url(
        "http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
        &[]
    ));
    assert!(trusted_subscribe_url(
        "http://127.0.0.1:9/sns/?Action=ConfirmSubscription",
        &["http://127.0.0.1:9/sns/".to_string()]
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any change to the message text or the topic breaks the signature.
    #[test]
    fn any_change_to_a_signed_field_is_caught(
        text in "[ -~]{0,60}",
        topic_suffix in "[a-z]{1,8}",
        which in 0usize..2,
    ) {
        let good = signed(HELLO, "2");
        let mut v: Value = serde_json::from_slice(&good).unwrap();
        if which == 0 {
            prop_assume!(text != "Hello world!");
            v["Message"] = text.into();
        } else {
            v["TopicArn"] = format!("arn:aws:sns:us-west-2:123456789012:{topic_suffix}").into();
        }
        let b = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(verify(&b, CERT), Err(SnsVerifyError::Mismatch("2".into())));
    }
}

#[test]
fn a_changed_version_1_message_does_not_verify() {
    let mut v: Value = serde_json::from_slice(&signed(HELLO, "1")).unwrap();
    v["Message"] = "Goodbye world!".into();
    assert_eq!(
        verify(&serde_json::to_vec(&v).unwrap(), CERT),
        Err(SnsVerifyError::Mismatch("1".into()))
    );
}
