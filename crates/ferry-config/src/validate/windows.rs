//! `windows:` of an environment: time zone, `allow` and `deny` ranges, each problem with
//! its position and the fix (a child module of the validator, so it shares its helpers).

use super::{Checker, Map, closest, sub_loc};
use crate::windows::{DAY_NAMES, WeekRange, Windows, parse_range, parse_span};
use crate::yaml::{Kind, Node, Pos, ellipsize};

const WINDOWS_KEYS: &[&str] = &["timezone", "allow", "deny"];
const SPAN_KEYS: &[&str] = &["from", "to"];
const RANGE_HELP: &str = "write a range like `Mon-Fri 08:00-18:00`, `Fri 15:00 - Mon 08:00` or `{ from: \"Fri 15:00\", to: \"Mon 08:00\" }` (days Mon..Sun, 24-hour times)";

impl Checker<'_> {
    /// `windows: { timezone: Europe/Berlin, allow: [..], deny: [..] }`. `Some(None)` when
    /// the environment has none, `None` when it is unusable.
    pub(super) fn windows(&mut self, env: &Map<'_>, label: &str) -> Option<Option<Windows>> {
        let Some(e) = env.get("windows") else {
            return Some(None);
        };
        let loc = format!("in `windows` of {label}");
        let m = self.map(
            e.value,
            e.pos(),
            &format!("`windows` of {label}"),
            &loc,
            WINDOWS_KEYS,
        )?;
        let mut ok = true;
        let mut w = Windows::default();
        if let Some(tz) = self.text(&m, "timezone", &loc, "Europe/Berlin") {
            let pos = m.get("timezone").map_or(m.pos, |e| e.pos());
            match jiff::tz::db().get(&tz) {
                Ok(zone) => w.timezone = zone.iana_name().unwrap_or(&tz).to_string(),
                Err(_) => {
                    self.unknown_zone(&tz, pos, &loc);
                    ok = false;
                }
            }
        } else if m.get("timezone").is_some() {
            ok = false;
        }
        for (key, out) in [("allow", &mut w.allow), ("deny", &mut w.deny)] {
            let Some(e) = m.get(key) else { continue };
            let Some(items) = self.list(e, &loc) else {
                ok = false;
                continue;
            };
            let item_loc = sub_loc(key, &loc);
            for item in items {
                match self.range(item, &item_loc) {
                    Some(ranges) => out.extend(ranges),
                    None => ok = false,
                }
            }
        }
        if !ok {
            return None;
        }
        if !w.ever_open() {
            self.report(
                e.key_pos,
                format!("the `windows` of {label} never open: `deny` covers every time `allow` leaves"),
                "shorten a `deny` range or widen `allow`; to stop deployments for a while, use `ferry freeze` instead",
            );
            return None;
        }
        Some(Some(w))
    }

    fn unknown_zone(&mut self, tz: &str, pos: Pos, loc: &str) {
        let names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_string())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Compare a city alone too: `Berlni` → `Europe/Berlin`.
        let suggestion = closest(tz, &refs).or_else(|| {
            let city = tz.rsplit('/').next().unwrap_or(tz);
            refs.iter()
                .filter_map(|n| n.rsplit_once('/').map(|(_, c)| (c, *n)))
                .find(|(c, _)| closest(city, &[c]).is_some())
                .map(|(_, n)| n)
        });
        let help = match suggestion {
            Some(s) => format!("did you mean `{s}`? write an IANA time zone name"),
            None => {
                "write an IANA time zone name like `Europe/Berlin`, `America/New_York` or `UTC`"
                    .to_string()
            }
        };
        self.report(
            pos,
            format!("unknown time zone `{}` {loc}", ellipsize(tz)),
            help,
        );
    }

    /// One item of `allow` or `deny`: a text range or `{ from, to }`.
    fn range(&mut self, item: &Node, loc: &str) -> Option<Vec<WeekRange>> {
        let result = match &item.kind {
            Kind::Map(_) => {
                let what = format!("a range {loc}");
                let m = self.map(item, item.pos, &what, loc, SPAN_KEYS)?;
                let from = self.req_text(&m, "from", loc, "from: \"Fri 15:00\"");
                let to = self.req_text(&m, "to", loc, "to: \"Mon 08:00\"");
                let (from, to) = (from?, to?);
                parse_span(&from, &to).map(|r| vec![r])
            }
            _ => {
                let text = self.text_of(
                    item,
                    item.pos,
                    &format!("a range {loc}"),
                    "Mon-Fri 08:00-18:00",
                )?;
                parse_range(&text)
            }
        };
        match result {
            Ok(r) => Some(r),
            Err(why) => {
                let help = day_hint(&why).unwrap_or_else(|| RANGE_HELP.to_string());
                self.report(item.pos, format!("invalid range {loc}: {why}"), help);
                None
            }
        }
    }
}

/// A did-you-mean for a misspelt day (`Fry` → `Fri`).
fn day_hint(why: &str) -> Option<String> {
    let word = why.strip_prefix('`')?.split('`').next()?;
    if !why.contains("is not a day of the week") {
        return None;
    }
    let guess = closest(word, &DAY_NAMES)?;
    Some(format!(
        "did you mean `{guess}`? days are written Mon, Tue, Wed, Thu, Fri, Sat, Sun"
    ))
}
