//! The notification outbox (tables `outbox_cursors`, `outbox`, migration 11): a cursor
//! per channel over the events table, and one row per event owed to a channel, written
//! in the same transaction as the cursor moves. Event ids only grow (AUTOINCREMENT) and
//! SQLite has one writer at a time, so every event committed at or below a cursor was
//! seen by it: none is skipped, none enqueued twice.

use crate::error::{Fallible, bad};
use ferry_core::notify::{
    DeliveryStatus, OutboxChannel, OutboxCounts, OutboxFilter, OutboxItem, Settle,
};
use ferry_core::{Event, EventKind, RunId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, Transaction, params, params_from_iter};
use std::collections::BTreeMap;

const ITEM_COLUMNS: &str = "o.id, o.channel, o.event_id, o.status, o.attempts, o.rounds, o.next_at, o.last_error, o.delivered_at,
     e.at, e.kind, e.run_id, e.environment, e.message, e.data_json";

fn item(r: &Row<'_>) -> Fallible<OutboxItem> {
    let status: String = r.get(3)?;
    let kind: String = r.get(10)?;
    let data: String = r.get(14)?;
    let count = |i: usize, column: &'static str| -> Fallible<u32> {
        let n: i64 = r.get(i)?;
        u32::try_from(n).map_err(|_| bad("outbox", column, n.to_string()))
    };
    Ok(OutboxItem {
        id: r.get(0)?,
        channel: r.get(1)?,
        event_id: r.get(2)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| bad("outbox", "status", status))?,
        attempts: count(4, "attempts")?,
        rounds: count(5, "rounds")?,
        next_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        last_error: r.get(7)?,
        delivered_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        event: Event {
            at: Timestamp(r.get(9)?),
            kind: EventKind::parse(&kind).ok_or_else(|| bad("events", "kind", kind))?,
            run: r.get::<_, Option<i64>>(11)?.map(RunId),
            environment: r.get(12)?,
            message: r.get(13)?,
            data: serde_json::from_str(&data).map_err(|_| bad("events", "data_json", data))?,
        },
    })
}

fn items(tx: &Transaction<'_>, sql: &str, args: Vec<Value>) -> Fallible<Vec<OutboxItem>> {
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(item(r)?);
    }
    Ok(out)
}

