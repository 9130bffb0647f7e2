//! ferry's AWS runtime, compiled only with the `aws` feature (the default build compiles
//! none of the AWS SDK): the [`Ledger`](ferry_engine::ports::Ledger) on DynamoDB (seed
//! §3.5.1), [`Deployer`](ferry_engine::ports::Deployer)s on S3 (seed §3.1.3) and
//! CloudFormation (change sets, deployed only on a meaningful change).
//!
//! The engine's ports are synchronous; every adapter here owns a handle on one tokio
//! runtime ([`Aws`]) and blocks on it, so call them from plain threads (or
//! `spawn_blocking`), never from inside an async task.

#![cfg(feature = "aws")]

pub mod alarm_event;
pub mod cloudformation;
pub mod cloudwatch;
pub mod lambda;
pub mod ledger;
pub mod objects;
pub mod s3;
pub mod sns;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_types::error::display::DisplayErrorContext;
use ferry_engine::ports::PortError;
use std::sync::Arc;

/// How to reach AWS: a region, and optionally an endpoint (moto's server in tests) and
/// static credentials. `None` fields come from the usual AWS environment
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles, the Lambda role).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub region: Option<String>,
    /// An endpoint override such as `http://127.0.0.1:5000` (moto).
    pub endpoint: Option<String>,
    /// `(access key id, secret access key)`.
    pub credentials: Option<(String, String)>,
    /// Attempts per call, throttling and refused connections included (default 5).
    pub max_attempts: Option<u32>,
}

/// One loaded AWS configuration and the runtime the adapters block on.
#[derive(Clone)]
pub struct Aws {
    rt: Arc<tokio::runtime::Runtime>,
    config: aws_config::SdkConfig,
    context: Context,
}

/// What an error message says about where and how hard a call was tried.
#[derive(Debug, Clone)]
struct Context {
    /// The endpoint override, or `None` for AWS's own endpoint of the region.
    endpoint: Option<String>,
    region: String,
    /// Attempts per call (the SDK's standard retry mode, exponential backoff with jitter).
    attempts: u32,
}

impl Context {
    fn endpoint(&self, service: &str) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("the AWS {service} endpoint of {}", self.region),
        }
    }
}

/// Attempts per call when `Settings::max_attempts` is not given.
pub const DEFAULT_ATTEMPTS: u32 = 5;

impl Aws {
    /// Loads the configuration. A missing region or missing credentials are a clear
    /// `Unavailable` error naming what to set; credentials are resolved once here, so a
    /// chain that finds none fails now rather than at the first call.
    pub fn connect(settings: &Settings) -> Result<Aws, PortError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| PortError::unavailable(format!("cannot start the AWS runtime: {e}")))?;
        let attempts = settings.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(attempts));
        if let Some(r) = &settings.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &settings.endpoint {
            loader = loader.endpoint_url(e.clone());
        }
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "ferry-settings",
            ));
        }
        let config = rt.block_on(loader.load());
        let Some(region) = config.region().map(ToString::to_string) else {
            return Err(PortError::unavailable(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)",
            ));
        };
        const NO_CREDENTIALS: &str = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role";
        let Some(provider) = config.credentials_provider() else {
            return Err(PortError::unavailable(NO_CREDENTIALS));
        };
        if settings.credentials.is_none() {
            use aws_sdk_dynamodb::config::ProvideCredentials;
            if let Err(e) = rt.block_on(provider.provide_credentials()) {
                return Err(PortError::unavailable(format!(
                    "{NO_CREDENTIALS} (the credential chain said: {})",
                    DisplayErrorContext(&e)
                )));
            }
        }
        Ok(Aws {
            rt: Arc::new(rt),
            context: Context {
                endpoint: config
                    .endpoint_url()
                    .map(str::to_string)
                    .or_else(|| settings.endpoint.clone()),
                region,
                attempts,
            },
            config,
        })
    }

    /// Runs one future of SDK calls to completion on the adapters' runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The loaded SDK configuration.
    pub fn config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// Attempts per call (throttling and unreachable endpoints are retried until then).
    pub fn attempts(&self) -> u32 {
        self.context.attempts
    }

    /// [`port_error`] with what this configuration knows: the endpoint a call could not
    /// reach and how many attempts it was given.
    pub fn error(
        &self,
        service: &str,
        call: &str,
        e: &(dyn std::error::Error + 'static),
    ) -> PortError {
        classify(service, call, e, Some(&self.context))
    }
}

