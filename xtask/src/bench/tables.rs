//! The tables of BENCHMARKS.md, one kind per scenario: delivery runs (S1, S1-max, S2, S4),
//! idle memory (S3), the reconnect storm (S5) and publish throughput (S6).

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use herald_bench::report::Subscribers;

use super::{
    outcome::Outcome,
    peers::Peer,
    procs::TreeSample,
    render::{kib, ms, num, out_of_order, ratio},
    scenarios::Scenario,
};

/// S5: one row per server that ran, then the servers that cannot resume.
pub(super) fn render_storm(s: &mut String, rows: &[(Peer, &Outcome)]) -> Result<()> {
    writeln!(
        s,
        "| server | connected, in | reconnected / failed | all caught up | catch-up p50 / p99 (ms) | subscribers with loss (most lost) | lost / dup / out of order |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    for (peer, v) in rows {
        let Some(r) = v.reports.get("run") else {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | |",
                peer.title(),
                v.error.as_deref().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        };
        let sub = &r.subscribers;
        let d = r.deliveries.clone().unwrap_or_default();
        let rc = r.reconnect.clone().unwrap_or_default();
        let connected = format!(
            "{} / {} in {:.1} s",
            num(sub.connected),
            num(sub.requested),
            sub.connect_s
        );
        let mut reconnected = format!("{} / {}", num(rc.reconnected), num(rc.failed));
        if let Some(sample) = rc.failure_samples.first() {
            write!(reconnected, " ({})", sample.replace('|', "/"))?;
        }
        let caught_up = match rc.all_caught_up_s {
            Some(secs) => format!("{secs:.2} s"),
            None => format!(
                "**no**: {} of {} within 15 s",
                num(rc.caught_up),
                num(rc.dropped),
            ),
        };
        let mut caught_up = caught_up;
        if rc.listen_overflows.unwrap_or(0) > 0 {
            write!(
                caught_up,
                " ({} SYNs dropped by full accept queues)",
                num(rc.listen_overflows)
            )?;
        }
        let mut loss = format!(
            "{} / {} / {}",
            num(d.lost),
            num(d.duplicated),
            out_of_order(&d, v.classified("run"))
        );
        let events = r.events.clone().unwrap_or_default();
        if events.errors > 0 || events.unsent > 0 {
            write!(
                loss,
                " ({} publish errors, {} unsent)",
                num(events.errors),
                num(events.unsent)
            )?;
        }
        if r.limits.duration_limit_hit {
            loss.push_str(" (duration limit hit)");
        }
        let catch_up = if rc.catch_up_us.count == 0 {
            "none caught up".to_owned()
        } else {
            format!("{} / {}", ms(rc.catch_up_us.p50), ms(rc.catch_up_us.p99))
        };
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} |",
            peer.title(),
            connected,
            reconnected,
            caught_up,
            catch_up,
            num(rc.subscribers_with_loss),
            num(rc.most_lost_by_one),
            loss,
        )?;
    }
    writeln!(s)?;
    let cannot: Vec<String> = Peer::ALL
        .into_iter()
        .filter_map(|p| {
            let ran = rows.iter().any(|(r, _)| *r == p);
            cannot_resume(p).map(|why| {
                format!(
                    "- {}{}: {why}",
                    p.title(),
                    if ran { "" } else { " (not run)" }
                )
            })
        })
        .collect();
    writeln!(
        s,
        "Servers that cannot resume (their losses above are what they could not replay):\n\n{}\n\
         - raw limit: not applicable: it keeps no history, it only measures writes.\n",
        cannot.join("\n")
    )?;
    Ok(())
}

/// Why a server cannot resume a stream after a reconnect (`None`: it can).
pub(super) fn cannot_resume(peer: Peer) -> Option<&'static str> {
    match peer {
        Peer::Herald | Peer::Nchan | Peer::Raw => None,
        Peer::Pushpin => Some(
            "cannot resume: a GRIP stream channel has no history, and the origin \
             (`bench/peers/pushpin/origin.mjs`) ignores `Last-Event-ID`; every event published \
             while a subscriber is away is lost to it.",
        ),
        Peer::Node => Some(
            "cannot resume: `bench/peers/node/server.mjs` keeps no history and ignores \
             `Last-Event-ID`; every event published while a subscriber is away is lost to it.",
        ),
        Peer::Python => Some(
            "cannot resume: `bench/peers/python/server.py` keeps no history and ignores \
             `Last-Event-ID`; every event published while a subscriber is away is lost to it.",
        ),
    }
}

