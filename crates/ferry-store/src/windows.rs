//! Freezes and break-glass overrides (tables `freezes`, `break_glass`, migration 6): each
//! write appends its event in the same transaction.

use crate::error::Fallible;
use crate::insert_event;
use ferry_core::window::{self, BreakGlass, Freeze};
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::PortError;
use rusqlite::{OptionalExtension, Row, Transaction, params};

const FREEZE_COLUMNS: &str =
    "id, environment, from_at, until_at, reason, by_whom, lifted_at, lifted_by";
const OVERRIDE_COLUMNS: &str =
    "id, run_id, environment, reason, requested_by, requested_at, confirmed_by, confirmed_at";

fn freeze_row(r: &Row<'_>) -> rusqlite::Result<Freeze> {
    Ok(Freeze {
        id: r.get(0)?,
        environment: r.get(1)?,
        from: Timestamp(r.get(2)?),
        until: Timestamp(r.get(3)?),
        reason: r.get(4)?,
        by: r.get(5)?,
        lifted_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        lifted_by: r.get(7)?,
    })
}

fn override_row(r: &Row<'_>) -> rusqlite::Result<BreakGlass> {
    Ok(BreakGlass {
        id: r.get(0)?,
        run: RunId(r.get(1)?),
        environment: r.get(2)?,
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        requested_at: Timestamp(r.get(5)?),
        confirmed_by: r.get(6)?,
        confirmed_at: r.get::<_, Option<i64>>(7)?.map(Timestamp),
    })
}

pub(crate) fn freeze(tx: &Transaction<'_>, f: &Freeze) -> Fallible<Freeze> {
    tx.execute(
        "INSERT INTO freezes (environment, from_at, until_at, reason, by_whom) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![f.environment, f.from.0, f.until.0, f.reason, f.by],
    )?;
    let mut out = f.clone();
    out.id = tx.last_insert_rowid();
    out.lifted_at = None;
    out.lifted_by = None;
    insert_event(tx, &out.set_event())?;
    Ok(out)
}

pub(crate) fn freezes(
    tx: &Transaction<'_>,
    environment: Option<&str>,
    at: Timestamp,
) -> Fallible<Vec<Freeze>> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {FREEZE_COLUMNS} FROM freezes
         WHERE (?1 IS NULL OR environment = ?1) AND until_at > ?2
           AND (lifted_at IS NULL OR lifted_at > ?2)
         ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![environment, at.0], freeze_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn unfreeze(
    tx: &Transaction<'_>,
    environment: &str,
    by: &str,
    at: Timestamp,
) -> Fallible<Vec<Freeze>> {
    let mut lifted = freezes(tx, Some(environment), at)?;
    if lifted.is_empty() {
        return Err(PortError::not_found(window::not_frozen(environment)).into());
    }
    for f in &mut lifted {
        tx.execute(
            "UPDATE freezes SET lifted_at = ?2, lifted_by = ?3 WHERE id = ?1",
            params![f.id, at.0, by],
        )?;
        f.lifted_at = Some(at);
        f.lifted_by = Some(by.to_string());
        insert_event(tx, &f.lifted_event())?;
    }
    Ok(lifted)
}

fn override_of(
    tx: &Transaction<'_>,
    run: RunId,
    environment: &str,
) -> Fallible<Option<BreakGlass>> {
    Ok(tx
        .query_row(
            &format!(
                "SELECT {OVERRIDE_COLUMNS} FROM break_glass WHERE run_id = ?1 AND environment = ?2"
            ),
            params![run.0, environment],
            override_row,
        )
        .optional()?)
}

pub(crate) fn request_override(tx: &Transaction<'_>, o: &BreakGlass) -> Fallible<BreakGlass> {
    if let Some(earlier) = override_of(tx, o.run, &o.environment)? {
        return Err(PortError::conflict(earlier.already_requested()).into());
    }
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM runs WHERE id = ?1", [o.run.0], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(PortError::not_found(format!("run {} does not exist", o.run)).into());
    }
    tx.execute(
        "INSERT INTO break_glass (run_id, environment, reason, requested_by, requested_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![o.run.0, o.environment, o.reason, o.requested_by, o.requested_at.0],
    )?;
    let mut out = o.clone();
    out.id = tx.last_insert_rowid();
    out.confirmed_by = None;
    out.confirmed_at = None;
    insert_event(tx, &out.requested_event())?;
    Ok(out)
}

pub(crate) fn confirm_override(
    tx: &Transaction<'_>,
    run: RunId,
    environment: &str,
    by: &str,
    at: Timestamp,
) -> Fallible<BreakGlass> {
    let Some(mut o) = override_of(tx, run, environment)? else {
        return Err(PortError::not_found(window::not_requested(run, environment)).into());
    };
    if let Some(why) = o.refuse_confirmation(by) {
        return Err(PortError::conflict(why).into());
    }
    tx.execute(
        "UPDATE break_glass SET confirmed_by = ?2, confirmed_at = ?3 WHERE id = ?1",
        params![o.id, by, at.0],
    )?;
    o.confirmed_by = Some(by.to_string());
    o.confirmed_at = Some(at);
    insert_event(tx, &o.confirmed_event())?;
    Ok(o)
}

pub(crate) fn overrides(tx: &Transaction<'_>, run: RunId) -> Fallible<Vec<BreakGlass>> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {OVERRIDE_COLUMNS} FROM break_glass WHERE run_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([run.0], override_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
