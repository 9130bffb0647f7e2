//! Physical names of the synthesized resources, within AWS's character sets and length
//! limits.
//!
//! Every name starts from the pipeline's name (with `--env`, `<pipeline>-<env>`), with
//! every character outside `[A-Za-z0-9-]` turned into `-` (the narrowest set among the
//! services: SNS, SQS, Lambda, CodeBuild, dashboards and stack names) and `ferry-` put in
//! front when it does not start with a letter (stack names must). A name over its
//! service's limit keeps its beginning and ends with `-` and 8 hex digits of a hash of the
//! whole name, so two long names that differ only at the end stay different.

use ferry_config::short_hash;

/// Cuts `name` to at most `max` characters: the beginning, `-`, then 8 hex digits of a
/// hash of the whole name. Shorter names are returned as they are.
pub fn limit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = short_hash(name);
    let keep = max.saturating_sub(hash.len() + 1);
    let head: String = name.chars().take(keep).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

fn sanitize(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s = format!("ferry-{s}");
    }
    s
}

/// The physical names of one synthesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    base: String,
    pipeline: String,
    env: Option<String>,
}

impl Names {
    /// Names for pipeline `pipeline`, scoped to `env` when given.
    pub fn new(pipeline: &str, env: Option<&str>) -> Names {
        let raw = match env {
            Some(e) => format!("{pipeline}-{e}"),
            None => pipeline.to_string(),
        };
        Names {
            base: sanitize(&raw),
            pipeline: sanitize(pipeline),
            env: env.map(sanitize_part),
        }
    }

    /// The prefix every name starts with.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A stack: `<base>-<kind>` (CloudFormation: 128).
    pub fn stack(&self, kind: &str) -> String {
        limit(&format!("{}-{kind}", self.base), 128)
    }

    /// The CodePipeline pipeline (100).
    pub fn pipeline(&self) -> String {
        limit(&self.base, 100)
    }

    /// The CodeStar connection (32).
    pub fn connection(&self) -> String {
        limit(&self.base, 32)
    }

    /// A CodeBuild project for a stage (`build` or an environment) (150, the limit
    /// CodeBuild's report groups `<project>-<report>` still fit under).
    pub fn project(&self, stage: &str) -> String {
        limit(&format!("{}-{}", self.base, sanitize_part(stage)), 100)
    }

    /// The deployments table (255).
    pub fn table(&self) -> String {
        limit(&format!("{}-deployments", self.base), 255)
    }

    /// An SNS topic: `deployments`, `approvals` or `rollbacks` (256).
    pub fn topic(&self, kind: &str) -> String {
        limit(&format!("{}-{kind}", self.base), 256)
    }

    /// The rollback Lambda function (64).
    pub fn function(&self) -> String {
        limit(&format!("{}-rollback", self.base), 64)
    }

    /// The rollback Lambda's dead-letter queue (80).
    pub fn queue(&self) -> String {
        limit(&format!("{}-rollback-dlq", self.base), 80)
    }

    /// The EventBridge rule for an environment's alarms (64).
    pub fn rule(&self, env: &str) -> String {
        match self.env {
            Some(_) => limit(&format!("{}-alarms", self.base), 64),
            None => limit(&format!("{}-{}-alarms", self.base, sanitize_part(env)), 64),
        }
    }

    /// The prefix of an environment's CloudWatch alarm names, `<pipeline>-<env>-` (the
    /// seed's `kiro-worker-${environment}`; the trailing `-` keeps `test` from matching
    /// `testing`).
    pub fn alarm_prefix(&self, env: &str) -> String {
        limit(&format!("{}-{}-", self.pipeline, sanitize_part(env)), 200)
    }

    /// One of the pipeline's own alarms: `failures` or `rollbacks` (255).
    pub fn alarm(&self, kind: &str) -> String {
        limit(&format!("{}-{kind}", self.base), 255)
    }

    /// The CloudWatch dashboard (255).
    pub fn dashboard(&self) -> String {
        limit(&format!("{}-dashboard", self.base), 255)
    }

    /// The log group CodeBuild writes to (512).
    pub fn build_log_group(&self) -> String {
        limit(&format!("/ferry/{}/builds", self.base), 512)
    }

    /// The rollback Lambda's log group.
    pub fn function_log_group(&self) -> String {
        format!("/aws/lambda/{}", self.function())
    }

    /// The namespace of ferry's custom metrics (§9.2) (255).
    pub fn namespace(&self) -> String {
        limit(&format!("Ferry/{}", self.base), 255)
    }

    /// The KMS key's alias (256).
    pub fn key_alias(&self) -> String {
        limit(&format!("alias/{}", self.base), 256)
    }

    /// The Secrets Manager name of a secret: `<base>/<NAME>` (§10.2; 512).
    pub fn secret(&self, name: &str) -> String {
        limit(&format!("{}/{name}", self.base), 500)
    }
}

fn sanitize_part(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay() {
        let n = Names::new("shop-api", None);
        assert_eq!(n.stack("core"), "shop-api-core");
        assert_eq!(n.table(), "shop-api-deployments");
        assert_eq!(n.alarm_prefix("staging"), "shop-api-staging-");
        let n = Names::new("shop.api", Some("prod_eu"));
        assert_eq!(n.function(), "shop-api-prod-eu-rollback");
        assert_eq!(Names::new("1st", None).pipeline(), "ferry-1st");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let a = limit(&format!("{}-a", "x".repeat(100)), 64);
        let b = limit(&format!("{}-b", "x".repeat(100)), 64);
        assert!(a.len() <= 64 && b.len() <= 64);
        assert_ne!(a, b);
    }
}