/// Turns an SDK error into a `PortError` naming the service and the call, with the
/// whole error chain (`DisplayErrorContext`). What is left after the SDK's retries of
/// throttling (`ProvisionedThroughputExceeded`, `Throttling`, `SlowDown`, …) and of an
/// endpoint that cannot be reached is `Transient` (the engine's own retry policy may try
/// again later); missing credentials are `Unavailable`; anything else `Permanent`.
/// [`Aws::error`] also names the endpoint and the number of attempts.
pub fn port_error(service: &str, call: &str, e: &(dyn std::error::Error + 'static)) -> PortError {
    classify(service, call, e, None)
}

/// Error codes AWS services answer when they throttle a caller.
const THROTTLING: &[&str] = &[
    "provisionedthroughputexceeded",
    "throttl",
    "slowdown",
    "requestlimitexceeded",
    "toomanyrequests",
    "requestthrottled",
];

/// Failures to get an answer at all.
const UNREACHABLE: &[&str] = &[
    "dispatch failure",
    "connection refused",
    "connection reset",
    "timeout",
    "timed out",
    "dns error",
    "failed to lookup address",
];

/// An error and its sources, `: `-separated (their `Display`, not the SDK's `Debug` of
/// the raw response).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn classify(
    service: &str,
    call: &str,
    e: &(dyn std::error::Error + 'static),
    context: Option<&Context>,
) -> PortError {
    let text = chain(e);
    let lower = text.to_ascii_lowercase();
    let prefix = format!("AWS {service} {call} failed");
    let tries = |what: &str| match context {
        Some(c) => format!("{what}; gave up after {} attempts with backoff", c.attempts),
        None => format!("{what}; gave up after the SDK's retries with backoff"),
    };
    if lower.contains("credentials")
        && (lower.contains("no credentials")
            || lower.contains("not loaded")
            || lower.contains("no providers in chain"))
    {
        PortError::unavailable(format!(
            "{prefix}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role): {text}"
        ))
    } else if THROTTLING.iter().any(|t| lower.contains(t)) {
        PortError::transient(format!(
            "{prefix}: throttled by {service} ({}): {text}",
            tries("the request rate is too high")
        ))
    } else if UNREACHABLE.iter().any(|t| lower.contains(t)) {
        let endpoint = context.map_or_else(|| "the endpoint".to_string(), |c| c.endpoint(service));
        PortError::transient(format!(
            "{prefix}: cannot reach {endpoint} ({}): {text}",
            tries("no answer")
        ))
    } else {
        PortError::permanent(format!("{prefix}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::ports::PortErrorKind;

    #[derive(Debug)]
    struct Text(&'static str);
    impl std::fmt::Display for Text {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Text {}

    #[test]
    fn errors_name_the_service_and_call_and_are_classified() {
        let cases = [
            (
                "ProvisionedThroughputExceededException: The level of configured provisioned throughput for the table was exceeded",
                PortErrorKind::Transient,
            ),
            (
                "ThrottlingException: Rate exceeded",
                PortErrorKind::Transient,
            ),
            ("Throttling: Rate exceeded", PortErrorKind::Transient),
            (
                "unhandled error (SlowDown): Please reduce your request rate.",
                PortErrorKind::Transient,
            ),
            (
                "dispatch failure: io error: Connection refused (os error 111)",
                PortErrorKind::Transient,
            ),
            (
                "failed to construct request: no credentials in the property bag",
                PortErrorKind::Unavailable,
            ),
            (
                "ResourceNotFoundException: Requested resource not found",
                PortErrorKind::Permanent,
            ),
        ];
        for (text, kind) in cases {
            let e = port_error("DynamoDB", "PutItem", &Text(text));
            assert_eq!(e.kind, kind, "{text}");
            assert!(
                e.message.starts_with("AWS DynamoDB PutItem failed: "),
                "{}",
                e.message
            );
        }
    }
}