pub(crate) fn fill(
    tx: &Transaction<'_>,
    channels: &[OutboxChannel],
    now: Timestamp,
) -> Fallible<usize> {
    let newest: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let mut added = 0;
    for c in channels {
        let cursor: Option<i64> = tx
            .query_row(
                "SELECT event_id FROM outbox_cursors WHERE channel = ?1",
                [&c.id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(cursor) = cursor else {
            // A new channel starts at the newest event: no old history.
            tx.execute(
                "INSERT INTO outbox_cursors (channel, event_id) VALUES (?1, ?2)",
                params![c.id, newest],
            )?;
            continue;
        };
        if cursor >= newest {
            continue;
        }
        let mut stmt =
            tx.prepare("SELECT id, kind FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id")?;
        let mut rows = stmt.query(params![cursor, newest])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let kind: String = r.get(1)?;
            if c.kinds.contains(&kind) {
                added += tx.execute(
                    "INSERT OR IGNORE INTO outbox (channel, event_id, status, next_at, created_at)
                     VALUES (?1, ?2, 'pending', ?3, ?3)",
                    params![c.id, id, now.0],
                )?;
            }
        }
        tx.execute(
            "UPDATE outbox_cursors SET event_id = ?2 WHERE channel = ?1",
            params![c.id, newest],
        )?;
    }
    Ok(added)
}

/// Whether [`fill`] has anything to do: a channel without a cursor, or one behind the
/// newest event.
pub(crate) fn fill_needed(tx: &Transaction<'_>, channels: &[OutboxChannel]) -> Fallible<bool> {
    let newest: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    for c in channels {
        let cursor: Option<i64> = tx
            .query_row(
                "SELECT event_id FROM outbox_cursors WHERE channel = ?1",
                [&c.id],
                |r| r.get(0),
            )
            .optional()?;
        if cursor.is_none_or(|cur| cur < newest) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether any delivery of `channels` is due at `now` ([`claim`] would find one).
pub(crate) fn any_due(tx: &Transaction<'_>, channels: &[String], now: Timestamp) -> Fallible<bool> {
    for c in channels {
        let due: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = ?1 AND status IN ('pending', 'dead')
                 AND next_at IS NOT NULL AND next_at <= ?2)",
            params![c, now.0],
            |r| r.get(0),
        )?;
        if due {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(crate) fn claim(
    tx: &Transaction<'_>,
    channels: &[String],
    now: Timestamp,
    until: Timestamp,
    limit: usize,
) -> Fallible<Vec<OutboxItem>> {
    let mut found = Vec::new();
    for c in channels {
        if found.len() >= limit {
            break;
        }
        // In order: only the channel's oldest pending delivery may go, and only when due;
        // the ones behind it wait for it (a status sent late never overwrites a newer one).
        let head = items(
            tx,
            &format!(
                "SELECT {ITEM_COLUMNS} FROM outbox o JOIN events e ON e.id = o.event_id
                 WHERE o.channel = ? AND o.status = 'pending' ORDER BY o.id LIMIT 1"
            ),
            vec![Value::Text(c.clone())],
        )?;
        found.extend(
            head.into_iter()
                .filter(|i| i.next_at.is_some_and(|t| t <= now)),
        );
        if found.len() >= limit {
            break;
        }
        // Dead letters whose automatic retry is due do not wait for anything.
        let left = i64::try_from(limit - found.len()).unwrap_or(i64::MAX);
        found.extend(items(
            tx,
            &format!(
                "SELECT {ITEM_COLUMNS} FROM outbox o JOIN events e ON e.id = o.event_id
                 WHERE o.channel = ? AND o.status = 'dead' AND o.next_at IS NOT NULL AND o.next_at <= ?
                 ORDER BY o.id LIMIT ?"
            ),
            vec![Value::Text(c.clone()), Value::Integer(now.0), Value::Integer(left)],
        )?);
    }
    for i in &found {
        tx.execute(
            "UPDATE outbox SET next_at = ?2 WHERE id = ?1",
            params![i.id, until.0],
        )?;
    }
    Ok(found)
}

pub(crate) fn settle(tx: &Transaction<'_>, id: i64, s: &Settle, now: Timestamp) -> Fallible<()> {
    tx.execute(
        "UPDATE outbox SET status = ?2, attempts = ?3, rounds = ?4, next_at = ?5, last_error = ?6, delivered_at = ?7
         WHERE id = ?1",
        params![
            id,
            s.status.as_str(),
            i64::from(s.attempts),
            i64::from(s.rounds),
            s.next_at.map(|t| t.0),
            s.last_error,
            s.delivered_at.map(|t| t.0),
        ],
    )?;
    if s.status == DeliveryStatus::Delivered {
        tx.execute(
            "UPDATE outbox SET next_at = ?2
             WHERE status = 'dead' AND next_at > ?2
               AND channel = (SELECT channel FROM outbox WHERE id = ?1)",
            params![id, now.0],
        )?;
    }
    Ok(())
}

pub(crate) fn list(tx: &Transaction<'_>, f: &OutboxFilter) -> Fallible<Vec<OutboxItem>> {
    let mut sql = format!(
        "SELECT {ITEM_COLUMNS} FROM outbox o JOIN events e ON e.id = o.event_id WHERE 1 = 1"
    );
    let mut args = Vec::new();
    if let Some(s) = f.status {
        sql.push_str(" AND o.status = ?");
        args.push(Value::Text(s.as_str().into()));
    }
    if let Some(c) = &f.channel {
        sql.push_str(" AND o.channel = ?");
        args.push(Value::Text(c.clone()));
    }
    sql.push_str(" ORDER BY o.id DESC LIMIT ?");
    args.push(Value::Integer(
        f.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
    ));
    items(tx, &sql, args)
}

pub(crate) fn retry(
    tx: &Transaction<'_>,
    channel: Option<&str>,
    ids: &[i64],
    now: Timestamp,
) -> Fallible<usize> {
    if !ids.is_empty() {
        let mut n = 0;
        for id in ids {
            n += tx.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?2
                 WHERE id = ?1 AND status != 'delivered' AND (?3 IS NULL OR channel = ?3)",
                params![id, now.0, channel],
            )?;
        }
        return Ok(n);
    }
    Ok(tx.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?1
         WHERE status = 'dead' AND (?2 IS NULL OR channel = ?2)",
        params![now.0, channel],
    )?)
}

pub(crate) fn counts(tx: &Transaction<'_>) -> Fallible<Vec<OutboxCounts>> {
    let mut out: BTreeMap<String, OutboxCounts> = BTreeMap::new();
    let mut stmt = tx.prepare("SELECT channel FROM outbox_cursors")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let channel: String = r.get(0)?;
        out.insert(
            channel.clone(),
            OutboxCounts {
                channel,
                ..OutboxCounts::default()
            },
        );
    }
    let mut stmt =
        tx.prepare("SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let channel: String = r.get(0)?;
        let status: String = r.get(1)?;
        let n: i64 = r.get(2)?;
        let n = u64::try_from(n).unwrap_or(0);
        let c = out.entry(channel.clone()).or_insert_with(|| OutboxCounts {
            channel,
            ..OutboxCounts::default()
        });
        match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::Pending) => c.pending += n,
            Some(DeliveryStatus::Dead) => c.dead += n,
            Some(DeliveryStatus::Delivered) => c.delivered += n,
            None => return Err(bad("outbox", "status", status)),
        }
    }
    Ok(out.into_values().collect())
}
