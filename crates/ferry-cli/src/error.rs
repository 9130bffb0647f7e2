//! The one error type of the binary: a message for people and the exit code it maps to
//! (`ferry_api::exit`). Messages name the thing and the fix.

use ferry_api::exit;
use ferry_engine::ports::{PortError, PortErrorKind};
use std::fmt;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(exit::CONFIG, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(exit::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(exit::CONFLICT, message)
    }
    pub fn environment(message: impl Into<String>) -> Self {
        Self::new(exit::ENVIRONMENT, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<PortError> for CliError {
    fn from(e: PortError) -> Self {
        let code = match e.kind {
            PortErrorKind::NotFound => exit::NOT_FOUND,
            PortErrorKind::Conflict => exit::CONFLICT,
            PortErrorKind::Unavailable => exit::STATE,
            PortErrorKind::Transient | PortErrorKind::Permanent => exit::ENVIRONMENT,
        };
        CliError::new(code, e.message)
    }
}

pub type CliResult<T> = Result<T, CliError>;
