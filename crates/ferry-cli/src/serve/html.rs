//! The dashboard's HTML: escaping, the page frame (inline CSS, no outside resources —
//! the `Content-Security-Policy` forbids them), small formatting helpers and the
//! error pages. Every untrusted text (commit messages, authors, branch and step names,
//! reasons) goes through [`esc`] before it is written into a page.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ferry_core::Timestamp;
use ferry_core::time::human;
use std::fmt::Write as _;

/// What the dashboard's pages may load: only themselves (inline styles and scripts,
/// `fetch` to this server, inline SVG). Nothing from outside the machine.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `text` with `& < > " '` written as entities: safe in element content and in quoted
/// attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a query value or a path segment (unreserved characters
/// kept).
pub fn url(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `2026-11-26 14:03:07 UTC` (in a `<time>` element carrying the ISO instant).
pub fn when(t: Timestamp) -> String {
    let iso = ferry_core::events::iso8601(t);
    let shown = iso.get(..19).unwrap_or(&iso).replace('T', " ");
    format!(
        "<time datetime=\"{}\">{} UTC</time>",
        esc(&iso),
        esc(&shown)
    )
}

/// `when` for an optional instant, `—` when absent.
pub fn when_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_string(), when)
}

/// The time from `a` to `b` (or "running" when `b` is absent and `a` is not).
pub fn took(a: Option<Timestamp>, b: Option<Timestamp>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => human(b.since(a)),
        (Some(_), None) => "…".to_string(),
        _ => String::new(),
    }
}

/// A status word as a coloured badge (the class is chosen from a fixed list).
pub fn badge(status: &str) -> String {
    let class = match status {
        "succeeded" => "ok",
        "failed" | "rolled_back" | "cancelled" | "rollback_failed" => "bad",
        "running" | "in_progress" | "queued" => "run",
        "awaiting_approval" | "held" => "wait",
        _ => "idle",
    };
    format!(
        "<span class=\"badge {class}\">{}</span>",
        esc(&status.replace('_', " "))
    )
}

/// The first line of a commit message, at most `max` characters.
pub fn first_line(message: &str, max: usize) -> String {
    let line = message.lines().next().unwrap_or("");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// A whole page: the frame, the navigation, `body` (already HTML), and `script`
/// (inline JavaScript, already trusted).
pub fn page(title: &str, pipeline: &str, body: &str, script: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · ferry</title><style>{STYLE}</style></head><body>\
<header><a class=\"brand\" href=\"/\">ferry</a><span class=\"pipe\">{}</span>\
<nav><a href=\"/\">Overview</a><a href=\"/runs\">Runs</a><a href=\"/deployments\">Deployments</a><a href=\"/dora\">DORA</a></nav></header>\
<main>{body}</main>",
        esc(title),
        esc(pipeline)
    );
    if !script.is_empty() {
        let _ = write!(out, "<script>{script}</script>");
    }
    out.push_str("</body></html>");
    out
}

/// An HTML answer with the dashboard's headers.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// The error page: 404 for what does not exist, 400 for a bad address, 5xx with no
/// internal detail.
pub fn error_page(status: StatusCode, pipeline: &str, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Error",
    };
    let body = format!(
        "<section class=\"error\"><h1>{} — {}</h1><p>{}</p><p><a href=\"/\">Back to the overview</a></p></section>",
        status.as_u16(),
        title,
        esc(message)
    );
    respond(status, page(title, pipeline, &body, ""))
}

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--fg:#1d2330;--mut:#6b7280;--ok:#16794c;--bad:#b42318;--run:#1d4ed8;--wait:#b45309;--line:#e3e6ea}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:16px;align-items:center;padding:10px 20px;background:#111827;color:#fff}
header a{color:#e5e7eb;text-decoration:none;margin-right:14px}header .brand{font-weight:700;font-size:18px;color:#fff}
header .pipe{color:#9ca3af}nav{margin-left:auto}
main{max-width:1200px;margin:0 auto;padding:16px 20px}
h1{font-size:20px;margin:8px 0 12px}h2{font-size:16px;margin:20px 0 8px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:16px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:var(--mut);font-weight:600}
a{color:#1d4ed8}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
pre{background:#0f172a;color:#e2e8f0;padding:10px;border-radius:6px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:#6b7280}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.run{background:var(--run)}.badge.wait{background:var(--wait)}
.muted{color:var(--mut)}.flag{display:inline-block;margin-left:6px;padding:0 6px;border-radius:4px;font-size:12px;background:#fee4e2;color:var(--bad)}
.timeline{display:flex;gap:3px;flex-wrap:wrap}.stage{min-width:84px;padding:3px 6px;border-radius:4px;font-size:12px;color:#fff;background:#9ca3af}
.stage.ok{background:var(--ok)}.stage.bad{background:var(--bad)}.stage.run{background:var(--run)}.stage.wait{background:var(--wait)}.stage.idle{background:#cbd5e1;color:#334155}
.stage small{display:block;opacity:.85}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px;background:#fff}.card b{display:block;font-size:20px}
.pager{display:flex;gap:12px;margin-top:8px}.tabs a{margin-right:10px}.tabs a.on{font-weight:700;text-decoration:none;color:var(--fg)}
.approval input{padding:5px 8px;border:1px solid #cbd5e1;border-radius:5px;margin:3px 6px 3px 0}
button{padding:6px 14px;border:0;border-radius:5px;color:#fff;font-weight:600;cursor:pointer}
button.approve{background:var(--ok)}button.reject{background:var(--bad)}
#decision-result{margin-top:8px;font-weight:600}#decision-result.err{color:var(--bad)}
svg text{font-size:10px;fill:#6b7280}.error h1{color:var(--bad)}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_inert() {
        let s = esc("<script>alert('x')</script>\"&\u{7}");
        assert_eq!(
            s,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;\u{fffd}"
        );
        assert_eq!(url("a b/c#d"), "a%20b%2Fc%23d");
        assert_eq!(first_line("one\ntwo", 80), "one");
        assert_eq!(first_line("abcdef", 3), "abc…");
    }
}