/// S1, S2, S4: one row per server, then Herald's ratios.
pub(super) fn render_run(
    s: &mut String,
    scenario: Scenario,
    rows: &[(Peer, &Outcome)],
) -> Result<()> {
    writeln!(
        s,
        "| server | connected, in | deliveries/s | from send p50 / p99 / p99.9 | from schedule p50 / p99 / p99.9 | lost / dup / out of order | publisher lag p99 | RSS/conn | CPU s/M |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|")?;
    let mut figures: BTreeMap<Peer, (f64, f64, f64, f64)> = BTreeMap::new();
    for (peer, v) in rows {
        let Some(r) = v.reports.get("run") else {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | | | |",
                peer.title(),
                v.error.as_deref().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        };
        let sub = &r.subscribers;
        let d = r.deliveries.clone().unwrap_or_default();
        let l = r.latency_us.clone().unwrap_or_default();
        let fs_ = &l.from_send;
        let fsch = &l.from_schedule;
        let server = r.server.clone().unwrap_or_default();
        let mut connected = format!(
            "{} / {} in {:.1} s",
            num(sub.connected),
            num(sub.requested),
            sub.connect_s
        );
        if sub.failed > 0 {
            write!(connected, " ({} failed)", num(sub.failed))?;
        }
        let events = r.events.clone().unwrap_or_default();
        let mut loss = format!(
            "{} / {} / {}",
            num(d.lost),
            num(d.duplicated),
            out_of_order(&d, v.classified("run"))
        );
        if events.errors > 0 || events.unsent > 0 {
            write!(
                loss,
                " ({} publish errors, {} unsent)",
                num(events.errors),
                num(events.unsent)
            )?;
        }
        if r.limits.duration_limit_hit {
            loss.push_str(" (duration limit hit)");
        }
        writeln!(
            s,
            "| {} | {} | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} | {} |",
            peer.title(),
            connected,
            num(d.per_sec),
            ms(fs_.p50),
            ms(fs_.p99),
            ms(fs_.p999),
            ms(fsch.p50),
            ms(fsch.p99),
            ms(fsch.p999),
            loss,
            ms(r.publisher_lag_us.as_ref().map(|l| l.p99)),
            kib(server.rss_per_conn_bytes),
            num(server.cpu_s_per_million),
        )?;
        let mut rss = server.rss_per_conn_bytes.unwrap_or(f64::NAN);
        let mut cpu = server.cpu_s_per_million.unwrap_or(f64::NAN);
        if *peer == Peer::Pushpin {
            let tree = v.trees.get("run").and_then(Option::as_ref);
            let delivered = d.delivered as f64;
            let whole_rss = whole_rss_per_conn(tree, sub);
            let whole_cpu = tree
                .map(|t| t.cpu_s)
                .filter(|_| delivered > 0.0)
                .map(|c| c / delivered * 1e6);
            writeln!(
                s,
                "| Pushpin, **whole** ({} processes) | | | | | | | {} (peak) | {} (whole run) |",
                num(tree.map(|t| t.processes)),
                kib(whole_rss),
                num(whole_cpu),
            )?;
            rss = whole_rss.unwrap_or(rss);
            cpu = whole_cpu.unwrap_or(cpu);
        }
        figures.insert(*peer, (d.per_sec, fs_.p99 as f64, rss, cpu));
    }
    writeln!(s)?;
    if let Some(&(h_rate, h_p99, h_rss, h_cpu)) = figures.get(&Peer::Herald) {
        for (peer, &(rate, p99, rss, cpu)) in &figures {
            if *peer == Peer::Herald {
                continue;
            }
            // The raw limit keeps no per-connection state worth comparing.
            let rss = if *peer == Peer::Raw {
                String::new()
            } else {
                format!(" {} RSS per connection,", ratio(h_rss, rss))
            };
            writeln!(
                s,
                "- Herald/{}: {} deliveries/s (higher is better); {} p99 latency,{rss} {} CPU per delivery (lower is better)",
                peer.title(),
                ratio(h_rate, rate),
                ratio(h_p99, p99),
                ratio(h_cpu, cpu),
            )?;
        }
        let target = match scenario {
            Scenario::S1 => Some(format!(
                "Target: at least Nchan's deliveries/s with p99 ≤ 10 ms, CPU per million no more than Nchan's. Herald: {} deliveries/s, p99 {} ms.",
                num(h_rate),
                ms(h_p99)
            )),
            Scenario::S2 => Some(format!(
                "Target: ≥ 1.8× Nchan's deliveries/s with p99 ≤ 50 ms and zero loss, at most half of Nchan's CPU per million. Herald: {} deliveries/s, p99 {} ms.",
                num(h_rate),
                ms(h_p99)
            )),
            _ => None,
        };
        if let Some(target) = target {
            writeln!(s, "\n{target}")?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// S3: RSS per idle connection, and Herald's most connections.
pub(super) fn render_idle(s: &mut String, rows: &[(Peer, &Outcome)]) -> Result<()> {
    writeln!(
        s,
        "| server | connected | RSS before | RSS with all connected | RSS/conn | whole tree RSS/conn |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    let mib =
        |bytes: Option<f64>| bytes.map_or("?".into(), |b| format!("{:.1} MiB", b / 1048576.0));
    let mut per_conn = BTreeMap::new();
    for (peer, v) in rows {
        let Some(r) = v.reports.get("idle") else {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | |",
                peer.title(),
                v.error.as_deref().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        };
        let sub = &r.subscribers;
        let server = r.server.clone().unwrap_or_default();
        let tree = v.trees.get("idle").and_then(Option::as_ref);
        let whole = whole_rss_per_conn(tree, sub);
        let mut connected_text = format!("{} / {}", num(sub.connected), num(sub.requested));
        if sub.failed > 0 {
            write!(
                connected_text,
                " ({} failed: {})",
                num(sub.failed),
                failure_kinds(sub)
            )?;
        }
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            peer.title(),
            connected_text,
            mib(server.rss_before.map(|b| b as f64)),
            mib(server.rss_idle.map(|b| b as f64)),
            kib(server.rss_per_conn_bytes),
            kib(whole),
        )?;
        let value = if *peer == Peer::Pushpin {
            whole
        } else {
            server.rss_per_conn_bytes
        };
        if let Some(value) = value {
            per_conn.insert(*peer, value);
        }
    }
    writeln!(
        s,
        "\n\"Whole tree\" is the peak RSS of every process of the server during the run (Pushpin: all five and the origin) minus before, per connection.\n"
    )?;
    if let Some(&h) = per_conn.get(&Peer::Herald) {
        for (peer, &other) in &per_conn {
            if *peer != Peer::Herald {
                writeln!(
                    s,
                    "- Herald/{}: {} RSS per idle connection",
                    peer.title(),
                    ratio(h, other)
                )?;
            }
        }
        writeln!(
            s,
            "\nTarget: ≤ 4 KiB per idle connection. Herald: {}.\n",
            kib(Some(h))
        )?;
    }
    if let Some(x) = rows
        .iter()
        .find(|(p, _)| *p == Peer::Herald)
        .and_then(|(_, v)| v.extra.as_ref())
    {
        writeln!(
            s,
            "**Most connections one Herald process holds here:** {} of {} requested \
             (two bench processes at once); RSS {} before, {} with all connected, {} per \
             connection. Projection for 1,000,000 connections: **{}** (RSS before + \
             1,000,000 × RSS/conn; a million needs a descriptor limit above 1,000,000 and \
             about 16 source addresses' ephemeral ports).\n",
            num(x.connected),
            num(x.requested),
            mib(x.rss_before),
            mib(x.rss_held),
            kib(x.rss_per_conn_bytes),
            x.projection_1m_bytes
                .map_or("?".into(), |b| format!("{:.2} GiB", b / 1073741824.0)),
        )?;
        for r in &x.reports {
            let sub = &r.subscribers;
            if sub.failed > 0 {
                let notes: Vec<&str> = r.limits.notes.iter().map(String::as_str).collect();
                writeln!(
                    s,
                    "- The bench process from index {}: {} connects failed ({}){}. A 503 is \
                     Herald refusing a stream over its `--max-connections`, which defaults \
                     to what its own 20,000-descriptor limit allows.",
                    num(sub.index_offset),
                    num(sub.failed),
                    failure_kinds(sub),
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!("; herald-bench notes: {}", notes.join("; "))
                    }
                )?;
            }
        }
        writeln!(s)?;
    }
    Ok(())
}

/// "refused 12, status {503: 4}" from a report's subscribers object.
pub(super) fn failure_kinds(sub: &Subscribers) -> String {
    let mut parts = Vec::new();
    for (kind, n) in [
        ("refused", sub.refused),
        ("timed out", sub.timed_out),
        ("no local port", sub.no_local_port),
        ("no fd", sub.no_fd),
        ("other", sub.other),
    ] {
        if n > 0 {
            parts.push(format!("{kind} {n}"));
        }
    }
    for (code, n) in &sub.status {
        parts.push(format!("HTTP {code}: {n}"));
    }
    parts.join(", ")
}

/// The peak RSS of a server's whole process tree during a run minus its RSS before, per
/// connected subscriber.
fn whole_rss_per_conn(tree: Option<&TreeSample>, sub: &Subscribers) -> Option<f64> {
    let tree = tree?;
    let connected = sub.connected as f64;
    (connected > 0.0)
        .then(|| (tree.rss_peak_bytes as f64 - tree.rss_before_bytes as f64) / connected)
}

/// S6: acknowledged publishes per second.
pub(super) fn render_publish(s: &mut String, rows: &[(Peer, &Outcome)]) -> Result<()> {
    writeln!(
        s,
        "| server | durability | publishers | acknowledged/s | published | errors | delivered / lost / out of order | CPU s |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    for (peer, v) in rows {
        let Some(reports) = Some(&v.reports).filter(|r| !r.is_empty()) else {
            writeln!(
                s,
                "| {} | **failed**: {} | | | | | | |",
                peer.title(),
                v.error.as_deref().unwrap_or("no result").replace('|', "/")
            )?;
            continue;
        };
        let mut labels: Vec<&String> = reports.keys().collect();
        labels.sort_by_key(|l| {
            let (durability, publishers) = l.split_once("-publishers-").unwrap_or((l, "0"));
            (durability != "full", publishers.parse::<u64>().unwrap_or(0))
        });
        for label in labels {
            let r = &reports[label];
            let (durability, publishers) = label.split_once("-publishers-").unwrap_or((label, "?"));
            let e = r.events.clone().unwrap_or_default();
            let d = r.deliveries.clone().unwrap_or_default();
            writeln!(
                s,
                "| {} | {durability} | {publishers} | {} | {} / {} | {} | {} / {} / {} | {} |",
                peer.title(),
                num(e.published_per_sec),
                num(e.published),
                num(e.requested),
                num(e.errors),
                num(d.delivered),
                num(d.lost),
                out_of_order(&d, v.classified(label)),
                num(r.server.as_ref().and_then(|s| s.cpu_s)),
            )?;
        }
        if let Some(err) = &v.error {
            writeln!(
                s,
                "| {} | **failed later**: {} | | | | | | |",
                peer.title(),
                err.replace('|', "/")
            )?;
        }
    }
    writeln!(
        s,
        "\nTarget: ≥ 50,000 durable publishes/s at 64 publishers.\n"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A stored outcome from its JSON.
    fn outcome(v: Value) -> Outcome {
        Outcome::parse(&v.to_string()).unwrap()
    }

    /// S5: a server that resumed, one that could not, and the reasons listed below.
    #[test]
    fn storm_rows_are_rendered() {
        let run = |caught_up: Value, count: u64, lost: u64| {
            outcome(json!({"reports": {"run": {
                "subscribers": {"connected": 10, "requested": 10, "connect_s": 0.1},
                "deliveries": {"lost": lost, "duplicated": 0, "out_of_order": 0},
                "reconnect": {"reconnected": 10, "failed": 0, "failure_samples": [],
                              "all_caught_up_s": caught_up, "caught_up": count, "dropped": 10,
                              "catch_up_us": {"count": count, "p50": 1500, "p99": 2500},
                              "subscribers_with_loss": lost / 100, "most_lost_by_one": 100,
                              "listen_overflows": 0},
                "events": {"errors": 0, "unsent": 0},
                "limits": {"duration_limit_hit": false}
            }}}))
        };
        let herald = run(json!(0.0025), 10, 0);
        let node = run(Value::Null, 0, 1000);
        let mut s = String::new();
        render_storm(&mut s, &[(Peer::Herald, &herald), (Peer::Node, &node)]).unwrap();
        assert!(
            s.contains("| Herald | 10 / 10 in 0.1 s | 10 / 0 | 0.00 s | 1.50 / 2.50 | 0 (100) | 0 / 0 / 0 |"),
            "{s}"
        );
        assert!(
            s.contains("| Node (Express) | 10 / 10 in 0.1 s | 10 / 0 | **no**: 0 of 10 within 15 s | none caught up | 10 (100) | 1,000 / 0 / 0 |"),
            "{s}"
        );
        assert!(s.contains("- Node (Express): cannot resume"), "{s}");
        assert!(
            s.contains("- Python (sse-starlette) (not run): cannot resume"),
            "{s}"
        );
        assert!(!s.contains("- Herald"), "{s}");
    }

    /// S6 shows each configuration's ordering too.
    #[test]
    fn publish_rows_are_rendered() {
        let report = |concurrent: u64| {
            json!({
                "events": {"published_per_sec": 30000.0, "published": 20000, "requested": 20000,
                           "errors": 0},
                "deliveries": {"delivered": 20000, "lost": 0, "out_of_order": 0,
                               "out_of_order_concurrent": concurrent},
                "server": {"cpu_s": 1.5}
            })
        };
        let herald = outcome(json!({"reports": {
            "full-publishers-1": report(0),
            "full-publishers-64": report(4321),
        }}));
        let mut s = String::new();
        render_publish(&mut s, &[(Peer::Herald, &herald)]).unwrap();
        assert!(
            s.contains(
                "| Herald | full | 1 | 30,000 | 20,000 / 20,000 | 0 | 20,000 / 0 / 0 | 1.50 |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| Herald | full | 64 | 30,000 | 20,000 / 20,000 | 0 | 20,000 / 0 / 0 (+4,321 concurrent) | 1.50 |"
            ),
            "{s}"
        );
    }

    /// A failed server gets a row that says so, next to one that ran.
    #[test]
    fn failed_rows_are_rendered() {
        let ok = outcome(json!({
            "reports": {"run": {
                "subscribers": {"connected": 10, "requested": 10, "failed": 0, "connect_s": 0.1},
                "deliveries": {"per_sec": 2000.0, "delivered": 20000, "lost": 0, "duplicated": 0,
                               "out_of_order": 0, "out_of_order_concurrent": 1200},
                "latency_us": {"from_send": {"p50": 500, "p99": 900, "p999": 1000},
                               "from_schedule": {"p50": 600, "p99": 1000, "p999": 1100}},
                "events": {"errors": 0, "unsent": 0},
                "publisher_lag_us": {"p99": 100},
                "server": {"rss_per_conn_bytes": 2048.0, "cpu_s_per_million": 3.0},
                "limits": {"duration_limit_hit": false}
            }},
            "trees": {}
        }));
        let failed = outcome(json!({"reports": {}, "error": "nchan exited during start"}));
        let mut s = String::new();
        render_run(
            &mut s,
            Scenario::S1,
            &[(Peer::Herald, &ok), (Peer::Nchan, &failed)],
        )
        .unwrap();
        assert!(
            s.contains(
                "| Herald | 10 / 10 in 0.1 s | 2,000 | 0.50 / 0.90 / 1.00 | 0.60 / 1.00 / 1.10 | 0 / 0 / 0 (+1,200 concurrent) |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| Nchan | **failed**: nchan exited during start |"),
            "{s}"
        );
    }
}
