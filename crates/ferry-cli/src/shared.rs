//! What a person's commands read from, and announce of, the shared ledger
//! ([`Shared`]): with `FERRY_DEPLOYMENTS_TABLE` set, `ferry status` and `ferry history`
//! read deployments, last known good versions, rollbacks, incidents and freezes from the
//! DynamoDB table of the AWS runtime (runs stay the project's own store's: a
//! [`SplitStore`] over both), and `ferry freeze`, `ferry unfreeze` and `ferry resolve`
//! publish their events to the stack's SNS topics (`FERRY_DEPLOYMENTS_TOPIC`,
//! `FERRY_ROLLBACKS_TOPIC`) after recording them in the table. Without the table every
//! method here is the project's own store's behaviour.

use crate::context::Project;
use crate::error::{CliError, CliResult};
use crate::step::Shared;
use ferry_config::Pipeline;
use ferry_core::Event;
use ferry_core::notify::Attempt;
use ferry_core::rollback::RollbackRecord;
use ferry_engine::ports::Store;
use ferry_engine::split::SplitStore;
use std::collections::BTreeMap;

impl Shared {
    /// The ledger read instead of the project's store (`None`: the project's store).
    pub(crate) fn source(&self) -> Option<ferry_api::LedgerSource> {
        match self {
            Shared::Local(_) => None,
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => Some(ferry_api::LedgerSource {
                kind: "dynamodb".into(),
                name: d.table().to_string(),
            }),
        }
    }

    /// The store `ferry status` reads when the ledger is not the project's store: runs,
    /// their events, approvals and outbox from `local`, everything shared from the table.
    /// `None` when the ledger is the project's store (read `local` itself).
    pub(crate) fn over<'a>(&'a self, local: &'a dyn Store) -> Option<SplitStore<'a>> {
        match self {
            Shared::Local(_) => {
                let _ = local;
                None
            }
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => Some(SplitStore {
                local,
                shared: &**d,
            }),
        }
    }

    /// Rollbacks, newest first: the table's when the ledger is DynamoDB (the rollback
    /// Lambda's and `ferry step`'s), else `local`'s.
    pub(crate) fn rollbacks(
        &self,
        local: &dyn Store,
        limit: usize,
    ) -> CliResult<Vec<RollbackRecord>> {
        match self {
            Shared::Local(_) => Ok(local.rollbacks(limit)?),
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => Ok(d.rollbacks(limit)?),
        }
    }

    /// What each environment's deployer reports running ([`Project::running`]), asked
    /// only where this machine can see it. With the table, environments deployed with
    /// `s3:` or `cloudformation:` are asked (their pointer objects are in S3, readable
    /// from anywhere with the credentials); `release:` and `command:` environments were
    /// deployed by CodeBuild, not on this machine, so their version is the table's last
    /// known good (`None` here).
    pub(crate) fn running(
        &self,
        project: &Project,
        pipeline: &Pipeline,
    ) -> BTreeMap<String, Option<String>> {
        match self {
            Shared::Local(_) => project.running(pipeline),
            #[cfg(feature = "aws")]
            Shared::Dynamo(_) => {
                use ferry_engine::ports::DeployerFactory;
                let f = project.factory();
                pipeline
                    .environments
                    .iter()
                    .map(|e| {
                        let v = if e.deploy.needs_aws() {
                            f.deployer(&e.name, &e.deploy)
                                .ok()
                                .and_then(|d| d.current_version().ok())
                                .flatten()
                        } else {
                            None
                        };
                        (e.name.clone(), v)
                    })
                    .collect()
            }
        }
    }

    /// A failure reading or writing the ledger, said plainly when the table does not
    /// exist (a wrong `FERRY_DEPLOYMENTS_TABLE`, region or account).
    pub(crate) fn explain(&self, e: impl Into<CliError>) -> CliError {
        let e = e.into();
        match self {
            Shared::Local(_) => e,
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => {
                if missing_table(&e.message) {
                    CliError::environment(format!(
                        "the DynamoDB table `{}` (FERRY_DEPLOYMENTS_TABLE) does not exist: set FERRY_DEPLOYMENTS_TABLE to the deployments table of the stacks `ferry synth aws` made (output `DeploymentsTableName` of the core stack) and check that AWS_REGION and AWS_PROFILE name its account and region, or unset FERRY_DEPLOYMENTS_TABLE to use this project's own store\n  ({})",
                        d.table(),
                        e.message
                    ))
                } else {
                    e
                }
            }
        }
    }

    /// Publishes the events of a person's action on the table (`freeze_set`,
    /// `freeze_lifted`, `incident_resolved`) to the stack's SNS topics whose kinds
    /// include them ([`Shared::topics`]). Nothing without the table (the project's
    /// outbox announces local actions). A failed publish is a warning on stderr: the
    /// action stands, the table is the record. Each event's `ferryEventId` is its
    /// time in milliseconds (as the rollback Lambda's), plus its position among
    /// `events` so that freezes lifted together stay distinct.
    pub(crate) fn publish(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let topics = match self.topics() {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "warning: not announced on SNS ({}); the action is recorded in the table",
                    e.message
                );
                return;
            }
        };
        for (i, event) in events.iter().enumerate() {
            let id = event.at.0.saturating_add(i64::try_from(i).unwrap_or(0));
            for t in &topics {
                let kinds = t.kinds();
                if !kinds.is_empty() && !kinds.iter().any(|k| k == event.kind.as_str()) {
                    continue;
                }
                match t.deliver(id, event) {
                    Attempt::Delivered(_) => {}
                    Attempt::Transient(m) | Attempt::Permanent(m) => eprintln!(
                        "warning: {} was not published to {} ({m}); the action is recorded in the table",
                        event.kind.as_str(),
                        t.id()
                    ),
                }
            }
        }
    }
}

/// Whether an error of DynamoDB says the table does not exist.
#[cfg(feature = "aws")]
fn missing_table(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("resourcenotfoundexception")
        || m.contains("non-existent table")
        || m.contains("requested resource not found")
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::missing_table;

    #[test]
    fn a_missing_table_is_recognised_in_dynamodb_s_words() {
        assert!(missing_table(
            "DynamoDB Query failed: ResourceNotFoundException: Requested resource not found"
        ));
        assert!(missing_table(
            "DynamoDB Scan: Cannot do operations on a non-existent table"
        ));
        assert!(!missing_table(
            "DynamoDB Query failed: AccessDeniedException: not authorized"
        ));
    }
}
