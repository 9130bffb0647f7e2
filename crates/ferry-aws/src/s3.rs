//! A [`Deployer`] on S3 (seed §3.1.3): a deployment syncs the artifact (a file, or every
//! file of a folder) to the versioned prefix `{prefix}/releases/{version}/`, then points
//! the object `{prefix}/current` at that version. A rollback points `current` back at
//! the earlier version's prefix (uploading it again first if it is gone), so putting a
//! version back never rebuilds anything. `current` is what runs: its body is the version.

use crate::{Aws, port_error};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use ferry_engine::ports::{DeployRequest, Deployer, PortError, PortResult};
use std::path::{Path, PathBuf};

/// Deploys one environment's static artifact into one bucket.
pub struct S3Deployer {
    aws: Aws,
    client: Client,
    bucket: String,
    prefix: String,
}

fn files_under(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl S3Deployer {
    /// Deploys under `s3://{bucket}/{prefix}/` (the prefix is usually the environment).
    pub fn new(aws: &Aws, bucket: &str, prefix: &str) -> S3Deployer {
        let mut cfg = aws_sdk_s3::config::Builder::from(aws.config());
        if aws.config().endpoint_url().is_some() {
            // moto and other stand-ins answer on one host: path-style addressing.
            cfg = cfg.force_path_style(true);
        }
        S3Deployer {
            aws: aws.clone(),
            client: Client::from_conf(cfg.build()),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Creates the bucket (for tests and a first try against an empty account; in
    /// production the core stack of `ferry synth aws` creates it).
    pub fn create_bucket(&self) -> PortResult<()> {
        let req = self.client.create_bucket().bucket(&self.bucket);
        self.aws
            .block_on(req.send())
            .map_err(|e| port_error("S3", "CreateBucket", &e))?;
        Ok(())
    }

    fn release_prefix(&self, version: &str) -> String {
        format!("{}/releases/{version}/", self.prefix)
    }

    fn pointer(&self) -> String {
        format!("{}/current", self.prefix)
    }

    /// Whether a version's prefix holds at least one object.
    fn has_release(&self, version: &str) -> PortResult<bool> {
        let req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.release_prefix(version))
            .max_keys(1);
        let out = self
            .aws
            .block_on(req.send())
            .map_err(|e| port_error("S3", "ListObjectsV2", &e))?;
        Ok(out.key_count().unwrap_or(0) > 0 || !out.contents().is_empty())
    }

    /// Syncs the artifact at `location` (a file or a folder) to the version's prefix.
    fn upload(&self, version: &str, location: &str) -> PortResult<usize> {
        let root = Path::new(location);
        let (base, files) = if root.is_dir() {
            let files = files_under(root).map_err(|e| {
                PortError::permanent(format!("cannot read the artifact folder {location}: {e}"))
            })?;
            (root.to_path_buf(), files)
        } else if root.is_file() {
            let parent = root.parent().unwrap_or(Path::new("")).to_path_buf();
            (parent, vec![root.to_path_buf()])
        } else {
            return Err(PortError::not_found(format!(
                "the artifact {location} does not exist: build it again or restore it"
            )));
        };
        for file in &files {
            let rel = file.strip_prefix(&base).unwrap_or(file);
            let key = format!(
                "{}{}",
                self.release_prefix(version),
                rel.to_string_lossy().replace('\\', "/")
            );
            let bytes = std::fs::read(file).map_err(|e| {
                PortError::permanent(format!("cannot read {}: {e}", file.display()))
            })?;
            let req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(bytes));
            self.aws
                .block_on(req.send())
                .map_err(|e| port_error("S3", "PutObject", &e))?;
        }
        Ok(files.len())
    }

    fn point_at(&self, version: &str) -> PortResult<()> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.pointer())
            .content_type("text/plain")
            .body(ByteStream::from(version.as_bytes().to_vec()));
        self.aws
            .block_on(req.send())
            .map_err(|e| port_error("S3", "PutObject", &e))?;
        Ok(())
    }
}

impl Deployer for S3Deployer {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()> {
        if self.current_version()?.as_deref() == Some(req.version.as_str()) {
            return Ok(());
        }
        self.upload(&req.version, &req.artifact.location)?;
        self.point_at(&req.version)
    }

    fn rollback(&self, req: &DeployRequest) -> PortResult<()> {
        if !self.has_release(&req.version)? {
            self.upload(&req.version, &req.artifact.location)
                .map_err(|e| {
                    PortError::new(
                        e.kind,
                        format!(
                            "s3://{}/{} is gone and cannot be uploaded again: {}",
                            self.bucket,
                            self.release_prefix(&req.version),
                            e.message
                        ),
                    )
                })?;
        }
        self.point_at(&req.version)
    }

    fn current_version(&self) -> PortResult<Option<String>> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.pointer());
        match self.aws.block_on(req.send()) {
            Ok(out) => {
                let body = self
                    .aws
                    .block_on(out.body.collect())
                    .map_err(|e| port_error("S3", "GetObject", &e))?;
                let text = String::from_utf8_lossy(&body.into_bytes())
                    .trim()
                    .to_string();
                Ok((!text.is_empty()).then_some(text))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(None),
            Err(e) => Err(port_error("S3", "GetObject", &e)),
        }
    }
}
