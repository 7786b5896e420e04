//! `gatehouse-load`: plays N concurrent consultations against a running gateway with webrtc-rs
//! clients, and reports loss, one-way latency, join-to-first-media time and the server's CPU
//! and memory, as JSON and a summary. The same clients and payloads also run directly with
//! no server (`--direct`, the floor), in a Janus VideoRoom (`--janus`) and, as plain UDP,
//! through the bare relay (`--relay`), so one run compares them side by side.
//!
//! The tool creates what it joins with through the gateway's real API: it signs in as a
//! scheduler (`--scheduler`, password from `GATEHOUSE_LOAD_PASSWORD`), enrols one room per
//! consultation, books each an appointment open now, and issues the clinician's link.

mod api;
mod meet;
mod procstat;
mod run;
mod tally;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use gatehouse_probe::{Plan, Target};
use jiff::SignedDuration;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::{Origin, Scheduler};
use crate::meet::Publishing;
use crate::run::{Settings, Starter};

/// VideoRoom numbers of the consultations in Janus mode, clear of its sample room (1234).
const JANUS_FIRST_ROOM: u64 = 100_000;

/// The environment variable that holds the scheduler's password (never a flag: flags show in `ps`).
const PASSWORD_ENV: &str = "GATEHOUSE_LOAD_PASSWORD";

#[derive(Debug, Parser)]
#[command(name = "gatehouse-load", version, about = "Measure a Gatehouse gateway under N concurrent consultations")]
struct Cli {
    /// Concurrent consultations, each a room and a clinician.
    #[arg(long, default_value_t = 10)]
    consultations: usize,
    /// How long to measure once every consultation is up (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Spread the consultations' joins over this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ramp: Duration,
    /// Video bitrate each participant publishes, in kbit/s.
    #[arg(long, default_value_t = 1500)]
    video_kbps: u64,
    /// Bytes of each video packet's payload (VP8-sized).
    #[arg(long, default_value_t = 1000)]
    video_packet_bytes: usize,
    /// Bytes of each audio packet's payload (Opus-sized, 50 a second).
    #[arg(long, default_value_t = 120)]
    audio_bytes: usize,
    /// The gateway's public listener.
    #[arg(long, default_value = "https://localhost:8443")]
    gateway: String,
    /// The CA certificate that signed the gateway's (the development CA by default).
    #[arg(long, default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// A scheduler account to provision with; its password comes from GATEHOUSE_LOAD_PASSWORD.
    #[arg(long, default_value = "load")]
    scheduler: String,
    /// The server's process id, to sample its CPU time and memory from /proc.
    #[arg(long = "gateway-pid", visible_alias = "server-pid")]
    gateway_pid: Option<u32>,
    /// The local address every client binds to.
    #[arg(long, default_value = "127.0.0.1")]
    client_ip: IpAddr,
    /// Connect the clients to each other with no server: the clients' own latency floor.
    #[arg(long, conflicts_with_all = ["relay", "janus"])]
    direct: bool,
    /// Play the consultations in a Janus VideoRoom at this WebSocket URL (ws://HOST:8188) instead.
    #[arg(long, value_name = "URL", conflicts_with = "relay")]
    janus: Option<String>,
    /// Send the same payloads as plain UDP through the bare relay at this address (benches/bare_relay.rs).
    #[arg(long, value_name = "ADDR")]
    relay: Option<SocketAddr>,
    /// Write the JSON report here as well as printing the summary.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable duration"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gatehouse-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn load(cli: Cli) -> Result<()> {
    if cli.consultations == 0 {
        return Err(anyhow!("--consultations must be at least 1"));
    }
    let plan = Plan { audio_len: cli.audio_bytes, video_len: cli.video_packet_bytes, video_bps: cli.video_kbps * 1000 };
    if plan.audio_len < gatehouse_probe::stamp::HEADER_LEN
        || plan.video_len < gatehouse_probe::stamp::HEADER_LEN + gatehouse_probe::stamp::VIDEO_PREFIX_LEN
    {
        return Err(anyhow!("payloads must be large enough to carry their stamp"));
    }
    let (stop_tx, stop) = watch::channel(false);
    let publishing = Publishing { plan, stop, client_ip: cli.client_ip };
    let (mode, start): (&'static str, Starter) = if cli.direct {
        ("direct", Arc::new(|i, publishing| Box::pin(async move { meet::direct(ids(i), &publishing).await })))
    } else if let Some(url) = cli.janus.clone() {
        let start: Starter = Arc::new(move |i, publishing| {
            let url = url.clone();
            Box::pin(async move { meet::through_janus(&url, JANUS_FIRST_ROOM + i as u64, ids(i), &publishing).await })
        });
        ("janus", start)
    } else if let Some(relay) = cli.relay {
        let start: Starter = Arc::new(move |i, publishing| {
            Box::pin(async move { meet::through_relay(relay, i as u32, ids(i), &publishing).await })
        });
        ("relay", start)
    } else {
        let origin = Origin::parse(&cli.gateway)?;
        let tls = gatehouse_probe::tls::trusting(&cli.ca)?;
        let password = std::env::var(PASSWORD_ENV)
            .map_err(|_| anyhow!("set {PASSWORD_ENV} to the password of scheduler {:?}", cli.scheduler))?;
        let scheduler = Scheduler::sign_in(origin.clone(), tls.clone(), &cli.scheduler, &password).await?;
        let length = SignedDuration::try_from(cli.ramp + cli.duration)? + SignedDuration::from_mins(15);
        let run_label = jiff::Timestamp::now().as_second();
        let mut credentials = Vec::with_capacity(cli.consultations);
        for i in 0..cli.consultations {
            let label = format!("Load {run_label}-{i}");
            credentials.push(scheduler.consultation(&label, length).await.context("provisioning")?);
        }
        let credentials = Arc::new(credentials);
        let target = Target { ws_url: origin.ws_url(), tls, connect_to: None };
        let start: Starter = Arc::new(move |i, publishing| {
            let (target, credentials) = (target.clone(), credentials.clone());
            Box::pin(async move { meet::through_gateway(&target, &credentials[i], ids(i), &publishing).await })
        });
        ("gateway", start)
    };
    let settings = Settings {
        mode,
        consultations: cli.consultations,
        duration: cli.duration,
        ramp: cli.ramp,
        server_pid: cli.gateway_pid,
    };
    let report = run::run(&settings, publishing, stop_tx, start).await?;
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", summary(&report));
    Ok(())
}

