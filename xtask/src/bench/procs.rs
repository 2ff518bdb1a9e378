//! Processes from `/proc`: [`Tree`] samples the RSS and CPU time of a server's whole process
//! tree while a bench runs, [`Stolen`] the host's share of the servers' core; the rest finds
//! descendants, names and liveness, and signals.

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

use herald_bench::procstat;
use serde::{Deserialize, Serialize};

/// RSS and CPU time of whole process trees, sampled every 250 ms while a bench runs.
pub(super) struct Tree {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) handle: thread::JoinHandle<TreeSample>,
}

/// What [`Tree`] measured over one bench run, as stored in an outcome.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct TreeSample {
    /// Processes in the trees at the end.
    pub(super) processes: u64,
    /// Their summed RSS before the run.
    pub(super) rss_before_bytes: u64,
    /// The highest summed RSS seen during the run.
    pub(super) rss_peak_bytes: u64,
    /// Their CPU time during the run, seconds.
    pub(super) cpu_s: f64,
    /// Busy time of CPU 0 (the server's) and CPU 1 (the bench's), all processes, interrupts
    /// included: more than the server's and the bench's own means something else ran there
    /// too.
    pub(super) cpu0_busy_s: Option<f64>,
    /// See `cpu0_busy_s`.
    pub(super) cpu1_busy_s: Option<f64>,
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
                let mut rss_bytes = 0;
                let mut ticks = 0;
                for pid in &pids {
                    if let Some((r, t)) = rss_and_ticks(*pid) {
                        rss_bytes += r;
                        ticks += t;
                    }
                }
                (pids.len() as u64, rss_bytes, ticks)
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
            TreeSample {
                processes,
                rss_before_bytes: rss_before,
                rss_peak_bytes: peak,
                cpu_s: (last.2.saturating_sub(ticks_before)) as f64 / clk_tck,
                cpu0_busy_s: busy(0),
                cpu1_busy_s: busy(1),
            }
        });
        Tree { stop, handle }
    }

    /// Stops sampling; `None` if the sampling thread panicked.
    pub(super) fn finish(self) -> Option<TreeSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok()
    }
}

/// Busy clock ticks of each CPU (`cpuN` lines of /proc/stat: everything but idle and iowait).
pub(super) fn cpu_busy_ticks() -> Vec<u64> {
    cpu_ticks(&fs::read_to_string("/proc/stat").unwrap_or_default())
        .iter()
        .map(|t| t.busy)
        .collect()
}

/// Clock ticks of one CPU since boot, from its `cpuN` line of /proc/stat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CpuTicks {
    /// Everything but idle and iowait (steal included).
    pub(super) busy: u64,
    /// Taken by the hypervisor for other guests while this virtual CPU wanted to run.
    pub(super) stolen: u64,
    /// All of them.
    pub(super) total: u64,
}

/// Each CPU's ticks, in order, from the text of /proc/stat.
pub(super) fn cpu_ticks(stat: &str) -> Vec<CpuTicks> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal (guest time is in user already)
            CpuTicks {
                busy: get(0) + get(1) + get(2) + get(5) + get(6) + get(7),
                stolen: get(7),
                total: (0..8).map(get).sum(),
            }
        })
        .collect()
}

/// The share of CPU 0's time that the hypervisor gave to other guests while a measure ran.
/// CPU 0 is the servers' core, so a busy neighbour shows here instead of passing for a
/// slower Herald; compare runs only when it is near 0.
pub(super) struct Stolen(Option<CpuTicks>);

impl Stolen {
    pub(super) fn start() -> Self {
        Self(Self::cpu0())
    }

    fn cpu0() -> Option<CpuTicks> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        cpu_ticks(&stat).first().copied()
    }

    /// Percent of CPU 0's ticks since `start` that were stolen.
    pub(super) fn percent(self) -> Option<f64> {
        let (before, after) = (self.0?, Self::cpu0()?);
        let total = after.total.checked_sub(before.total).filter(|&t| t > 0)?;
        let stolen = after.stolen.saturating_sub(before.stolen);
        Some(stolen as f64 * 100.0 / total as f64)
    }
}

/// VmRSS (bytes; 0 when it has none, like a kernel thread) and utime + stime (clock ticks)
/// of `pid`, parsed as herald-bench parses its server's.
pub(super) fn rss_and_ticks(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = procstat::parse_vm_rss(&status).unwrap_or(0);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((rss, procstat::parse_cpu_ticks(&stat)?))
}

/// State (`R`, `S`, `Z`, ...) and parent of `pid`, from `/proc/<pid>/stat`.
fn state_and_parent(pid: u32) -> Option<(String, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = procstat::stat_fields(&stat)?;
    let state = fields.next()?.to_owned();
    Some((state, fields.next()?.parse().ok()?))
}

/// Whether `pid` runs (a zombie does not).
pub(super) fn alive(pid: u32) -> bool {
    state_and_parent(pid).is_some_and(|(state, _)| state != "Z" && state != "X")
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
            let ppid = pid.and_then(state_and_parent).map(|(_, ppid)| ppid);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lines_give_busy_stolen_and_total_ticks() {
        let stat = "cpu  10 0 5 100 3 1 1 7 0 0\n\
                    cpu0 4 1 2 50 2 0 1 5 9 0\n\
                    cpu1 6 0 3 50 1 1 0 2 0 0\n\
                    intr 12345\n";
        assert_eq!(
            cpu_ticks(stat),
            [
                CpuTicks {
                    busy: 4 + 1 + 2 + 1 + 5,
                    stolen: 5,
                    total: 4 + 1 + 2 + 50 + 2 + 1 + 5,
                },
                CpuTicks {
                    busy: 6 + 3 + 1 + 2,
                    stolen: 2,
                    total: 6 + 3 + 50 + 1 + 1 + 2,
                },
            ]
        );
        assert!(cpu_ticks("intr 1\n").is_empty());
    }
}
