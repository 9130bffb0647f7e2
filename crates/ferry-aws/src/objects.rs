//! Whole files to and from S3, for what ferry keeps there itself: the build's packed
//! artifact on the AWS runtime (`ferry step build/@artifact` uploads it; environment
//! stages, later executions and rollbacks read it back), so a deployment's recorded
//! artifact outlives the CodeBuild container that built it.

use crate::Aws;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use ferry_engine::ports::{PortError, PortResult};
use std::path::Path;

fn client(aws: &Aws) -> Client {
    let mut cfg = aws_sdk_s3::config::Builder::from(aws.config());
    if aws.config().endpoint_url().is_some() {
        // moto and other stand-ins answer on one host: path-style addressing.
        cfg = cfg.force_path_style(true);
    }
    Client::from_conf(cfg.build())
}

/// `s3://BUCKET/KEY` → `(BUCKET, KEY)`.
pub fn parse_url(url: &str) -> PortResult<(&str, &str)> {
    url.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| PortError::permanent(format!("`{url}` is not s3://BUCKET/KEY")))
}

/// Uploads the file at `path` to `s3://bucket/key`.
pub fn upload(aws: &Aws, bucket: &str, key: &str, path: &Path) -> PortResult<()> {
    let body = aws
        .block_on(ByteStream::from_path(path))
        .map_err(|e| PortError::permanent(format!("cannot read `{}`: {e}", path.display())))?;
    aws.block_on(
        client(aws)
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send(),
    )
    .map_err(|e| aws.error("S3", "PutObject", &e))?;
    Ok(())
}

/// Downloads `s3://bucket/key` into `dest` (written whole, then renamed into place).
/// A missing object is `NotFound`, naming it.
pub fn download(aws: &Aws, bucket: &str, key: &str, dest: &Path) -> PortResult<()> {
    let out = aws
        .block_on(client(aws).get_object().bucket(bucket).key(key).send())
        .map_err(|e| {
            let err = aws.error("S3", "GetObject", &e);
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                PortError::not_found(format!(
                    "s3://{bucket}/{key} does not exist: {}",
                    err.message
                ))
            } else {
                err
            }
        })?;
    let bytes = aws
        .block_on(out.body.collect())
        .map_err(|e| aws.error("S3", "GetObject", &e))?
        .into_bytes();
    let io =
        |e: std::io::Error| PortError::permanent(format!("cannot write `{}`: {e}", dest.display()));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = dest.with_extension(format!("part-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, dest).map_err(io)
}
