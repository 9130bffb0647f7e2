//! SNS deliveries to `POST /hooks/alarms` accepted on their signature (no bearer token:
//! SNS cannot send one). A delivery is trusted when its `TopicArn` is one of
//! `server.sns_topics` (every AWS account's topics are signed with the same
//! certificates, so the topic is what says it is ours), its `SigningCertURL` is an SNS
//! certificate of AWS (or under `server.sns_certificate_urls`), and its `Signature`
//! verifies with that certificate. Certificates are fetched over HTTPS (so TLS proves
//! they are AWS's) and kept for the life of the process.

use ferry_config::Pipeline;
use ferry_hooks::SnsMessage;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest a certificate or confirmation fetch may take.
const FETCH: Duration = Duration::from_secs(10);

/// What the server trusts of SNS, and the certificates it fetched.
#[derive(Debug, Default)]
pub struct SnsTrust {
    topics: Vec<String>,
    extra: Vec<String>,
    certificates: Mutex<HashMap<String, Vec<u8>>>,
}

impl SnsTrust {
    pub fn new(pipeline: &Pipeline) -> SnsTrust {
        SnsTrust {
            topics: pipeline.server.sns_topics.clone(),
            extra: pipeline.server.sns_certificate_urls.clone(),
            certificates: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any topic is trusted (else SNS deliveries need the bearer token).
    pub fn enabled(&self) -> bool {
        !self.topics.is_empty()
    }

    /// The message, when its topic is trusted and its signature verifies; else why not.
    /// Blocking (it may fetch the certificate).
    pub fn verify(&self, body: &[u8]) -> Result<SnsMessage, String> {
        let msg = ferry_hooks::parse_sns(body).map_err(|e| e.to_string())?;
        if !self.topics.contains(&msg.topic_arn) {
            return Err(format!(
                "SNS topic `{}` is not in `server.sns_topics`; add it there to accept its deliveries, or send the bearer token",
                msg.topic_arn
            ));
        }
        ferry_hooks::trusted_certificate_url(&msg.signing_cert_url, &self.extra)
            .map_err(|e| e.to_string())?;
        let der = self.certificate(&msg.signing_cert_url)?;
        ferry_hooks::verify_sns_signature(&msg, &der).map_err(|e| e.to_string())?;
        Ok(msg)
    }

    /// Confirms a verified subscription by visiting its `SubscribeURL` (an SNS URL of
    /// AWS, or under `server.sns_certificate_urls`).
    pub fn confirm(&self, msg: &SnsMessage) -> Result<(), String> {
        let url = msg
            .subscribe_url
            .as_deref()
            .ok_or("the confirmation has no SubscribeURL")?;
        if !ferry_hooks::trusted_subscribe_url(url, &self.extra) {
            return Err(format!(
                "SubscribeURL `{}` is not an SNS confirmation URL of AWS; not visited",
                url.chars().take(200).collect::<String>()
            ));
        }
        let (status, _) = fetch(url)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("SNS answered {status} to the confirmation"))
        }
    }

    fn certificate(&self, url: &str) -> Result<Vec<u8>, String> {
        if let Some(c) = self
            .certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
        {
            return Ok(c.clone());
        }
        let (status, pem) = fetch(url)?;
        if status != 200 {
            return Err(format!("the signing certificate {url} answered {status}"));
        }
        let der = ferry_hooks::certificate_der(&pem).map_err(|e| e.to_string())?;
        self.certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.to_string(), der.clone());
        Ok(der)
    }
}

/// GETs `url`: https with rustls and the web's root certificates, http (emulators
/// only, by configuration) with the built-in client. At most 64 KiB.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    if url.starts_with("http://") {
        return ferry_local::http_get(url, FETCH);
    }
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(FETCH))
            .http_status_as_error(false)
            .build(),
    );
    let mut res = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = res.status().as_u16();
    let body = res
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, body))
}
