//! The measured server's memory and CPU time, from `/proc/<pid>`.

use serde::Serialize;

/// One reading of a process's resident memory and CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` if the process
/// is gone or the files do not parse.
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Sample {
        rss_bytes: parse_vm_rss(&status)?,
        cpu_s: parse_cpu_ticks(&stat)? as f64 / clock_ticks_per_second() as f64,
    })
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        Some("kB") | None => 1024,
        Some("B") => 1,
        Some("mB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * unit)
}

/// `utime + stime` from `/proc/<pid>/stat`, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = stat_fields(stat)?.skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The fields of `/proc/<pid>/stat` after the command name: state (field 3),
/// ppid (field 4), and on. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// `sysconf(_SC_CLK_TCK)`, read from the aux vector; 100 if unavailable.
pub fn clock_ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stat() {
        let status = "Name:\therald\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);

        let stat = "4242 (my (weird) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 37 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(187));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
        let fields: Vec<&str> = stat_fields(stat).unwrap().take(2).collect();
        assert_eq!(fields, ["S", "1"]);
        assert!(stat_fields("4242 no name").is_none());
    }

    #[test]
    fn own_process() {
        let me = sample(std::process::id()).expect("read /proc/self");
        assert!(me.rss_bytes > 0);
        assert!(me.cpu_s >= 0.0);
    }
}

/// Machine-wide TCP counters from `/proc/net/netstat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `TcpExt: ListenOverflows`.
    pub listen_overflows: u64,
    /// `TcpExt: TCPSynRetrans`.
    pub syn_retransmits: u64,
}

/// Reads [`TcpCounters`]; `None` when `/proc/net/netstat` cannot be read.
pub fn tcp_counters() -> Option<TcpCounters> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// Parses `/proc/net/netstat`: a `TcpExt:` line of names, then one of values.
fn parse_netstat(text: &str) -> Option<TcpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    let mut counters = TcpCounters::default();
    for (name, value) in names.zip(values) {
        match name {
            "ListenOverflows" => counters.listen_overflows = value.parse().ok()?,
            "TCPSynRetrans" => counters.syn_retransmits = value.parse().ok()?,
            _ => {}
        }
    }
    Some(counters)
}

#[cfg(test)]
mod netstat_tests {
    use super::*;

    #[test]
    fn netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 0 12 12 7\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        assert_eq!(
            parse_netstat(text),
            Some(TcpCounters {
                listen_overflows: 12,
                syn_retransmits: 7
            })
        );
        assert_eq!(parse_netstat("IpExt: a\nIpExt: 1\n"), None);
    }
}
