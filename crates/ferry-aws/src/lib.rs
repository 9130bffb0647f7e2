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
}

impl Aws {
    /// Loads the configuration. A missing region or missing credentials are a clear
    /// `Unavailable` error naming what to set.
    pub fn connect(settings: &Settings) -> Result<Aws, PortError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| PortError::unavailable(format!("cannot start the AWS runtime: {e}")))?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            RetryConfig::standard().with_max_attempts(settings.max_attempts.unwrap_or(5)),
        );
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
        if config.region().is_none() {
            return Err(PortError::unavailable(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)",
            ));
        }
        if config.credentials_provider().is_none() {
            return Err(PortError::unavailable(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or run with a role",
            ));
        }
        Ok(Aws {
            rt: Arc::new(rt),
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
}

/// Turns an SDK error into a `PortError` naming the service and the call, with the
/// whole error chain (`DisplayErrorContext`). Throttling and connection failures that
/// are left after the SDK's retries are `Transient`; missing credentials `Unavailable`.
pub fn port_error(service: &str, call: &str, e: &(dyn std::error::Error + 'static)) -> PortError {
    let text = format!("{}", DisplayErrorContext(e));
    let message = format!("AWS {service} {call} failed: {text}");
    let lower = text.to_ascii_lowercase();
    if lower.contains("credentials")
        && (lower.contains("no credentials") || lower.contains("not loaded"))
    {
        PortError::unavailable(format!(
            "{message} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a role)"
        ))
    } else if lower.contains("throttl")
        || lower.contains("provisionedthroughputexceeded")
        || lower.contains("dispatch failure")
        || lower.contains("connection refused")
        || lower.contains("timeout")
    {
        PortError::transient(message)
    } else {
        PortError::permanent(message)
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
