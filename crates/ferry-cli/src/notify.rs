//! Notifications in the `ferry` binary: the dispatcher started beside a foreground run
//! (`ferry run`, `ferry demo`) and in `ferry serve`, and `ferry notify list|retry`.
//! The outbox is in the store (`ferry_engine::notify`, DESIGN invariant 4); what one
//! process does not deliver stays there for the next.

use crate::context::{Project, SystemClock};
use crate::error::CliResult;
use crate::output::{json, line, out, table, when};
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::notify::{DeliveryStatus, OutboxFilter, OutboxItem};
use ferry_engine::notify::{Dispatcher, Running};
use ferry_engine::ports::{Clock, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How often a running dispatcher looks for due deliveries.
pub const EVERY: Duration = Duration::from_millis(500);
/// How long a foreground command waits at its end for the outbox to empty.
pub const FLUSH: Duration = Duration::from_secs(10);

/// The repository's web address for commit links: `source.repository`, else the
/// origin remote when it is on GitHub or GitLab.
fn repository(project: &Project, pipeline: &Pipeline) -> Option<String> {
    pipeline.source.repository.clone().or_else(|| {
        use ferry_engine::ports::Source as _;
        ferry_local::GitSource::open(&project.root)
            .ok()
            .and_then(|s| s.origin_url())
            .and_then(|u| ferry_core::approval::web_repository(&u))
    })
}

/// A dispatcher for the pipeline's channels over its own connection to the store, or
/// `None` when the file has no `notifications:`.
pub fn dispatcher(project: &Project, pipeline: &Pipeline) -> CliResult<Option<Arc<Dispatcher>>> {
    if pipeline.notifications.is_empty() {
        return Ok(None);
    }
    dispatcher_over(
        project,
        pipeline,
        Arc::new(project.open_store()?),
        Vec::new(),
    )
}

/// [`dispatcher`] over a given store (`ferry step`: the stage's own record), with
/// `extra` channels besides the file's (`ferry step`: the stack's SNS topics).
fn dispatcher_over(
    project: &Project,
    pipeline: &Pipeline,
    store: Arc<dyn Store>,
    extra: Vec<Arc<dyn ferry_engine::ports::Notifier>>,
) -> CliResult<Option<Arc<Dispatcher>>> {
    if pipeline.notifications.is_empty() && extra.is_empty() {
        return Ok(None);
    }
    let options = ferry_notify::Options::new(&pipeline.name, repository(project, pipeline));
    let mut channels = ferry_notify::channels(pipeline, &options);
    channels.extend(extra);
    let d = Dispatcher::new(store, Arc::new(SystemClock), channels);
    // The channels' cursors exist before the command records anything: a channel new
    // to this store starts here, and gets every event from now on.
    d.fill()?;
    Ok(Some(Arc::new(d)))
}

/// Starts delivering on a background thread while a foreground command works. A
/// store that cannot be opened for it is reported and the command goes on: the events
/// stay in the outbox for the next ferry process.
pub fn start(project: &Project, pipeline: &Pipeline) -> Option<Running> {
    match dispatcher(project, pipeline) {
        Ok(d) => d.map(|d| d.spawn(EVERY)),
        Err(e) => {
            crate::elog!(
                Warn,
                "ferry: notifications are not sent by this process: {}",
                e.message
            );
            None
        }
    }
}

/// [`start`] over the SQLite file at `db` (`ferry step`: a stage's record, where its
/// events and outbox are).
pub fn start_over(
    project: &Project,
    pipeline: &Pipeline,
    db: &std::path::Path,
    extra: Vec<Arc<dyn ferry_engine::ports::Notifier>>,
) -> Option<Running> {
    let opened = ferry_store::SqliteStore::open(db)
        .map_err(crate::error::CliError::from)
        .and_then(|s| {
            s.set_redactor(crate::log::redactor());
            dispatcher_over(project, pipeline, Arc::new(s), extra)
        });
    match opened {
        Ok(d) => d.map(|d| d.spawn(EVERY)),
        Err(e) => {
            crate::elog!(
                Warn,
                "ferry: notifications are not sent by this process: {}",
                e.message
            );
            None
        }
    }
}

/// [`start`] for a command that loads the pipeline itself (`ferry rollback`, `ferry
/// alarm`): nothing when the file cannot be read (the command reports that).
pub fn start_for(project: &Project) -> Option<Running> {
    let (pipeline, _) = project.load().ok()?;
    start(project, &pipeline)
}

/// Stops the background dispatcher after flushing for at most [`FLUSH`]; says on
/// stderr what is left (it stays in the outbox).
pub fn finish(running: Option<Running>) {
    let Some(r) = running else { return };
    let d = Arc::clone(r.dispatcher());
    match r.finish(FLUSH) {
        Ok(0) => {}
        Ok(n) => crate::elog!(
            Warn,
            "ferry: {n} notification(s) not delivered yet; they stay in the outbox for `ferry serve` or the next command (`ferry notify list`)"
        ),
        Err(e) => crate::elog!(Error, "ferry: notifications: {}", e.message),
    }
    if let Ok(dead) = d.dead()
        && dead > 0
    {
        crate::elog!(
            Warn,
            "ferry: {dead} notification(s) are dead letters (`ferry notify list --dead`; `ferry notify retry` sends them again)"
        );
    }
}

/// One delivery as `ferry notify list --json` and `GET /api/notifications` show it.
pub fn item_json(i: &OutboxItem) -> serde_json::Value {
    json!({
        "id": i.id,
        "channel": i.channel,
        "eventId": i.event_id,
        "event": i.event.kind.as_str(),
        "environment": i.event.environment,
        "run": i.event.run.map(|r| r.0),
        "message": i.event.message,
        "status": i.status.as_str(),
        "attempts": i.attempts,
        "rounds": i.rounds,
        "nextAttemptAt": i.next_at.map(|t| t.millis()),
        "lastError": i.last_error,
        "deliveredAt": i.delivered_at.map(|t| t.millis()),
    })
}

/// The outbox summary: counts per channel, and the undelivered deliveries (dead
/// letters first), at most `limit`.
pub fn summary(
    store: &dyn Store,
    dead_only: bool,
    channel: Option<&str>,
    limit: usize,
) -> CliResult<serde_json::Value> {
    let counts = store.outbox_counts()?;
    let mut items: Vec<OutboxItem> = Vec::new();
    let statuses: &[DeliveryStatus] = if dead_only {
        &[DeliveryStatus::Dead]
    } else {
        &[DeliveryStatus::Dead, DeliveryStatus::Pending]
    };
    for s in statuses {
        items.extend(store.outbox(&OutboxFilter {
            status: Some(*s),
            channel: channel.map(str::to_string),
            limit: Some(limit),
        })?);
    }
    items.truncate(limit);
    Ok(json!({
        "channels": counts,
        "deliveries": items.iter().map(item_json).collect::<Vec<_>>(),
    }))
}

/// `ferry notify list [--dead] [--channel ID]`.
pub fn list(
    project: &Project,
    dead: bool,
    channel: Option<&str>,
    limit: usize,
    as_json: bool,
) -> CliResult<i32> {
    let (pipeline, _) = project.load()?;
    if let Some(c) = channel {
        known_channel(&pipeline, c)?;
    }
    let store = project.open_store()?;
    let v = summary(&store, dead, channel, limit)?;
    if as_json {
        json(&v);
        return Ok(exit::OK);
    }
    let counts = store.outbox_counts()?;
    if pipeline.notifications.is_empty() && counts.is_empty() {
        line("no notification channels: add `notifications:` to ferry.yml (see `ferry init`)");
        return Ok(exit::OK);
    }
    let mut rows = vec![vec![
        "CHANNEL".to_string(),
        "KIND".into(),
        "PENDING".into(),
        "DEAD".into(),
        "DELIVERED".into(),
    ]];
    for c in &counts {
        let kind = pipeline
            .notifications
            .iter()
            .find(|n| n.id() == c.channel)
            .map_or("(no longer in ferry.yml)", |n| n.kind());
        rows.push(vec![
            c.channel.clone(),
            kind.to_string(),
            c.pending.to_string(),
            c.dead.to_string(),
            c.delivered.to_string(),
        ]);
    }
    out(&table(&rows));
    let mut rows = vec![vec![
        "ID".to_string(),
        "CHANNEL".into(),
        "EVENT".into(),
        "STATUS".into(),
        "ATTEMPTS".into(),
        "NEXT".into(),
        "LAST ERROR".into(),
    ]];
    let mut items = Vec::new();
    for s in if dead {
        vec![DeliveryStatus::Dead]
    } else {
        vec![DeliveryStatus::Dead, DeliveryStatus::Pending]
    } {
        items.extend(store.outbox(&OutboxFilter {
            status: Some(s),
            channel: channel.map(str::to_string),
            limit: Some(limit),
        })?);
    }
    items.truncate(limit);
    let waiting: u64 = counts
        .iter()
        .filter(|c| channel.is_none_or(|ch| ch == c.channel))
        .map(|c| if dead { c.dead } else { c.dead + c.pending })
        .sum();
    if items.is_empty() && waiting > 0 {
        // Only `--limit 0` lists nothing while something waits.
        line(format!(
            "
{waiting} deliver{} waiting; `--limit {waiting}` lists them",
            if waiting == 1 { "y" } else { "ies" }
        ));
        return Ok(exit::OK);
    }
    if items.is_empty() {
        line(if dead {
            "\nno dead letters"
        } else {
            "\nnothing waiting: every notification was delivered"
        });
        return Ok(exit::OK);
    }
    for i in &items {
        rows.push(vec![
            i.id.to_string(),
            i.channel.clone(),
            format!("{} #{}", i.event.kind, i.event_id),
            i.status.as_str().to_string(),
            i.attempts.to_string(),
            i.next_at
                .map_or_else(|| "`ferry notify retry`".to_string(), |t| when(t.millis())),
            i.last_error
                .clone()
                .unwrap_or_default()
                .chars()
                .take(100)
                .collect(),
        ]);
    }
    line("");
    out(&table(&rows));
    Ok(exit::OK)
}

/// The channel id must be one of the pipeline's (or one the outbox still holds).
fn known_channel(pipeline: &Pipeline, id: &str) -> CliResult<()> {
    let ids: Vec<String> = pipeline.notifications.iter().map(|n| n.id()).collect();
    if ids.iter().any(|i| i == id) {
        return Ok(());
    }
    let shown = if ids.is_empty() {
        "ferry.yml has no `notifications:`".to_string()
    } else {
        format!(
            "the channels are {}",
            ids.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(crate::error::CliError::new(
        exit::NOT_FOUND,
        format!("no notification channel `{id}`: {shown} (`ferry notify list` shows them)"),
    ))
}

/// Makes dead letters (or the deliveries `ids`) due now, as a fresh round. Returns how
/// many.
pub fn requeue(
    pipeline: &Pipeline,
    store: &dyn Store,
    channel: Option<&str>,
    ids: &[i64],
) -> CliResult<usize> {
    if let Some(c) = channel {
        known_channel(pipeline, c)?;
    }
    Ok(store.outbox_retry(channel, ids, SystemClock.now())?)
}

/// `ferry notify retry [--channel ID] [ID…]`: dead letters due again now, then sent
/// at once by this process (for at most [`FLUSH`]).
pub fn retry(
    project: &Project,
    channel: Option<&str>,
    ids: &[i64],
    as_json: bool,
) -> CliResult<i32> {
    let (pipeline, _) = project.load()?;
    let store = project.open_store()?;
    let n = requeue(&pipeline, &store, channel, ids)?;
    if !ids.is_empty() && n < ids.len() {
        let missing = ids.len() - n;
        crate::elog!(
            Warn,
            "ferry: {missing} of the ids given are delivered already or not in the outbox"
        );
    }
    let (left, dead) = match dispatcher(project, &pipeline)? {
        Some(d) => (d.flush(FLUSH)?, d.dead()?),
        None => (0, 0),
    };
    let counts = store.outbox_counts()?;
    let delivered: u64 = counts.iter().map(|c| c.delivered).sum();
    if as_json {
        json(
            &json!({"requeued": n, "pending": left, "dead": dead, "delivered": delivered, "channels": counts}),
        );
    } else {
        line(format!(
            "{n} notification(s) sent again; {left} still pending, {dead} dead letter(s)"
        ));
    }
    Ok(if dead > 0 || left > 0 {
        exit::RUN_FAILED
    } else {
        exit::OK
    })
}
