//! Verifying an SNS delivery's signature (AWS: "Verifying the signatures of Amazon SNS
//! messages"), the pure part: which certificate URLs may be fetched at all, reading the
//! PEM certificate, and checking `Signature` over the string to sign with the
//! certificate's RSA key (`SignatureVersion` 1: SHA1withRSA, 2: SHA256withRSA).
//!
//! Fetching the certificate is the caller's (over HTTPS, from a URL
//! [`trusted_certificate_url`] accepted, so that TLS proves it is AWS's); so is checking
//! that `TopicArn` is a topic it trusts, since every AWS account's topics are signed
//! with the same certificates.

use base64::Engine as _;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id,
};

use crate::sns::{SnsMessage, sns_string_to_sign};

/// Why an SNS delivery is not accepted on its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsVerifyError {
    #[error(
        "SigningCertURL `{0}` is not an SNS certificate of AWS (https://sns.<region>.amazonaws.com/SimpleNotificationService-….pem)"
    )]
    UntrustedCertificateUrl(String),
    #[error("the signing certificate is not PEM with one CERTIFICATE block")]
    NotPem,
    #[error("the signing certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error("`Signature` is not base64")]
    SignatureNotBase64,
    #[error("the signature does not match the message (SignatureVersion {0})")]
    Mismatch(String),
    #[error("{0}")]
    Message(String),
}

/// Whether `url` may be fetched as an SNS signing certificate: `https`, on
/// `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`), default port, a path of the
/// form `/SimpleNotificationService-<id>.pem`, no query, no credentials. `extra` lists
/// URL prefixes also trusted (an SNS emulator such as LocalStack; set in `ferry.yml`).
pub fn trusted_certificate_url(url: &str, extra: &[String]) -> Result<(), SnsVerifyError> {
    let bad = || SnsVerifyError::UntrustedCertificateUrl(url.chars().take(200).collect());
    if in_extra(url, extra) {
        return Ok(());
    }
    let path = sns_path(url).ok_or_else(bad)?;
    let id = path
        .strip_prefix("SimpleNotificationService-")
        .and_then(|p| p.strip_suffix(".pem"))
        .ok_or_else(bad)?;
    let id_ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if id_ok { Ok(()) } else { Err(bad()) }
}

/// Whether a confirmation's `SubscribeURL` may be visited: `https` on an SNS host of
/// AWS (as for certificates) with the `ConfirmSubscription` action, or under an `extra`
/// prefix.
pub fn trusted_subscribe_url(url: &str, extra: &[String]) -> bool {
    if in_extra(url, extra) {
        return true;
    }
    sns_path(url).is_some_and(|p| p.starts_with('?') && p.contains("Action=ConfirmSubscription"))
}

fn in_extra(url: &str, extra: &[String]) -> bool {
    extra
        .iter()
        .any(|p| !p.is_empty() && url.starts_with(p.as_str()) && !url.contains(".."))
}

/// The path (without the leading `/`) of an `https://sns.<region>.amazonaws.com[.cn]/…`
/// URL with no port or credentials.
fn sns_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let region = host.strip_prefix("sns.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
    })?;
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    region_ok.then_some(path)
}

/// The DER of the one `CERTIFICATE` block of a PEM file.
pub fn certificate_der(pem: &[u8]) -> Result<Vec<u8>, SnsVerifyError> {
    let text = std::str::from_utf8(pem).map_err(|_| SnsVerifyError::NotPem)?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN).ok_or(SnsVerifyError::NotPem)? + BEGIN.len();
    let len = text[start..].find(END).ok_or(SnsVerifyError::NotPem)?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| SnsVerifyError::NotPem)
}

/// Checks `msg`'s `Signature` with the RSA key of the certificate `cert_der` (as
/// [`certificate_der`] read it).
pub fn verify_sns_signature(msg: &SnsMessage, cert_der: &[u8]) -> Result<(), SnsVerifyError> {
    let signed = sns_string_to_sign(msg).map_err(|e| SnsVerifyError::Message(e.to_string()))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(msg.signature.trim())
        .map_err(|_| SnsVerifyError::SignatureNotBase64)?;
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| SnsVerifyError::BadCertificate(format!("{e:?}")))?;
    let alg: &dyn SignatureVerificationAlgorithm = match msg.signature_version.as_str() {
        "1" => &RSA_SHA1,
        _ => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    };
    cert.verify_signature(alg, signed.as_bytes(), &signature)
        .map_err(|_| SnsVerifyError::Mismatch(msg.signature_version.clone()))
}

/// SHA1withRSA (PKCS#1 v1.5, 2048 to 8192 bits), which SNS's `SignatureVersion` 1 still
/// uses; webpki has no SHA-1 algorithm of its own, ring does (for legacy use, this one).
#[derive(Debug)]
struct RsaSha1;

static RSA_SHA1: RsaSha1 = RsaSha1;

impl SignatureVerificationAlgorithm for RsaSha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    /// Only used when verifying certificate chains, which this algorithm never does.
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_PKCS1_SHA256
    }
}
