//! Process tree, memory and CPU readings from Linux `/proc`, for the
//! figures of `wsring bench` / `wsring soak`, for stopping a child's own
//! children, and for tests that find (and kill) the children of a
//! `wsring dev` launcher.

use std::time::Duration;

use crate::Error;

/// Resident set size of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::Proc(format!("reading /proc/{pid}/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::Proc(format!("no VmRSS in /proc/{pid}/status")))
}

/// Direct children of `pid`, from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_of(*child) == Some(pid))
        .collect()
}

/// RSS of a process plus its direct children in KiB (nginx master + workers).
pub fn tree_rss_kib(pid: u32) -> Result<u64, Error> {
    let mut total = rss_kib(pid)?;
    for child in children_of(pid) {
        total += rss_kib(child).unwrap_or(0);
    }
    Ok(total)
}

/// CPU time (user + system, all threads, reaped children excluded) of a
/// process, for the CPU cost per message of the benchmarks.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let ticks: u64 = rest.next()?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_sec))
}

/// The 1, 5 and 15 minute load averages: how busy the machine was otherwise.
pub fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_is_found_and_measured() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        assert!(children_of(me).contains(&child.id()));
        assert_eq!(parent_of(child.id()), Some(me));
        assert!(rss_kib(child.id()).unwrap() > 0);
        assert!(tree_rss_kib(me).unwrap() >= rss_kib(me).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(rss_kib(u32::MAX).is_err(), "no such process");
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_time(std::process::id()).unwrap() > Duration::ZERO);
    }
}