/// The sender ids of consultation `i`'s room and clinician.
fn ids(i: usize) -> [u32; 2] {
    let base = 2 * i as u32;
    [base + 1, base + 2]
}

/// The human summary of a report.
fn summary(r: &Value) -> String {
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"));
    let media = &r["media"];
    let lat = &media["latency_ms"];
    let mut out = format!(
        "{} mode: {}/{} consultations up, measured {:.1} s\n",
        r["mode"].as_str().unwrap_or("?"),
        r["consultations_up"],
        r["consultations"],
        r["duration_s"].as_f64().unwrap_or(0.0)
    );
    out += &format!(
        "  payloads: {} sent, {} received, loss {:.3}% (audio {:.3}%, video {:.3}%), {} foreign, {} undecodable\n",
        media["sent"],
        media["received"],
        media["loss"].as_f64().unwrap_or(0.0) * 100.0,
        media["audio"]["loss"].as_f64().unwrap_or(0.0) * 100.0,
        media["video"]["loss"].as_f64().unwrap_or(0.0) * 100.0,
        media["foreign"],
        media["undecodable"],
    );
    out += &format!(
        "  one-way latency ms: p50 {} p95 {} p99 {} max {}\n",
        ms(&lat["p50"]),
        ms(&lat["p95"]),
        ms(&lat["p99"]),
        ms(&lat["max"])
    );
    let join = &r["join_to_first_media_ms"];
    out += &format!(
        "  join to first media ms: room p50 {} max {}; clinician p50 {} max {}\n",
        ms(&join["room"]["p50"]),
        ms(&join["room"]["max"]),
        ms(&join["clinician"]["p50"]),
        ms(&join["clinician"]["max"])
    );
    out += &format!("  delivered: {:.0} packets/s\n", r["forwarded_packets_per_second"].as_f64().unwrap_or(0.0));
    if let Some(server) = r.get("server") {
        out += &format!(
            "  server: {:.3} cores busy, {:.0} packets per CPU-second, {:.4} cores and {:.0} KiB \
             ({:.0} KiB of its own, without program pages) per consultation\n",
            server["cpu_cores_busy"].as_f64().unwrap_or(0.0),
            server["forwarded_packets_per_cpu_second"].as_f64().unwrap_or(0.0),
            server["cpu_cores_per_consultation"].as_f64().unwrap_or(0.0),
            server["rss_per_consultation_bytes"].as_f64().unwrap_or(0.0) / 1024.0,
            server["anon_rss_per_consultation_bytes"].as_f64().unwrap_or(0.0) / 1024.0,
        );
    }
    for failure in r["failures"].as_array().into_iter().flatten() {
        out += &format!("  failed: {}\n", failure.as_str().unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
