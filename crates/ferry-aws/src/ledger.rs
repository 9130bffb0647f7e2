//! The [`Ledger`] on DynamoDB: the deployments table of seed §3.5.1 (partition key
//! `deploymentId`, the `EnvironmentStatusIndex` GSI on `environment` + `status`, TTL on
//! `expiresAt`). Leases and rollback claims live in the same table under the keys
//! `lease#{environment}` and `rollback#{deploymentId}`, incidents under
//! `incident#{environment}` (resolved ones keep `resolvedAt`/`resolvedBy` until a new
//! one replaces them), freezes under `freeze#{environment}#{from}#{seq}` (a lifted one
//! gets `liftedAt`), events under `event#…`; none of them carries the `environment` /
//! `status` attributes, so the (sparse) index holds deployments only, and freezes are
//! listed with a `Scan` filtered on their key's prefix.
//!
//! Every write that decides something is conditional: a lease is taken only if it is
//! free, expired or ours, a rollback claimed only if no claim exists. The loser of a
//! race reads the winner's item (a consistent read) and returns it, so a second caller
//! never deploys a second time (seed Property 2).

use crate::Aws;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem,
};
use ferry_core::alarm::AlarmState;
use ferry_core::rollback::RollbackRecord;
use ferry_core::window::Freeze;
use ferry_core::{Change, DeploymentRecord, DeploymentStatus, Event, RunId, Timestamp};
use ferry_engine::ports::{Incident, Lease, Ledger, PortError, PortResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes event keys unique within a process (with the time and the process id).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The GSI of seed §3.5.1.
pub const STATUS_INDEX: &str = "EnvironmentStatusIndex";

type Item = HashMap<String, AttributeValue>;

/// An item to put in a transaction, its condition (`""`: none) and the values the
/// condition names.
type ConditionalPut<'a> = (Item, &'a str, Vec<(&'a str, AttributeValue)>);

/// The deployments table on DynamoDB. Alarm states are CloudWatch's (`DescribeAlarms`).
pub struct DynamoLedger {
    aws: Aws,
    client: Client,
    table: String,
    alarms: crate::cloudwatch::CloudWatch,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: &str, key: &str, why: impl std::fmt::Display) -> PortError {
    PortError::unavailable(format!(
        "the DynamoDB item {key} is not a ferry {what} ({why}); was the table written by another tool?"
    ))
}

fn deployment_of(item: &Item) -> PortResult<DeploymentRecord> {
    let key = get_s(item, "deploymentId").unwrap_or("?");
    let json = get_s(item, "record").ok_or_else(|| corrupt("deployment", key, "no `record`"))?;
    serde_json::from_str(json).map_err(|e| corrupt("deployment", key, e))
}

fn rollback_of(item: &Item) -> PortResult<RollbackRecord> {
    let key = get_s(item, "deploymentId").unwrap_or("?");
    let json = get_s(item, "record").ok_or_else(|| corrupt("rollback", key, "no `record`"))?;
    serde_json::from_str(json).map_err(|e| corrupt("rollback", key, e))
}

fn lease_of(item: &Item) -> PortResult<Lease> {
    let key = get_s(item, "deploymentId").unwrap_or("?");
    let bad = || corrupt("lease", key, "missing attributes");
    Ok(Lease {
        environment: get_s(item, "leaseEnvironment").ok_or_else(bad)?.to_string(),
        run: RunId(get_n(item, "leaseRun").ok_or_else(bad)?),
        holder: get_s(item, "leaseHolder").ok_or_else(bad)?.to_string(),
        expires_at: Timestamp(get_n(item, "leaseExpiresAt").ok_or_else(bad)?),
    })
}

fn newest(mut v: Vec<DeploymentRecord>) -> Vec<DeploymentRecord> {
    v.sort_by(|a, b| {
        b.start_time
            .cmp(&a.start_time)
            .then_with(|| b.deployment_id.cmp(&a.deployment_id))
    });
    v
}

impl DynamoLedger {
    /// The ledger in table `table` (which must exist; see [`DynamoLedger::create_table`]).
    pub fn new(aws: &Aws, table: &str) -> DynamoLedger {
        DynamoLedger {
            aws: aws.clone(),
            client: Client::new(aws.config()),
            table: table.to_string(),
            alarms: crate::cloudwatch::CloudWatch::new(aws),
        }
    }

    /// The table's name (what `FERRY_DEPLOYMENTS_TABLE` named).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The rollbacks recorded in the table (`rollback#…` items), newest first, at most
    /// `limit`: a `Scan` filtered on `rollbackOf` (only rollback items carry it), as
    /// `ferry history` lists them.
    pub fn rollbacks(&self, limit: usize) -> PortResult<Vec<RollbackRecord>> {
        let mut out = self
            .scan("attribute_exists(rollbackOf)", &[], &[], false)?
            .iter()
            .map(rollback_of)
            .collect::<PortResult<Vec<_>>>()?;
        out.sort_by(|a: &RollbackRecord, b: &RollbackRecord| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.deployment_id.cmp(&a.deployment_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// Records a pipeline file's text under its digest (release sets refer to it; a
    /// rollback restores with the file that deployed the release).
    pub fn put_config(&self, digest: &str, text: &str) -> PortResult<()> {
        let item = HashMap::from([
            ("deploymentId".into(), s(format!("config#{digest}"))),
            ("text".into(), s(text)),
        ]);
        self.put(item, "PutItem")
    }

    fn encode<T: serde::Serialize>(what: &str, v: &T) -> PortResult<String> {
        serde_json::to_string(v)
            .map_err(|e| PortError::permanent(format!("cannot encode {what}: {e}")))
    }

    fn deployment_item(d: &DeploymentRecord) -> PortResult<Item> {
        let json = Self::encode(&format!("deployment {}", d.deployment_id), d)?;
        let mut item: Item = HashMap::from([
            ("deploymentId".into(), s(&d.deployment_id)),
            ("environment".into(), s(&d.environment)),
            ("version".into(), s(&d.version)),
            ("status".into(), s(d.status.as_str())),
            ("startTime".into(), n(d.start_time)),
            ("expiresAt".into(), n(d.expires_at)),
            ("artifactLocation".into(), s(&d.artifact_location)),
            ("record".into(), s(json)),
        ]);
        if let Some(end) = d.end_time {
            item.insert("endTime".into(), n(end));
        }
        Ok(item)
    }

    fn event_item(e: &Event) -> PortResult<Item> {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let key = format!("event#{:013}#{}#{seq}", e.at.0, std::process::id());
        let mut item: Item = HashMap::from([
            ("deploymentId".into(), s(key)),
            ("eventKind".into(), s(e.kind.as_str())),
            ("at".into(), n(e.at.0)),
            ("record".into(), s(Self::encode("an event", e)?)),
            // Events expire with the deployments (90 days).
            ("expiresAt".into(), n(e.at.0 / 1000 + 90 * 86_400)),
        ]);
        if let Some(env) = &e.environment {
            item.insert("eventEnvironment".into(), s(env));
        }
        Ok(item)
    }

    /// Writes items in one transaction (all or none); each with its condition, if any.
    fn transact(&self, puts: Vec<(Item, Option<&str>)>, call: &str) -> PortResult<()> {
        let mut req = self.client.transact_write_items();
        for (item, condition) in puts {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build()
                .map_err(|e| PortError::permanent(e.to_string()))?;
            req = req.transact_items(TransactWriteItem::builder().put(put).build());
        }
        self.aws
            .block_on(req.send())
            .map_err(|e| self.aws.error("DynamoDB", call, &e))?;
        Ok(())
    }

    /// Creates the table of seed §3.5.1 (on demand, the GSI) and waits until it is
    /// active. In production the core stack of `ferry synth aws` creates it; this is for
    /// tests and a first try against an empty account.
    pub fn create_table(&self) -> PortResult<()> {
        let key = |name: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| PortError::permanent(e.to_string()))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| PortError::permanent(e.to_string()))
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(STATUS_INDEX)
            .key_schema(key("environment", KeyType::Hash)?)
            .key_schema(key("status", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| PortError::permanent(e.to_string()))?;
        let call = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("deploymentId", KeyType::Hash)?)
            .attribute_definitions(attr("deploymentId")?)
            .attribute_definitions(attr("environment")?)
            .attribute_definitions(attr("status")?)
            .global_secondary_indexes(gsi);
        self.aws
            .block_on(call.send())
            .map_err(|e| self.aws.error("DynamoDB", "CreateTable", &e))?;
        Ok(())
    }

    fn put(&self, item: Item, call: &str) -> PortResult<()> {
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        self.aws
            .block_on(req.send())
            .map_err(|e| self.aws.error("DynamoDB", call, &e))?;
        Ok(())
    }

    /// A consistent read of one item.
    fn get(&self, key: &str) -> PortResult<Option<Item>> {
        let req = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("deploymentId", s(key))
            .consistent_read(true);
        let out = self
            .aws
            .block_on(req.send())
            .map_err(|e| self.aws.error("DynamoDB", "GetItem", &e))?;
        Ok(out.item)
    }

    /// A conditional put: `Ok(false)` when the condition failed.
    fn put_if(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> PortResult<bool> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(*k, v.clone());
        }
        match self.aws.block_on(req.send()) {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.aws.error("DynamoDB", "PutItem", &e)),
        }
    }

    /// Every deployment of an environment through the index, optionally of one status
    /// (`#s`: `status` is a reserved word).
    fn query_env(
        &self,
        environment: &str,
        status: Option<DeploymentStatus>,
    ) -> PortResult<Vec<DeploymentRecord>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(STATUS_INDEX)
                .expression_attribute_values(":e", s(environment))
                .set_exclusive_start_key(start.take());
            req = match status {
                Some(st) => req
                    .key_condition_expression("environment = :e AND #s = :s")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(":s", s(st.as_str())),
                None => req.key_condition_expression("environment = :e"),
            };
            let page = self
                .aws
                .block_on(req.send())
                .map_err(|e| self.aws.error("DynamoDB", "Query", &e))?;
            for item in page.items() {
                out.push(deployment_of(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(newest(out))
    }

    fn scan_deployments(&self) -> PortResult<Vec<DeploymentRecord>> {
        let out = self
            .scan(
                "attribute_exists(environment) AND attribute_exists(#s)",
                &[("#s", "status")],
                &[],
                false,
            )?
            .iter()
            .map(deployment_of)
            .collect::<PortResult<Vec<_>>>()?;
        Ok(newest(out))
    }

    /// Every item matching `filter`, all pages of a `Scan` (`consistent`: a strongly
    /// consistent read).
    fn scan(
        &self,
        filter: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
        consistent: bool,
    ) -> PortResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .consistent_read(consistent)
                .set_exclusive_start_key(start.take());
            for (k, v) in names {
                req = req.expression_attribute_names(*k, *v);
            }
            for (k, v) in values {
                req = req.expression_attribute_values(*k, v.clone());
            }
            let page = self
                .aws
                .block_on(req.send())
                .map_err(|e| self.aws.error("DynamoDB", "Scan", &e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes items in one transaction, each with its condition and the values it
    /// names: `Ok(false)` when a condition failed (nothing was written).
    fn transact_if(&self, puts: Vec<ConditionalPut<'_>>, call: &str) -> PortResult<bool> {
        let mut req = self.client.transact_write_items();
        for (item, condition, values) in puts {
            let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
            if !condition.is_empty() {
                put = put.condition_expression(condition);
            }
            for (k, v) in values {
                put = put.expression_attribute_values(k, v);
            }
            let put = put
                .build()
                .map_err(|e| PortError::permanent(e.to_string()))?;
            req = req.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match self.aws.block_on(req.send()) {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_transaction_canceled_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.aws.error("DynamoDB", call, &e)),
        }
    }

    /// Every freeze item (`freeze#ENV#FROM#SEQ`) of one environment or all, with its
    /// key and its item: a `Scan` filtered on the key's prefix (the table's only key is
    /// `deploymentId`, and the index holds deployments only), ordered by key (by
    /// environment, then oldest first).
    fn scan_freezes(&self, environment: Option<&str>) -> PortResult<Vec<(Freeze, Item)>> {
        let prefix = match environment {
            Some(e) => format!("freeze#{e}#"),
            None => "freeze#".to_string(),
        };
        let mut out: Vec<(String, Freeze, Item)> = Vec::new();
        let items = self.scan(
            "begins_with(deploymentId, :p)",
            &[],
            &[(":p", s(&prefix))],
            true,
        )?;
        for item in items {
            let key = get_s(&item, "deploymentId").unwrap_or("?").to_string();
            let json =
                get_s(&item, "record").ok_or_else(|| corrupt("freeze", &key, "no `record`"))?;
            let f: Freeze = serde_json::from_str(json).map_err(|e| corrupt("freeze", &key, e))?;
            if environment.is_some_and(|e| e != f.environment) {
                continue;
            }
            out.push((key, f, item));
        }
        out.sort_by(|a, b| {
            (&a.1.environment, a.1.from, &a.0).cmp(&(&b.1.environment, b.1.from, &b.0))
        });
        Ok(out.into_iter().map(|(_, f, item)| (f, item)).collect())
    }

    /// The freezes not over at `at` (neither lifted nor past their `until`), as
    /// `Ledger::freezes` and the SQLite store define it.
    fn open_freezes(
        &self,
        environment: Option<&str>,
        at: Timestamp,
    ) -> PortResult<Vec<(Freeze, Item)>> {
        Ok(self
            .scan_freezes(environment)?
            .into_iter()
            .filter(|(f, _)| f.until > at && f.lifted_at.is_none_or(|l| l > at))
            .collect())
    }

    fn lease_item(lease: &Lease) -> Item {
        HashMap::from([
            (
                "deploymentId".into(),
                s(format!("lease#{}", lease.environment)),
            ),
            ("leaseEnvironment".into(), s(&lease.environment)),
            ("leaseRun".into(), n(lease.run.0)),
            ("leaseHolder".into(), s(&lease.holder)),
            ("leaseExpiresAt".into(), n(lease.expires_at.0)),
        ])
    }

    fn rollback_item(rec: &RollbackRecord) -> PortResult<Item> {
        let json = serde_json::to_string(rec).map_err(|e| {
            PortError::permanent(format!(
                "cannot encode the rollback of {}: {e}",
                rec.deployment_id
            ))
        })?;
        Ok(HashMap::from([
            (
                "deploymentId".into(),
                s(format!("rollback#{}", rec.deployment_id)),
            ),
            ("rollbackOf".into(), s(&rec.deployment_id)),
            ("record".into(), s(json)),
        ]))
    }
}

impl Ledger for DynamoLedger {
    fn record_deployment(&self, d: &DeploymentRecord) -> PortResult<()> {
        self.put(Self::deployment_item(d)?, "PutItem")
    }

    /// One `TransactWriteItems`: events as items of their own (`event#…`, with a TTL),
    /// the rolled-back deployment's record, the incident (`incident#ENV`, written only
    /// when the environment has no open one).
    fn record_rollback(&self, _run: RunId, changes: &[Change]) -> PortResult<()> {
        let mut puts: Vec<(Item, Option<&str>)> = Vec::new();
        for c in changes {
            match c {
                Change::Event(e) => puts.push((Self::event_item(e)?, None)),
                Change::DeploymentRolledBack {
                    deployment_id,
                    reason,
                    level,
                    at,
                } => {
                    let item = self.get(deployment_id)?.ok_or_else(|| {
                        PortError::not_found(format!("deployment {deployment_id} does not exist"))
                    })?;
                    let mut d = deployment_of(&item)?;
                    d.status = DeploymentStatus::RolledBack;
                    d.rollback_reason = Some(reason.clone());
                    d.rollback_level = Some(*level);
                    d.rollback_time = Some(at.0);
                    puts.push((Self::deployment_item(&d)?, None));
                }
                Change::IncidentOpened {
                    environment,
                    deployment_id,
                    reason,
                    at,
                } => {
                    let item = HashMap::from([
                        ("deploymentId".into(), s(format!("incident#{environment}"))),
                        ("incidentId".into(), n(at.0)),
                        ("incidentEnvironment".into(), s(environment)),
                        ("incidentDeployment".into(), s(deployment_id)),
                        ("reason".into(), s(reason)),
                        ("openedAt".into(), n(at.0)),
                    ]);
                    puts.push((
                        item,
                        Some("attribute_not_exists(deploymentId) OR attribute_exists(resolvedAt)"),
                    ));
                }
                other => {
                    return Err(PortError::permanent(format!(
                        "the DynamoDB ledger records a rollback's events, rolled-back deployments and incidents, not a `{}` change",
                        other.name()
                    )));
                }
            }
        }
        if puts.is_empty() {
            return Ok(());
        }
        self.transact(puts, "TransactWriteItems")
    }

    fn deployments(
        &self,
        environment: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        let mut all = match environment {
            Some(e) => self.query_env(e, None)?,
            None => self.scan_deployments()?,
        };
        all.truncate(limit);
        Ok(all)
    }

    fn last_known_good(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        Ok(self
            .query_env(environment, Some(DeploymentStatus::Succeeded))?
            .into_iter()
            .next())
    }

    fn latest_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        Ok(self.query_env(environment, None)?.into_iter().next())
    }

    fn acquire_lease(&self, lease: &Lease, now: Timestamp) -> PortResult<Result<(), Lease>> {
        let key = format!("lease#{}", lease.environment);
        loop {
            let won = self.put_if(
                Self::lease_item(lease),
                "attribute_not_exists(deploymentId) OR leaseRun = :run OR leaseExpiresAt <= :now",
                &[],
                &[(":run", n(lease.run.0)), (":now", n(now.0))],
            )?;
            if won {
                return Ok(Ok(()));
            }
            // Lost: the winner's lease, unless it was released meanwhile (then try again).
            if let Some(item) = self.get(&key)? {
                return Ok(Err(lease_of(&item)?));
            }
        }
    }

    fn take_over_lease(&self, want: &Lease, gone: &Lease) -> PortResult<Result<(), Lease>> {
        let key = format!("lease#{}", want.environment);
        loop {
            let won = self.put_if(
                Self::lease_item(want),
                "attribute_not_exists(deploymentId) OR (leaseRun = :run AND leaseHolder = :holder AND leaseExpiresAt = :exp)",
                &[],
                &[
                    (":run", n(gone.run.0)),
                    (":holder", s(&gone.holder)),
                    (":exp", n(gone.expires_at.0)),
                ],
            )?;
            if won {
                return Ok(Ok(()));
            }
            // Someone else took it (over) first: theirs, unless released meanwhile.
            if let Some(item) = self.get(&key)? {
                return Ok(Err(lease_of(&item)?));
            }
        }
    }

    fn renew_lease(&self, lease: &Lease) -> PortResult<()> {
        let ok = self.put_if(
            Self::lease_item(lease),
            "leaseRun = :run",
            &[],
            &[(":run", n(lease.run.0))],
        )?;
        if ok {
            return Ok(());
        }
        match self.get(&format!("lease#{}", lease.environment))? {
            Some(item) => {
                let held = lease_of(&item)?;
                Err(PortError::conflict(format!(
                    "run {} no longer holds the lease on {}: run {} ({}) holds it",
                    lease.run, lease.environment, held.run, held.holder
                )))
            }
            None => Err(PortError::conflict(format!(
                "run {} no longer holds the lease on {}: nobody holds it",
                lease.run, lease.environment
            ))),
        }
    }

    fn release_lease(&self, environment: &str, run: RunId) -> PortResult<()> {
        let req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("deploymentId", s(format!("lease#{environment}")))
            .condition_expression("leaseRun = :run")
            .expression_attribute_values(":run", n(run.0));
        match self.aws.block_on(req.send()) {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.aws.error("DynamoDB", "DeleteItem", &e)),
        }
    }

    fn claim_rollback(&self, rec: &RollbackRecord) -> PortResult<Result<(), RollbackRecord>> {
        let key = format!("rollback#{}", rec.deployment_id);
        loop {
            if self.put_if(
                Self::rollback_item(rec)?,
                "attribute_not_exists(deploymentId)",
                &[],
                &[],
            )? {
                return Ok(Ok(()));
            }
            // A claim exists: the loser returns the winner's record.
            if let Some(item) = self.get(&key)? {
                return Ok(Err(rollback_of(&item)?));
            }
        }
    }

    fn update_rollback(&self, rec: &RollbackRecord) -> PortResult<()> {
        if self.put_if(
            Self::rollback_item(rec)?,
            "attribute_exists(deploymentId)",
            &[],
            &[],
        )? {
            Ok(())
        } else {
            Err(PortError::not_found(format!(
                "no rollback of deployment {} was claimed",
                rec.deployment_id
            )))
        }
    }

    fn rollback(&self, deployment_id: &str) -> PortResult<Option<RollbackRecord>> {
        self.get(&format!("rollback#{deployment_id}"))?
            .as_ref()
            .map(rollback_of)
            .transpose()
    }

    fn hold(&self, environment: &str) -> PortResult<Option<Incident>> {
        let Some(item) = self.get(&format!("incident#{environment}"))? else {
            return Ok(None);
        };
        if item.contains_key("resolvedAt") {
            return Ok(None);
        }
        let key = format!("incident#{environment}");
        let bad = || corrupt("incident", &key, "missing attributes");
        Ok(Some(Incident {
            id: get_n(&item, "incidentId").ok_or_else(bad)?,
            environment: environment.to_string(),
            deployment_id: get_s(&item, "incidentDeployment")
                .ok_or_else(bad)?
                .to_string(),
            reason: get_s(&item, "reason").unwrap_or_default().to_string(),
            opened_at: Timestamp(get_n(&item, "openedAt").ok_or_else(bad)?),
            resolved_at: None,
            resolved_by: None,
        }))
    }

    /// Sets `resolvedAt`/`resolvedBy` on `incident#ENV` and writes its
    /// `incident_resolved` event in one transaction, on condition that the incident read
    /// is still the open one (not resolved meanwhile, not replaced by a newer one).
    fn resolve(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Incident> {
        let none =
            || PortError::not_found(format!("environment {environment} has no open incident"));
        let mut incident = self.hold(environment)?.ok_or_else(none)?;
        let mut item = self
            .get(&format!("incident#{environment}"))?
            .ok_or_else(none)?;
        item.insert("resolvedAt".into(), n(at.0));
        item.insert("resolvedBy".into(), s(by));
        incident.resolved_at = Some(at);
        incident.resolved_by = Some(by.to_string());
        let event = Self::event_item(&incident.resolved_event(at))?;
        let written = self.transact_if(
            vec![
                (
                    item,
                    "attribute_exists(deploymentId) AND attribute_not_exists(resolvedAt) AND incidentId = :id",
                    vec![(":id", n(incident.id))],
                ),
                (event, "", Vec::new()),
            ],
            "TransactWriteItems",
        )?;
        if !written {
            return Err(PortError::conflict(format!(
                "the incident of environment {environment} changed while it was being resolved (someone else resolved it, or a new one opened); see `ferry status` and try again"
            )));
        }
        Ok(incident)
    }

    /// Marks every open freeze of the environment lifted (its `record` and a
    /// `liftedAt` attribute) with one `freeze_lifted` event each, in one transaction, on
    /// condition that none was lifted meanwhile.
    fn unfreeze(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Vec<Freeze>> {
        let open = self.open_freezes(Some(environment), at)?;
        if open.is_empty() {
            return Err(PortError::not_found(ferry_core::window::not_frozen(
                environment,
            )));
        }
        let mut lifted = Vec::new();
        let mut puts = Vec::new();
        for (mut f, mut item) in open {
            f.lifted_at = Some(at);
            f.lifted_by = Some(by.to_string());
            item.insert("record".into(), s(Self::encode("a freeze", &f)?));
            item.insert("liftedAt".into(), n(at.0));
            puts.push((
                item,
                "attribute_exists(deploymentId) AND attribute_not_exists(liftedAt)",
                Vec::new(),
            ));
            puts.push((Self::event_item(&f.lifted_event())?, "", Vec::new()));
            lifted.push(f);
        }
        if !self.transact_if(puts, "TransactWriteItems")? {
            return Err(PortError::conflict(format!(
                "the freezes of environment {environment} changed while they were being lifted (someone else lifted one); see `ferry status` and try again"
            )));
        }
        Ok(lifted)
    }

    fn freezes(&self, environment: Option<&str>, at: Timestamp) -> PortResult<Vec<Freeze>> {
        Ok(self
            .open_freezes(environment, at)?
            .into_iter()
            .map(|(f, _)| f)
            .collect())
    }

    /// The freeze (`freeze#ENV#FROM#SEQ`) and its `freeze_set` event in one transaction.
    fn freeze(&self, freeze: &Freeze) -> PortResult<Freeze> {
        let mut f = freeze.clone();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        f.id = f.from.0;
        let item = HashMap::from([
            (
                "deploymentId".into(),
                s(format!("freeze#{}#{:013}#{seq}", f.environment, f.from.0)),
            ),
            ("freezeEnvironment".into(), s(&f.environment)),
            ("until".into(), n(f.until.0)),
            ("record".into(), s(Self::encode("a freeze", &f)?)),
        ]);
        self.transact(
            vec![(item, None), (Self::event_item(&f.set_event())?, None)],
            "TransactWriteItems",
        )?;
        Ok(f)
    }

    /// CloudWatch's state of the alarm (`DescribeAlarms`), when it last changed.
    fn alarm_state(&self, alarm: &str) -> PortResult<Option<(AlarmState, String, Timestamp)>> {
        Ok(self
            .alarms
            .alarms(&[alarm.to_string()], None)?
            .into_iter()
            .find(|a| a.name == alarm)
            .map(|a| (a.state, a.reason, Timestamp(a.updated_ms.unwrap_or(0)))))
    }

    fn config(&self, digest: &str) -> PortResult<Option<String>> {
        Ok(self
            .get(&format!("config#{digest}"))?
            .and_then(|item| get_s(&item, "text").map(str::to_string)))
    }
}
