//! The SVG plot of BENCHMARKS.md: deliveries per second and latency from send, per server,
//! for each delivery scenario.

use std::{collections::BTreeMap, fmt::Write as _};

use herald_bench::Report;

use super::{outcome::Outcome, peers::Peer, render::group, scenarios::Scenario};

/// An SVG with one panel per delivery scenario: deliveries/s as bars, and latency from send
/// (p50, p99, p99.9) on a log scale, one row per server.
pub(super) fn plot(all: &BTreeMap<(Scenario, Peer), Outcome>) -> String {
    const WIDTH: f64 = 960.0;
    const ROW: f64 = 26.0;
    const LABEL: f64 = 170.0;
    const BARS: f64 = 330.0;
    const GAP: f64 = 40.0;
    const LAT: f64 = WIDTH - LABEL - BARS - GAP - 40.0;
    // Latency axis: 0.1 ms .. 100 s, log scale.
    let lat_x = |us: f64| {
        let decades = (us.max(100.0) / 100.0).log10().min(6.0);
        LABEL + BARS + GAP + decades / 6.0 * LAT
    };
    let mut body = String::new();
    let mut y = 10.0;
    for scenario in [Scenario::S1, Scenario::S1Max, Scenario::S2, Scenario::S4] {
        let rows: Vec<(Peer, Option<&Report>)> = Peer::ALL
            .into_iter()
            .filter_map(|p| all.get(&(scenario, p)).map(|v| (p, v.reports.get("run"))))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let max_rate = rows
            .iter()
            .filter_map(|(_, r)| per_sec(*r))
            .fold(1.0, f64::max);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-weight="bold">{}</text><text x="{LABEL}" y="{}">deliveries/s (max {})</text><text x="{}" y="{2}">latency from send: p50 ● p99 ◆ p99.9 ▲ (log scale)</text>"#,
            y + 14.0,
            scenario.title(),
            y + 32.0,
            group(max_rate.round() as u64),
            LABEL + BARS + GAP,
        );
        y += 42.0;
        let top = y;
        for (peer, r) in &rows {
            let _ = writeln!(
                body,
                r#"<text x="10" y="{}">{}</text>"#,
                y + 17.0,
                peer.title()
            );
            if let Some(rate) = per_sec(*r) {
                let w = rate / max_rate * BARS;
                let fill = if *peer == Peer::Herald {
                    "#d9480f"
                } else {
                    "#868e96"
                };
                let _ = writeln!(
                    body,
                    r#"<rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{fill}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
                    y + 4.0,
                    ROW - 8.0,
                    LABEL + w + 4.0,
                    y + 17.0,
                    group(rate.round() as u64),
                );
            } else {
                let _ = writeln!(
                    body,
                    r##"<text x="{LABEL}" y="{}" fill="#c92a2a">failed</text>"##,
                    y + 17.0
                );
            }
            if let Some(l) = r.and_then(|r| r.latency_us.as_ref()) {
                let l = &l.from_send;
                let (p50, p99, p999) = (l.p50 as f64, l.p99 as f64, l.p999 as f64);
                let cy = y + ROW / 2.0;
                let _ = writeln!(
                    body,
                    r##"<line x1="{:.1}" x2="{:.1}" y1="{cy}" y2="{cy}" stroke="#adb5bd"/><circle cx="{:.1}" cy="{cy}" r="4"/><rect x="{:.1}" y="{}" width="7" height="7" transform="rotate(45 {:.1} {cy})" fill="#1c7ed6"/><path d="M{:.1},{} l4,7 h-8 z" fill="#c92a2a"/>"##,
                    lat_x(p50),
                    lat_x(p999),
                    lat_x(p50),
                    lat_x(p99) - 3.5,
                    cy - 3.5,
                    lat_x(p99),
                    lat_x(p999),
                    cy - 4.0,
                );
            }
            y += ROW;
        }
        // Decade grid of the latency axis.
        for (i, label) in ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]
            .iter()
            .enumerate()
        {
            let x = LABEL + BARS + GAP + i as f64 / 6.0 * LAT;
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{y}" stroke="#e9ecef"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"##,
                y + 12.0
            );
        }
        y += 30.0;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

/// Deliveries per second of a run's report; `None` when the run failed.
fn per_sec(report: Option<&Report>) -> Option<f64> {
    Some(report?.deliveries.as_ref()?.per_sec)
}
