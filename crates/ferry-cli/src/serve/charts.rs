//! Small inline SVG charts for the dashboard's DORA page: no script, no outside
//! resource, a fixed size whatever the data.

use ferry_core::dora::Day;
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 140.0;
const PAD: f64 = 24.0;

/// Deployments per day as bars, the change failures of each day in red at their foot.
pub fn deployments_per_day(days: &[Day]) -> String {
    let max = days.iter().map(|d| d.deployments).max().unwrap_or(0).max(1) as f64;
    let n = days.len().max(1) as f64;
    let slot = (W - PAD) / n;
    let bar = (slot * 0.8).max(1.0);
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"deployments per day\" viewBox=\"0 0 {W} {H}\" width=\"100%\" preserveAspectRatio=\"none\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        out,
        "<line x1=\"{PAD}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#cbd5e1\"/><text x=\"0\" y=\"10\">{m}</text><text x=\"0\" y=\"{y}\">0</text>",
        y = H - PAD,
        m = max as usize
    );
    let plot = H - PAD - 12.0;
    for (i, d) in days.iter().enumerate() {
        let x = PAD + i as f64 * slot;
        let h = plot * d.deployments as f64 / max;
        let hf = plot * d.change_failures as f64 / max;
        let day = ferry_core::events::iso8601(d.start);
        let label = day.get(..10).unwrap_or("");
        let _ = write!(
            out,
            "<g><title>{label}: {} deployments, {} change failures</title><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"#16794c\"/><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hf:.1}\" fill=\"#b42318\"/></g>",
            d.deployments,
            d.change_failures,
            H - PAD - h,
            H - PAD - hf,
        );
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let a = ferry_core::events::iso8601(first.start);
        let b = ferry_core::events::iso8601(last.start);
        let _ = write!(
            out,
            "<text x=\"{PAD}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            H - 8.0,
            a.get(..10).unwrap_or(""),
            W,
            H - 8.0,
            b.get(..10).unwrap_or("")
        );
    }
    out.push_str("</svg>");
    out
}

/// A rate per window as horizontal bars (`label`, rate in [0, 1] or no data).
pub fn rates(rows: &[(String, Option<f64>)], colour: &str) -> String {
    let h = 18.0 * rows.len() as f64 + 4.0;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 320 {h}\" width=\"320\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, (label, r)) in rows.iter().enumerate() {
        let y = 4.0 + 18.0 * i as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 11.0,
            crate::serve::html::esc(label)
        );
        match r {
            Some(r) => {
                let w = 200.0 * r.clamp(0.0, 1.0);
                let _ = write!(
                    out,
                    "<rect x=\"70\" y=\"{y:.1}\" width=\"200\" height=\"12\" fill=\"#e5e7eb\"/><rect x=\"70\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"12\" fill=\"{colour}\"/><text x=\"276\" y=\"{:.1}\">{:.0}%</text>",
                    y + 11.0,
                    r * 100.0
                );
            }
            None => {
                let _ = write!(out, "<text x=\"70\" y=\"{:.1}\">no data</text>", y + 11.0);
            }
        }
    }
    out.push_str("</svg>");
    out
}
