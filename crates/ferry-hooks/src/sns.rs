//! Amazon SNS HTTP(S) deliveries: the message types, the parsed message, and the
//! canonical string AWS signs.
//!
//! # Verifying an SNS message
//!
//! This module builds the *string to sign* ([`sns_string_to_sign`]) for
//! `SignatureVersion` 1 (SHA1withRSA) and 2 (SHA256withRSA); [`crate::sns_verify`]
//! checks the signature with the certificate at `SigningCertURL`, which the server
//! fetches over HTTPS only from an SNS host of AWS, and the server checks that
//! `TopicArn` is a topic it trusts.

use serde::{Deserialize, Serialize};

use crate::error::{HookError, quote};
use crate::json::{self, Obj};

/// The `Type` of an SNS message (also its `x-amz-sns-message-type` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnsType {
    /// Asks the endpoint to confirm a new subscription by visiting `SubscribeURL`.
    SubscriptionConfirmation,
    /// A message published to the topic.
    Notification,
    /// Confirms that the endpoint was unsubscribed.
    UnsubscribeConfirmation,
}

impl SnsType {
    /// The name AWS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SnsType::SubscriptionConfirmation => "SubscriptionConfirmation",
            SnsType::Notification => "Notification",
            SnsType::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }

    /// The type named `name` (exactly as AWS spells it).
    pub fn parse(name: &str) -> Option<SnsType> {
        match name {
            "SubscriptionConfirmation" => Some(SnsType::SubscriptionConfirmation),
            "Notification" => Some(SnsType::Notification),
            "UnsubscribeConfirmation" => Some(SnsType::UnsubscribeConfirmation),
            _ => None,
        }
    }
}

impl std::fmt::Display for SnsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SNS message type of `body`, or `None` when `body` is not a JSON object with a
/// known string `Type`.
pub fn sns_message_type(body: &[u8]) -> Option<SnsType> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    SnsType::parse(value.get("Type")?.as_str()?)
}

/// An SNS message as delivered to an HTTP(S) endpoint, with every field that takes part
/// in its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnsMessage {
    /// `Type`.
    pub kind: SnsType,
    /// `MessageId`.
    pub message_id: String,
    /// `TopicArn`.
    pub topic_arn: String,
    /// `Subject`, present only on notifications published with one.
    pub subject: Option<String>,
    /// `Message`: the published text (for CloudWatch, a JSON document in a string).
    pub message: String,
    /// `Timestamp`, ISO 8601 as given.
    pub timestamp: String,
    /// `SignatureVersion`: `1` or `2`.
    pub signature_version: String,
    /// `Signature`, base64.
    pub signature: String,
    /// `SigningCertURL`.
    pub signing_cert_url: String,
    /// `SubscribeURL` (confirmations).
    pub subscribe_url: Option<String>,
    /// `Token` (confirmations).
    pub token: Option<String>,
    /// `UnsubscribeURL` (notifications).
    pub unsubscribe_url: Option<String>,
}

const SNS: &str = "SNS message";

/// Parses an SNS HTTP(S) delivery. Every field the signature covers must be there:
/// `Type`, `MessageId`, `TopicArn`, `Message`, `Timestamp`, `SignatureVersion`,
/// `Signature`, `SigningCertURL`, and for confirmations `SubscribeURL` and `Token`.
pub fn parse_sns(body: &[u8]) -> Result<SnsMessage, HookError> {
    let value = json::parse(body, SNS)?;
    let root = Obj::root(&value, SNS)?;
    let type_name = root.req_str("Type", TYPE)?;
    let kind = SnsType::parse(type_name).ok_or_else(|| HookError::UnknownSnsType {
        found: quote(type_name),
    })?;
    let text = |key, expected| root.req_str(key, expected).map(str::to_string);
    let optional = |key, expected| root.opt_str(key, expected).map(|v| v.map(str::to_string));
    let confirmation = kind != SnsType::Notification;
    let for_confirmation = |key, expected| {
        if confirmation {
            text(key, expected).map(Some)
        } else {
            optional(key, expected)
        }
    };
    Ok(SnsMessage {
        kind,
        message_id: text("MessageId", "a string: the message's id")?,
        topic_arn: text("TopicArn", "a string: the topic's ARN")?,
        subject: optional("Subject", "a string: the notification's subject")?,
        message: text("Message", "a string: the message")?,
        timestamp: text(
            "Timestamp",
            "a string: the ISO 8601 time the message was sent",
        )?,
        signature_version: text("SignatureVersion", "a string: `1` or `2`")?,
        signature: text("Signature", "a string: the base64 signature")?,
        signing_cert_url: text("SigningCertURL", "a string: the signing certificate's URL")?,
        subscribe_url: for_confirmation(
            "SubscribeURL",
            "a string: the URL that confirms the subscription",
        )?,
        token: for_confirmation("Token", "a string: the confirmation token")?,
        unsubscribe_url: optional("UnsubscribeURL", "a string: the URL that unsubscribes")?,
    })
}

pub(crate) const TYPE: &str =
    "a string: `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`";

/// The canonical string AWS signs for `msg`, for `SignatureVersion` 1 and 2 alike (the
/// versions differ in the hash, SHA-1 or SHA-256, not in the string).
///
/// Each field is its name, a newline, its value and a newline, in AWS's documented
/// order — for a `Notification`: `Message`, `MessageId`, `Subject` (only when the
/// message has one), `Timestamp`, `TopicArn`, `Type`; for a `SubscriptionConfirmation`
/// or `UnsubscribeConfirmation`: `Message`, `MessageId`, `SubscribeURL`, `Timestamp`,
/// `Token`, `TopicArn`, `Type`.
///
/// Errors: [`HookError::UnsupportedSignatureVersion`] for another version, and
/// [`HookError::MissingField`] for a confirmation without `SubscribeURL` or `Token`
/// (only possible for an [`SnsMessage`] built by hand).
pub fn sns_string_to_sign(msg: &SnsMessage) -> Result<String, HookError> {
    if msg.signature_version != "1" && msg.signature_version != "2" {
        return Err(HookError::UnsupportedSignatureVersion {
            found: quote(&msg.signature_version),
        });
    }
    let mut out = String::with_capacity(msg.message.len() + 512);
    let mut field = |name: &str, value: &str| {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    };
    let required = |value: &Option<String>, name: &'static str| {
        value.clone().ok_or(HookError::MissingField {
            what: SNS,
            field: name.to_string(),
            expected: "a string (confirmations are signed over it)",
        })
    };
    match msg.kind {
        SnsType::Notification => {
            field("Message", &msg.message);
            field("MessageId", &msg.message_id);
            if let Some(subject) = &msg.subject {
                field("Subject", subject);
            }
            field("Timestamp", &msg.timestamp);
            field("TopicArn", &msg.topic_arn);
            field("Type", msg.kind.as_str());
        }
        SnsType::SubscriptionConfirmation | SnsType::UnsubscribeConfirmation => {
            let subscribe_url = required(&msg.subscribe_url, "SubscribeURL")?;
            let token = required(&msg.token, "Token")?;
            field("Message", &msg.message);
            field("MessageId", &msg.message_id);
            field("SubscribeURL", &subscribe_url);
            field("Timestamp", &msg.timestamp);
            field("Token", &token);
            field("TopicArn", &msg.topic_arn);
            field("Type", msg.kind.as_str());
        }
    }
    Ok(out)
}
