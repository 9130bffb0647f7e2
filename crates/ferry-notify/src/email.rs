//! Email over SMTP with lettre (rustls): STARTTLS by default (the server must offer it),
//! TLS from the first byte for `smtps://` / `tls: tls`, or plain for a relay on this
//! machine (`tls: none`). The event id is in the `Message-ID`, so a mail system can
//! drop a duplicate. A server refusing a recipient (5xx) makes a dead letter at once,
//! with the server's answer.

use crate::Options;
use crate::payload;
use ferry_config::{SmtpTls, smtp_endpoint};
use ferry_core::Event;
use ferry_engine::ports::{Attempt, Notifier};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use std::time::Duration;

/// An email channel's settings, from `ferry.yml`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub smtp: String,
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
}

/// The email channel.
pub struct Email {
    id: String,
    kinds: Vec<String>,
    settings: Settings,
    pipeline: String,
    timeout: Duration,
    env: fn(&str) -> Option<String>,
}

impl Email {
    /// An email channel sending with `settings`.
    pub fn new(id: String, kinds: Vec<String>, settings: Settings, options: &Options) -> Self {
        Email {
            id,
            kinds,
            settings,
            pipeline: options.pipeline.clone(),
            timeout: options.timeout,
            env: options.env,
        }
    }

    fn shown(&self) -> String {
        format!("email `{}`", self.id)
    }

    /// TLS parameters for `host`: the public roots, plus the certificate in the file
    /// `SSL_CERT_FILE` names, if any (a private CA, a test server).
    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(path) = (self.env)("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read SSL_CERT_FILE `{path}`: {e}"))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("SSL_CERT_FILE `{path}` holds no PEM certificate: {e}"))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| format!("cannot set up TLS for {host}: {e}"))
    }

    fn transport(&self) -> Result<SmtpTransport, String> {
        let (host, port, tls) = smtp_endpoint(&self.settings.smtp, self.settings.tls)
            .map_err(|why| format!("`smtp: {}` is not a server: {why}", self.settings.smtp))?;
        let tls = match tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(self.tls_parameters(&host)?),
            SmtpTls::Tls => Tls::Wrapper(self.tls_parameters(&host)?),
        };
        let mut b = SmtpTransport::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let (Some(user), Some(var)) = (&self.settings.username, &self.settings.password_env) {
            let Some(password) = (self.env)(var) else {
                return Err(format!(
                    "the environment variable `{var}` (`password_env`) is not set; export the SMTP password there"
                ));
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(b.build())
    }

    fn message(&self, event_id: i64, event: &Event) -> Result<Message, String> {
        let (subject, body) = payload::email(event_id, event, &self.pipeline);
        let from: Mailbox = self.settings.from.parse().map_err(|e| {
            format!(
                "`from: {}` is not an email address ({e})",
                self.settings.from
            )
        })?;
        let mut b = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(format!(
                "<ferry-event-{event_id}@{}>",
                domain(&self.pipeline)
            )))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.settings.to {
            let mb: Mailbox = to
                .parse()
                .map_err(|e| format!("`to: {to}` is not an email address ({e})"))?;
            b = b.to(mb);
        }
        b.body(body)
            .map_err(|e| format!("cannot build the message: {e}"))
    }
}

/// The pipeline name as a domain-ish part of a Message-ID.
fn domain(pipeline: &str) -> String {
    let d: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{d}.ferry")
}

impl Notifier for Email {
    fn id(&self) -> &str {
        &self.id
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, event: &Event) -> Attempt {
        let shown = self.shown();
        let message = match self.message(event_id, event) {
            Ok(m) => m,
            Err(why) => return Attempt::Permanent(format!("{shown}: {why}")),
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(why) => return Attempt::Permanent(format!("{shown}: {why}")),
        };
        match transport.send(&message) {
            Ok(res) => Attempt::Delivered(format!(
                "{shown}: {} {}",
                res.code(),
                res.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => {
                Attempt::Permanent(format!("{shown}: the SMTP server refused: {e}"))
            }
            Err(e) => Attempt::Transient(format!("{shown}: {e}")),
        }
    }
}
