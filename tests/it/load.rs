//! The load tool at a small size, as CI runs it: `gatehouse-load` provisions through the real
//! API, plays consultations of webrtc-rs clients through the real gateway, and every payload
//! sent in its window arrives, intact and once. Figures are checked for presence, never speed.

use std::process::Command;

use serde_json::Value;

use crate::schedule::PASSWORD;
use crate::support::Gateway;

const LOAD: &str = env!("CARGO_BIN_EXE_gatehouse-load");

fn load(args: &[&str], password: Option<&str>, dir: &std::path::Path) -> Value {
    let report = dir.join("report.json");
    let mut command = Command::new(LOAD);
    command.args(args).arg("--json").arg(&report).env_remove("GATEHOUSE_LOAD_PASSWORD");
    if let Some(password) = password {
        command.env("GATEHOUSE_LOAD_PASSWORD", password);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gatehouse-load failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("one-way latency ms: p50"), "no summary:\n{stdout}");
    serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap()
}

/// Every payload sent in the window arrived, intact and once, from the right partner.
fn assert_lossless(report: &Value, consultations: u64, seconds: f64, video_packets_per_second: f64) {
    assert_eq!(report["consultations_up"], consultations, "{report:#}");
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0), "{report:#}");
    let media = &report["media"];
    for kind in ["audio", "video"] {
        let stream = &media[kind];
        assert_eq!(stream["streams"], 2 * consultations, "{kind}: {stream}");
        assert_eq!(stream["received"], stream["sent"], "{kind} payloads were lost: {stream}");
        assert_eq!(stream["damaged"], 0, "{kind}: {stream}");
        assert_eq!(stream["duplicates"], 0, "{kind}: {stream}");
    }
    // 50 audio packets a second per participant and the video's, less scheduling slack.
    let expected = 2.0 * consultations as f64 * (50.0 + video_packets_per_second) * seconds;
    assert!(media["sent"].as_f64().unwrap() > 0.8 * expected, "too few payloads sent: {media}");
    assert_eq!((&media["foreign"], &media["undecodable"]), (&Value::from(0), &Value::from(0)), "{media}");
    assert!(media["latency_ms"]["p99"].as_f64().is_some());
    let joins = &report["join_to_first_media_ms"];
    assert_eq!(joins["participants_without_media"], 0);
    assert!(joins["room"]["max"].as_f64().is_some() && joins["clinician"]["max"].as_f64().is_some());
}

#[test]
fn two_consultations_through_the_gateway_lose_nothing() {
    let (gw, dir) = Gateway::start();
    gw.add_staff("load", "scheduler", PASSWORD, false);
    let gateway = format!("https://localhost:{}", gw.public.port());
    let pid = gw.pid().to_string();
    let ca = gw.ca_path();
    let args = ["--gateway", &gateway, "--ca", ca.to_str().unwrap(), "--scheduler", "load", "--gateway-pid", &pid];
    let mut all = args.to_vec();
    // Below the gateway's starting bandwidth estimate (1 Mbit/s), which the full 1.5 Mbit/s
    // exceeds until the estimate grows: the benchmark measures that; this checks delivery.
    all.extend(["--consultations", "2", "--duration", "5s", "--ramp", "1s", "--video-kbps", "500"]);
    let report = load(&all, Some(PASSWORD), dir.path());
    assert_eq!(report["mode"], "gateway");
    assert_lossless(&report, 2, 5.0, 62.5);
    let server = &report["server"];
    assert!(server["cpu_seconds"].as_f64().unwrap() > 0.0, "{server}");
    assert!(server["rss_end_bytes"].as_u64().unwrap() > 0, "{server}");
    let own = server["anon_rss_end_bytes"].as_u64().unwrap();
    assert!(own > 0 && own <= server["rss_end_bytes"].as_u64().unwrap(), "{server}");
    assert!(server["forwarded_packets_per_cpu_second"].as_f64().unwrap() > 0.0, "{server}");

    // Without the scheduler's password the tool says what to set, and provisions nothing.
    let out = Command::new(LOAD).args(args).env_remove("GATEHOUSE_LOAD_PASSWORD").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEHOUSE_LOAD_PASSWORD"));
}

#[test]
fn the_direct_floor_connects_the_same_clients_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let report = load(&["--direct", "--consultations", "1", "--duration", "2s", "--ramp", "0s"], None, dir.path());
    assert_eq!(report["mode"], "direct");
    assert!(report.get("server").is_none());
    assert_lossless(&report, 1, 2.0, 187.5);
}
