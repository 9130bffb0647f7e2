//! Secret redaction (DESIGN invariant 8): every known secret value is replaced by `***`
//! in text before it is written anywhere (the store, step logs, the terminal).
//!
//! Matching is leftmost-longest over bytes: at each position the longest secret that
//! starts there is replaced, then scanning goes on after it. A [`Stream`] does the same
//! over output that arrives in chunks (a step's streamed log): bytes that could still be
//! the start of a secret are held back until the next chunk decides, so a secret split
//! across chunks is caught, and the output of a stream is exactly `redact` of the whole.
//!
//! Values shorter than [`MIN_SECRET_LEN`] characters are not treated as secrets:
//! replacing every `1` or `yes` in a log would destroy it and protect nothing.

use crate::changes::Change;
use crate::events::Event;
use std::sync::Arc;

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Values shorter than this (in bytes) are ignored.
pub const MIN_SECRET_LEN: usize = 4;

/// Words that make an environment variable's value a secret when its name contains one
/// (case-insensitive): `API_TOKEN`, `DB_PASSWORD`, `AWS_SECRET_ACCESS_KEY`, …
pub const SECRET_NAME_WORDS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
];

/// Whether an environment variable's name says its value is a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_WORDS.iter().any(|w| upper.contains(w))
}

/// A set of secret values. Cheap to clone (shared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Distinct secrets, longest first.
    secrets: Arc<Vec<Vec<u8>>>,
}

impl Redactor {
    /// A redactor for these values; empty and too short ones are dropped.
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| v.as_ref().as_bytes().to_vec())
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// A redactor that knows no secret.
    pub fn none() -> Redactor {
        Redactor::default()
    }

    /// This redactor with more secrets.
    pub fn with<I, S>(&self, more: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<String> = self
            .secrets
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        all.extend(more.into_iter().map(|s| s.as_ref().to_string()));
        Redactor::new(all)
    }

    /// Whether it knows no secret (redaction is then the identity).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// How many secrets it knows.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    fn longest(&self) -> usize {
        self.secrets.first().map_or(0, Vec::len)
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let out = self.redact_bytes(text.as_bytes());
        // Secrets are whole UTF-8 strings and the mask is ASCII, so the cut points fall on
        // character boundaries; the lossy conversion only guards against the impossible.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// `bytes` with every secret replaced by `***`.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let used = self.scan(bytes, true, &mut out);
        debug_assert_eq!(used, bytes.len());
        out
    }

    /// Scans `buf`, appending the redacted text to `out`; returns how many bytes were
    /// consumed. Unless `last`, it stops at the first position where a secret could
    /// start but the buffer ends before it could be told.
    fn scan(&self, buf: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if !last
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                return i;
            }
            match self.secrets.iter().find(|s| rest.starts_with(s)) {
                Some(s) => {
                    out.extend_from_slice(MASK.as_bytes());
                    i += s.len();
                }
                None => {
                    out.push(buf[i]);
                    i += 1;
                }
            }
        }
        i
    }

    /// A redacting stream over output arriving in chunks.
    pub fn stream(&self) -> Stream {
        Stream {
            redactor: self.clone(),
            held: Vec::new(),
        }
    }

    /// An event with its message and every string in its payload redacted.
    pub fn event(&self, e: &Event) -> Event {
        if self.is_empty() {
            return e.clone();
        }
        let mut e = e.clone();
        e.message = self.redact(&e.message);
        self.value(&mut e.data);
        e
    }

    /// Redacts every string (and object key) in a JSON value in place.
    pub fn value(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => *s = self.redact(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(o) => {
                let old = std::mem::take(o);
                for (k, mut x) in old {
                    self.value(&mut x);
                    o.insert(self.redact(&k), x);
                }
            }
            _ => {}
        }
    }

    /// A change with the free text it carries (events, reasons) redacted.
    pub fn change(&self, c: &Change) -> Change {
        if self.is_empty() {
            return c.clone();
        }
        let r = |s: &String| self.redact(s);
        match c {
            Change::Event(e) => Change::Event(self.event(e)),
            Change::Run { status, reason, at } => Change::Run {
                status: *status,
                reason: reason.as_ref().map(r),
                at: *at,
            },
            Change::Step {
                stage,
                step,
                status,
                at,
                log,
                exit_code,
                reason,
            } => Change::Step {
                stage: *stage,
                step: *step,
                status: *status,
                at: *at,
                log: log.clone(),
                exit_code: *exit_code,
                reason: reason.as_ref().map(r),
            },
            Change::DeploymentRolledBack {
                deployment_id,
                reason,
                level,
                at,
            } => Change::DeploymentRolledBack {
                deployment_id: deployment_id.clone(),
                reason: r(reason),
                level: *level,
                at: *at,
            },
            Change::IncidentOpened {
                environment,
                deployment_id,
                reason,
                at,
            } => Change::IncidentOpened {
                environment: environment.clone(),
                deployment_id: deployment_id.clone(),
                reason: r(reason),
                at: *at,
            },
            Change::AlarmState {
                alarm,
                state,
                reason,
                at,
            } => Change::AlarmState {
                alarm: alarm.clone(),
                state: *state,
                reason: r(reason),
                at: *at,
            },
            other => other.clone(),
        }
    }

    /// A rollback record with its reason and details redacted.
    pub fn rollback(&self, r: &crate::rollback::RollbackRecord) -> crate::rollback::RollbackRecord {
        let mut r = r.clone();
        if !self.is_empty() {
            r.reason = self.redact(&r.reason);
            r.detail = r.detail.iter().map(|d| self.redact(d)).collect();
        }
        r
    }

    /// Every change of a batch, redacted.
    pub fn changes(&self, cs: &[Change]) -> Vec<Change> {
        cs.iter().map(|c| self.change(c)).collect()
    }
}

