//! Processes from `/proc`: [`Tree`] samples the RSS and CPU time of a server's whole process
//! tree while a bench runs; the rest finds descendants, names and liveness, and signals.

use std::{
    fs,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::{Value, json};

/// RSS and CPU time of whole process trees, sampled every 250 ms while a bench runs.
pub(super) struct Tree {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) handle: thread::JoinHandle<Value>,
}

impl Tree {
    pub(super) fn sample(roots: Vec<u32>, clk_tck: f64) -> Tree {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let measure = || {
                let mut pids = roots.clone();
                for &root in &roots {
                    pids.extend(descendants(root));
                }
                let mut rss_kib = 0;
                let mut ticks = 0;
                for pid in &pids {
                    if let Some((r, t)) = rss_and_ticks(*pid) {
                        rss_kib += r;
                        ticks += t;
                    }
                }
                (pids.len(), rss_kib, ticks)
            };
            let cpus_before = cpu_busy_ticks();
            let (processes, rss_before, ticks_before) = measure();
            let mut peak = rss_before;
            let mut last = (processes, rss_before, ticks_before);
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                let now = measure();
                peak = peak.max(now.1);
                last = now;
            }
            let cpus_after = cpu_busy_ticks();
            let busy = |i: usize| {
                cpus_after
                    .get(i)
                    .zip(cpus_before.get(i))
                    .map(|(a, b)| a.saturating_sub(*b) as f64 / clk_tck)
            };
            json!({
                "processes": processes,
                "rss_before_bytes": rss_before * 1024,
                "rss_peak_bytes": peak * 1024,
                "cpu_s": (last.2.saturating_sub(ticks_before)) as f64 / clk_tck,
                // Busy time of CPU 0 (the server's) and CPU 1 (the bench's), all processes,
                // interrupts included: more than the server's and the bench's own means
                // something else ran there too.
                "cpu0_busy_s": busy(0),
                "cpu1_busy_s": busy(1),
            })
        });
        Tree { stop, handle }
    }

    pub(super) fn finish(self) -> Value {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(Value::Null)
    }
}

/// Busy clock ticks of each CPU (`cpuN` lines of /proc/stat: everything but idle and iowait).
pub(super) fn cpu_busy_ticks() -> Vec<u64> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            get(0) + get(1) + get(2) + get(5) + get(6) + get(7)
        })
        .collect()
}

/// VmRSS (KiB) and utime + stime (clock ticks) of `pid`.
pub(super) fn rss_and_ticks(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fields = stat_fields(pid)?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, ...
pub(super) fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` runs (a zombie does not).
pub(super) fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// The command name of `pid`.
pub(super) fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every descendant of `root`, from /proc.
pub(super) fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok());
            let ppid = pid
                .and_then(stat_fields)
                .and_then(|f| f.get(1)?.parse::<u32>().ok());
            if let (Some(pid), Some(ppid)) = (pid, ppid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `kill -<sig> <pid>`.
pub(super) fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}
