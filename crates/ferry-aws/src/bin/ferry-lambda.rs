//! The rollback Lambda (`provided.al2023`, the binary named `bootstrap` in the function's
//! zip): one handler built at cold start, one call per EventBridge alarm event.
//!
//! `ferry-lambda invoke EVENT.json` runs the same handler once on an event file (local
//! testing): it prints the outcome as JSON and exits 0, or prints the error and exits 1.

use ferry_aws::lambda::{Handler, Invocation, LambdaConfig};
use ferry_aws::{Aws, Settings};
use ferry_core::Timestamp;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

fn settings() -> Settings {
    Settings {
        // The usual AWS environment; `AWS_ENDPOINT_URL` (read by the SDK) points it at
        // moto in tests.
        region: None,
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
        credentials: None,
        max_attempts: None,
    }
}

fn handler() -> Result<Handler, String> {
    let aws = Aws::connect(&settings()).map_err(|e| e.message)?;
    let cfg = LambdaConfig::from_env().map_err(|e| e.message)?;
    Handler::new(&aws, &cfg).map_err(|e| e.message)
}

fn invoke(path: &str) -> i32 {
    let event: Value = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ferry-lambda: cannot read the event {path}: {e}");
            return 2;
        }
    };
    let handler = match handler() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ferry-lambda: {e}");
            return 1;
        }
    };
    match handler.handle(&event) {
        Ok(outcome) => {
            println!("{}", outcome.to_json());
            0
        }
        Err(e) => {
            eprintln!("ferry-lambda: {e}");
            1
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("invoke") {
        let Some(path) = args.get(2) else {
            eprintln!("usage: ferry-lambda invoke EVENT.json");
            std::process::exit(2);
        };
        std::process::exit(invoke(path));
    }
    // The adapters block on their own runtime, so the handler runs on a plain thread
    // per event, never inside the Lambda runtime's tasks.
    let handler = match handler() {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("ferry-lambda: {e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-lambda: cannot start the Lambda runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Value>| {
            let handler = handler.clone();
            async move {
                let call = Invocation {
                    request_id: event.context.request_id.clone(),
                    deadline: i64::try_from(event.context.deadline).ok().map(Timestamp),
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(handler.handle_invocation(&event.payload, &call));
                });
                match rx.await {
                    Ok(Ok(outcome)) => Ok::<Value, Error>(outcome.to_json()),
                    Ok(Err(e)) => Err(Error::from(e.message)),
                    Err(_) => Err(Error::from("the handler thread stopped")),
                }
            }
        },
    )));
    if let Err(e) = result {
        eprintln!("ferry-lambda: {e}");
        std::process::exit(1);
    }
}
