//! One load run: start the consultations over the ramp, wait until all are up, measure for
//! the set duration, stop, let the last packets land, and tally.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use gatehouse_probe::stamp;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::meet::{Consultation, Publishing};
use crate::procstat::{self, Usage};
use crate::tally::{Tally, Window, percentiles_ms};

/// After the last consultation is up, before measuring: renegotiations and keyframe requests
/// settle.
const SETTLE: Duration = Duration::from_secs(2);
/// After publishing stops: payloads still in flight arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the consultations may take to come up beyond the ramp.
const JOIN_LIMIT: Duration = Duration::from_secs(90);

/// What a run does and against what.
pub struct Settings {
    pub mode: &'static str,
    pub consultations: usize,
    pub duration: Duration,
    pub ramp: Duration,
    pub server_pid: Option<u32>,
}

/// Starts consultation `i` (0-based) of the run.
pub type Starter =
    Arc<dyn Fn(usize, Publishing) -> Pin<Box<dyn Future<Output = Result<Consultation>> + Send>> + Send + Sync>;

pub async fn run(
    settings: &Settings,
    publishing: Publishing,
    stop: watch::Sender<bool>,
    start: Starter,
) -> Result<Value> {
    let idle = settings.server_pid.map(procstat::sample).transpose()?;
    let n = settings.consultations;
    let joining = progress(n as u64, "joining");
    let mut starting = Vec::with_capacity(n);
    for i in 0..n {
        let delay = settings.ramp.mul_f64(i as f64 / n as f64);
        let (start, publishing, joining) = (start.clone(), publishing.clone(), joining.clone());
        starting.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = tokio::time::timeout(JOIN_LIMIT, start(i, publishing)).await;
            joining.inc(1);
            match result {
                Ok(result) => result,
                Err(_) => bail!("consultation {i} did not come up within {JOIN_LIMIT:?}"),
            }
        }));
    }
    let mut consultations = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for (i, task) in starting.into_iter().enumerate() {
        match task.await {
            Ok(Ok(c)) => consultations.push(c),
            Ok(Err(e)) => failures.push(format!("consultation {i}: {e:#}")),
            Err(e) => failures.push(format!("consultation {i}: {e}")),
        }
    }
    joining.finish_and_clear();
    if consultations.is_empty() {
        let _ = stop.send(true);
        bail!("no consultation came up: {}", failures.join("; "));
    }

    tokio::time::sleep(SETTLE).await;
    let measuring = progress(settings.duration.as_secs(), "measuring (s)");
    let from_us = stamp::now_us();
    let start_sample = settings.server_pid.map(procstat::sample).transpose()?;
    let ticker = {
        let measuring = measuring.clone();
        tokio::spawn(async move {
            let mut second = tokio::time::interval(Duration::from_secs(1));
            second.tick().await;
            loop {
                second.tick().await;
                measuring.inc(1);
            }
        })
    };
    tokio::time::sleep(settings.duration).await;
    let until_us = stamp::now_us();
    let end_sample = settings.server_pid.map(procstat::sample).transpose()?;
    ticker.abort();
    measuring.finish_and_clear();
    let _ = stop.send(true);
    tokio::time::sleep(DRAIN).await;

    let window = Window { from_us, until_us };
    let mut tally = Tally::default();
    let mut joins: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut no_media = 0;
    for c in consultations.iter_mut() {
        let mut ledgers = Vec::with_capacity(2);
        for m in c.members.iter_mut() {
            ledgers.push((&mut m.publishing).await.unwrap_or_default());
        }
        for (i, receiver) in c.members.iter().enumerate() {
            let sender = &c.members[1 - i];
            let arrivals = receiver.peer.take_arrivals();
            match arrivals.iter().map(|a| a.received_us).min() {
                Some(first) => joins[i].push(first.saturating_sub(receiver.join_started_us)),
                None => no_media += 1,
            }
            tally.add(&arrivals, receiver.peer.undecodable(), sender.peer.id(), &ledgers[1 - i], window);
        }
    }
    for c in &consultations {
        for m in &c.members {
            m.peer.close().await;
        }
    }

    let seconds = window.seconds();
    let received = tally.received();
    let mut report = json!({
        "mode": settings.mode,
        "consultations": n,
        "consultations_up": consultations.len(),
        "failures": failures,
        "duration_s": seconds,
        "ramp_s": settings.ramp.as_secs_f64(),
        "plan": {
            "audio_bytes": publishing.plan.audio_len,
            "audio_packets_per_second": 50,
            "video_bytes": publishing.plan.video_len,
            "video_kbps": publishing.plan.video_bps / 1000,
            "video_packets_per_second": publishing.plan.video_packets_per_second(),
        },
        "media": tally.json(),
        "forwarded_packets_per_second": received as f64 / seconds,
        "join_to_first_media_ms": {
            "room": percentiles_ms(&sorted(&joins[0])),
            "clinician": percentiles_ms(&sorted(&joins[1])),
            "participants_without_media": no_media,
        },
    });
    if let (Some(idle), Some(start), Some(end)) = (idle, start_sample, end_sample) {
        let usage = Usage { idle, start, end };
        let mut server = usage.json(seconds, consultations.len());
        server["forwarded_packets_per_cpu_second"] = json!(received as f64 / usage.cpu_seconds().max(1e-9));
        server["cpu_cores_per_consultation"] = json!(usage.cpu_seconds() / seconds / consultations.len() as f64);
        report["server"] = server;
    }
    Ok(report)
}

fn sorted(v: &[u64]) -> Vec<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn progress(len: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what);
    bar
}
