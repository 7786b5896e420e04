//! The server's CPU time and memory, read from `/proc/PID` (Linux), so a run can say what
//! forwarding cost it.

use anyhow::{Context, Result, anyhow};
use nix::unistd::{SysconfVar, sysconf};
use serde_json::{Value, json};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, in bytes.
    pub rss_bytes: u64,
    /// The part of it that is the process's own (heap, stacks), in bytes: the rest is pages of
    /// its program and libraries, shared and paged in once as code first runs.
    pub anon_rss_bytes: u64,
    /// The most resident memory it ever had, in bytes.
    pub peak_rss_bytes: u64,
}

pub fn sample(pid: u32) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no process {pid}"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3, so utime and stime (14 and 15) are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> { Ok(fields.get(i).ok_or_else(|| anyhow!("short stat"))?.parse()?) };
    let per_second = sysconf(SysconfVar::CLK_TCK)?.ok_or_else(|| anyhow!("no clock tick rate"))? as f64;
    let cpu_seconds = (ticks(11)? + ticks(12)?) as f64 / per_second;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        cpu_seconds,
        rss_bytes: kib("VmRSS:") * 1024,
        anon_rss_bytes: kib("RssAnon:") * 1024,
        peak_rss_bytes: kib("VmHWM:") * 1024,
    })
}

/// What the server spent between the start and the end of the measurement.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Before any participant joined.
    pub idle: Sample,
    pub start: Sample,
    pub end: Sample,
}

impl Usage {
    pub fn cpu_seconds(&self) -> f64 {
        self.end.cpu_seconds - self.start.cpu_seconds
    }

    /// Memory the consultations added, per consultation.
    pub fn rss_per_consultation(&self, consultations: usize) -> f64 {
        per_consultation(self.idle.rss_bytes, self.end.rss_bytes, consultations)
    }

    /// The process's own memory (without program pages) the consultations added, per
    /// consultation.
    pub fn anon_rss_per_consultation(&self, consultations: usize) -> f64 {
        per_consultation(self.idle.anon_rss_bytes, self.end.anon_rss_bytes, consultations)
    }

    pub fn json(&self, seconds: f64, consultations: usize) -> Value {
        json!({
            "cpu_seconds": self.cpu_seconds(),
            "cpu_cores_busy": self.cpu_seconds() / seconds,
            "rss_idle_bytes": self.idle.rss_bytes,
            "rss_end_bytes": self.end.rss_bytes,
            "rss_peak_bytes": self.end.peak_rss_bytes,
            "rss_per_consultation_bytes": self.rss_per_consultation(consultations),
            "anon_rss_idle_bytes": self.idle.anon_rss_bytes,
            "anon_rss_end_bytes": self.end.anon_rss_bytes,
            "anon_rss_per_consultation_bytes": self.anon_rss_per_consultation(consultations),
        })
    }
}

/// The growth from `idle` to `end`, shared out between the consultations.
fn per_consultation(idle: u64, end: u64, consultations: usize) -> f64 {
    end.saturating_sub(idle) as f64 / consultations.max(1) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let s = super::sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(s.anon_rss_bytes > 0 && s.anon_rss_bytes <= s.rss_bytes);
        assert!(s.cpu_seconds >= 0.0);
        assert!(super::sample(u32::MAX).is_err());
    }
}
