//! Process tree and memory readings from Linux `/proc`, for the memory
//! figures of `wsring bench` / `wsring soak` and for tests that find (and
//! kill) the children of a `wsring dev` launcher.

use std::fmt;

/// Why a reading failed: the process is gone or `/proc` is not Linux's.
#[derive(Debug)]
pub struct ProcError(String);

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProcError {}

/// Resident set size of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64, ProcError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| ProcError(format!("reading /proc/{pid}/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| ProcError(format!("no VmRSS in /proc/{pid}/status")))
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
pub fn tree_rss_kib(pid: u32) -> Result<u64, ProcError> {
    let mut total = rss_kib(pid)?;
    for child in children_of(pid) {
        total += rss_kib(child).unwrap_or(0);
    }
    Ok(total)
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
}
