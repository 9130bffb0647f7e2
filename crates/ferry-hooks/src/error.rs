//! [`HookError`]: everything that can be wrong with a delivery, each case saying what is
//! wrong and what was expected.
//!
//! No message ever contains the webhook secret or a computed signature: the signature
//! errors name the header and the expected shape only.

use thiserror::Error;

use crate::sns::SnsType;

/// What is wrong with a webhook delivery or an alarm event.
///
/// `what` fields name the document being read ("GitHub push payload", "CloudWatch alarm
/// event", …) and `field` fields the JSON path inside it (`detail.state.value`,
/// `alerts[2].labels.alertname`), so that a message read in a log is enough to fix the
/// sender.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HookError {
    /// The secret given to [`verify_signature`](crate::verify_signature) is empty, which
    /// anyone could sign with. This is ferry's configuration, not the sender's fault.
    #[error(
        "the webhook secret is empty: refusing to verify signatures against an empty key \
         (set FERRY_WEBHOOK_SECRET, or the secret file, to the secret configured on the GitHub webhook)"
    )]
    EmptySecret,

    /// No `X-Hub-Signature-256` header.
    #[error(
        "no `X-Hub-Signature-256` header: expected `sha256=` and 64 hex digits, which GitHub \
         sends when the webhook has a secret (set the webhook's secret to ferry's)"
    )]
    MissingSignature,

    /// The header does not start with `sha256=`. `found` is at most the first 16
    /// characters of the header value (never anything derived from the secret).
    #[error(
        "`X-Hub-Signature-256` must start with `sha256=` followed by 64 hex digits, \
         but it starts with `{found}`"
    )]
    SignaturePrefix {
        /// The start of the header value, shortened.
        found: String,
    },

    /// After `sha256=`, something other than hex digits.
    #[error(
        "the `X-Hub-Signature-256` value after `sha256=` is not hexadecimal \
         (character {position} is `{character}`): expected 64 hex digits"
    )]
    SignatureNotHex {
        /// 1-based position of the first bad character after `sha256=`.
        position: usize,
        /// The bad character, escaped.
        character: String,
    },

    /// Hex digits, but not 64 of them.
    #[error(
        "the `X-Hub-Signature-256` value has {found} hex digits after `sha256=`, \
         expected 64 (an HMAC-SHA256)"
    )]
    SignatureLength {
        /// How many hex digits there were.
        found: usize,
    },

    /// A well-formed signature that is not the HMAC of this body under ferry's secret.
    #[error(
        "the `X-Hub-Signature-256` signature does not match the body: the webhook's secret \
         is not ferry's, or the body was changed on the way"
    )]
    SignatureMismatch,

    /// `parse_github` was given an empty event name.
    #[error("no `X-GitHub-Event` header: expected the event name, such as `push` or `ping`")]
    MissingEvent,

    /// The body is not JSON (and does not merely end early).
    #[error("the {what} is not valid JSON: {detail} (line {line}, column {column})")]
    InvalidJson {
        /// The document being read.
        what: &'static str,
        /// serde_json's description of the problem.
        detail: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },

    /// The body is the start of a JSON document that ends early.
    #[error(
        "the {what} ends early at line {line}, column {column}: the JSON is truncated \
         (was the body cut short?)"
    )]
    TruncatedJson {
        /// The document being read.
        what: &'static str,
        /// 1-based line where the input ended.
        line: usize,
        /// 1-based column where the input ended.
        column: usize,
    },

    /// The document (or a part of it that must be one) is not a JSON object.
    #[error("the {what} is {found}, expected a JSON object")]
    NotAnObject {
        /// The document being read.
        what: &'static str,
        /// What it is instead ("an array", "a string", …).
        found: &'static str,
    },

    /// A required field is absent (or null).
    #[error("the {what} has no `{field}` (expected {expected})")]
    MissingField {
        /// The document being read.
        what: &'static str,
        /// JSON path of the field.
        field: String,
        /// What the field should hold.
        expected: &'static str,
    },

    /// A field holds a value of the wrong JSON type.
    #[error("the {what}'s `{field}` is {found}, expected {expected}")]
    WrongType {
        /// The document being read.
        what: &'static str,
        /// JSON path of the field.
        field: String,
        /// What it holds ("a number", "an array", …).
        found: &'static str,
        /// What it should hold.
        expected: &'static str,
    },

    /// A field has the right type but a value outside what is allowed.
    #[error("the {what}'s `{field}` is {value}, expected {expected}")]
    InvalidValue {
        /// The document being read.
        what: &'static str,
        /// JSON path of the field.
        field: String,
        /// The value, quoted and shortened.
        value: String,
        /// What was allowed.
        expected: &'static str,
    },

    /// A JSON object that is none of the alarm shapes ferry reads.
    #[error(
        "not a CloudWatch alarm event, an SNS notification or an Alertmanager webhook: \
         no `detail-type`, `Type`, `alerts` or `AlarmName`"
    )]
    UnknownAlarmShape,

    /// An SNS notification whose `Message` is JSON but neither CloudWatch alarm shape.
    #[error(
        "the SNS notification's `Message` is not a CloudWatch alarm: expected an EventBridge \
         event (`detail-type`) or a CloudWatch alarm notification (`AlarmName`)"
    )]
    UnknownSnsMessage,

    /// An EventBridge event of another kind than an alarm state change.
    #[error(
        "the EventBridge event is a `{detail_type}` from `{source_name}`, expected a \
         `CloudWatch Alarm State Change` from `aws.cloudwatch`"
    )]
    NotAnAlarmEvent {
        /// The event's `detail-type`.
        detail_type: String,
        /// The event's `source`.
        source_name: String,
    },

    /// An SNS message that carries no alarm (a subscription or unsubscription
    /// confirmation). The server should confirm (or ignore) it instead.
    #[error(
        "the SNS message is a {found}, which carries no alarm: expected a Notification \
         (confirm the subscription by visiting its SubscribeURL once its signature is verified)"
    )]
    NotAnSnsNotification {
        /// The message's type.
        found: SnsType,
    },

    /// An SNS `Type` this crate does not know.
    #[error(
        "the SNS message's `Type` is {found}, expected `Notification`, \
         `SubscriptionConfirmation` or `UnsubscribeConfirmation`"
    )]
    UnknownSnsType {
        /// The `Type`, quoted and shortened.
        found: String,
    },

    /// An SNS `SignatureVersion` other than 1 or 2.
    #[error(
        "the SNS message's `SignatureVersion` is {found}, expected `1` (SHA1withRSA) \
         or `2` (SHA256withRSA)"
    )]
    UnsupportedSignatureVersion {
        /// The `SignatureVersion`, quoted and shortened.
        found: String,
    },

    /// An Alertmanager payload of another `version` than 4.
    #[error(
        "the Alertmanager webhook's `version` is {found}, expected \"4\" \
         (the only webhook payload version Alertmanager has)"
    )]
    UnsupportedAlertmanagerVersion {
        /// The version, quoted and shortened.
        found: String,
    },
}

impl HookError {
    /// Whether the error is about authenticating the delivery (a missing or wrong
    /// signature): a server answers these with 401, the others with 400 (or, for
    /// [`HookError::EmptySecret`], treats them as its own misconfiguration).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            HookError::MissingSignature
                | HookError::SignaturePrefix { .. }
                | HookError::SignatureNotHex { .. }
                | HookError::SignatureLength { .. }
                | HookError::SignatureMismatch
        )
    }
}

/// Quotes a value taken from the input for an error message: escaped, at most 64
/// characters, `…` when shortened.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 64;
    let mut shown: String = value.chars().take(MAX).collect();
    if value.chars().nth(MAX).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}
