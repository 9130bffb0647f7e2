//! Secret redaction of what local processes print (DESIGN invariant 8).
//!
//! The process-wide redactor is set once by the `ferry` binary from the pipeline file and
//! its environment (`set_redactor`). While it knows a secret, a step's output (and a
//! command deployer's) no longer goes straight to its log file: it goes through a pipe to
//! a copier thread that redacts it with `ferry_core::redact::Stream` (a secret split
//! across two reads is still caught) and appends it to the log, so every reader of the
//! log (`ferry logs`, the API, the live progress line) sees `***`.

use ferry_core::Redactor;
use std::fs::File;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{PoisonError, RwLock, mpsc};
use std::thread;
use std::time::Duration;

static REDACTOR: RwLock<Option<Redactor>> = RwLock::new(None);

/// How long a finished step's output may take to drain into its log. A process that left
/// the step's group and still holds the pipe keeps its copier running in the background.
const DRAIN: Duration = Duration::from_secs(2);

/// Sets the secrets every later step's output is redacted of.
pub fn set_redactor(r: Redactor) {
    *REDACTOR.write().unwrap_or_else(PoisonError::into_inner) = Some(r);
}

/// The process-wide redactor (empty until set).
pub fn redactor() -> Redactor {
    REDACTOR
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

/// The thread copying a step's output into its log.
pub(crate) struct Copier {
    done: mpsc::Receiver<()>,
}

impl Copier {
    /// Waits (at most [`DRAIN`]) for the output to be in the log.
    pub(crate) fn finish(self) {
        let _ = self.done.recv_timeout(DRAIN);
    }
}

/// Points `cmd`'s stdout and stderr at one pipe whose output is redacted into `log`.
pub(crate) fn pipe_into(cmd: &mut Command, log: File, r: Redactor) -> io::Result<Copier> {
    let (reader, writer) = io::pipe()?;
    let writer2 = writer.try_clone()?;
    cmd.stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
    let (tx, done) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("ferry-log".into())
        .spawn(move || {
            copy(reader, log, &r);
            let _ = tx.send(());
        })?;
    Ok(Copier { done })
}

fn copy(mut from: impl Read, mut to: File, r: &Redactor) {
    let mut stream = r.stream();
    let mut buf = vec![0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let out = stream.push(&buf[..n]);
                if to.write_all(&out).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.write_all(&stream.finish());
    let _ = to.flush();
}
