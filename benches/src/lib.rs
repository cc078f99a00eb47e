//! Shared helpers of rwproxy's benchmarks: process CPU time and latency summaries.

use std::time::Duration;

pub mod harness;
pub mod sql_source;
pub mod wan_link;

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
pub fn process_cpu() -> Duration {
    stat_of(std::process::id()).map_or(Duration::ZERO, |(_, user, system)| ticks(user + system))
}

/// The value at quantile `q` (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// A `/proc/<pid>/stat` time in clock ticks, as a duration.
fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 1000 / USER_HZ)
}

/// `(parent pid, utime ticks, stime ticks)` of one process, from `/proc/<pid>/stat`.
fn stat_of(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the 1st, ppid the 2nd, utime and
    // stime the 12th and 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime, stime))
}

/// CPU time as the kernel accounts it: in the program (user) and in the kernel on its behalf
/// (system: syscalls, and on loopback most of the TCP work of both ends).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// Time in user space.
    pub user: Duration,
    /// Time in the kernel.
    pub system: Duration,
}

impl CpuTimes {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time spent since `earlier` was read.
    pub fn since(&self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl std::iter::Sum for CpuTimes {
    fn sum<I: Iterator<Item = CpuTimes>>(iter: I) -> CpuTimes {
        iter.fold(CpuTimes::default(), |a, b| CpuTimes {
            user: a.user + b.user,
            system: a.system + b.system,
        })
    }
}

/// `pid` and all its descendants (an nginx master and its workers, say).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _, _)) = stat_of(p) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// CPU time used so far by `pid` and its descendants (10 ms resolution).
pub fn tree_cpu(pid: u32) -> CpuTimes {
    process_tree(pid)
        .into_iter()
        .filter_map(stat_of)
        .map(|(_, user, system)| CpuTimes {
            user: ticks(user),
            system: ticks(system),
        })
        .sum()
}

/// Resident memory (`VmRSS`) of `pid` and its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// The median of the finite values (the mean of the middle two for an even count); NaN when
/// there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}