/// Redaction of output arriving in chunks: `push` each chunk and write what it returns,
/// then write what `finish` returns. The concatenation equals `redact` of the whole
/// output, however it was cut.
#[derive(Debug, Clone)]
pub struct Stream {
    redactor: Redactor,
    held: Vec<u8>,
}

impl Stream {
    /// Takes the next chunk; returns the redacted bytes that are now decided.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let used = self.redactor.scan(&self.held, false, &mut out);
        self.held.drain(..used);
        debug_assert!(self.held.len() < self.redactor.longest().max(1));
        out
    }

    /// The end of the output: the held bytes, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.redactor.redact_bytes(&held)
    }

    /// How many bytes are held back waiting for the next chunk.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let r = Redactor::new(["hunter22", "hunter22-extra", "ab"]);
        assert_eq!(r.len(), 2, "too short values are dropped");
        assert_eq!(
            r.redact("pw=hunter22 and hunter22-extra!"),
            "pw=*** and ***!"
        );
    }

    #[test]
    fn a_secret_split_across_chunks_is_caught() {
        let r = Redactor::new(["s3cr3t-value"]);
        let mut s = r.stream();
        let mut out = s.push(b"token: s3cr");
        assert_eq!(out, b"token: ");
        out.extend(s.push(b"3t-value done"));
        out.extend(s.finish());
        assert_eq!(String::from_utf8_lossy(&out), "token: *** done");
    }

    #[test]
    fn names_that_look_secret() {
        for n in [
            "API_TOKEN",
            "db_password",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["HOME", "PATH", "RUST_LOG", "FERRY_ENV"] {
            assert!(!looks_secret(n), "{n}");
        }
    }

    #[test]
    fn events_are_redacted_in_message_and_payload() {
        let r = Redactor::new(["tok-123456"]);
        let e = Event {
            at: crate::Timestamp(0),
            kind: crate::EventKind::StepFailed,
            run: None,
            environment: None,
            message: "failed with tok-123456".into(),
            data: serde_json::json!({"reason": ["x tok-123456 y"], "n": 1}),
        };
        let red = r.event(&e);
        assert_eq!(red.message, "failed with ***");
        assert_eq!(red.data["reason"][0], "x *** y");
        assert_eq!(red.data["n"], 1);
    }
}
