//! The foundation through its real boundaries: TLS versions, admin probes, certificates,
//! settings, shutdown, and the Docker files' use of the CLI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Gateway, LOOPBACK_ANY_PORTS, https_get, run_cli};

#[test]
fn tls13_and_tls12_clients_get_the_page() {
    let (gw, _dir) = Gateway::start();
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let (response, negotiated) = gw.https_get("/", version);
        assert_eq!(negotiated, expected);
        assert_eq!(response.status, 200);
        assert!(response.body.contains("<title>Gatehouse</title>"), "{}", response.body);
        assert!(response.header("content-security-policy").unwrap().contains("script-src 'self'"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
    }
    let (missing, _) = gw.https_get("/no/such/page", &rustls::version::TLS13);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");
}

#[test]
fn a_malformed_address_a_wrong_method_and_a_plain_request_for_signalling_get_the_one_error_shape() {
    let (gw, _dir) = Gateway::start();
    for (method, path, status, code) in [
        ("GET", "/static/%FF", 400, "invalid_path"),
        ("PUT", "/room", 405, "method_not_allowed"),
        ("GET", "/ws", 400, "websocket_expected"),
    ] {
        let response = gw.request(method, path, &[], None);
        assert_eq!(response.status, status, "{method} {path}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{method} {path}");
        assert!(!response.json()["message"].as_str().unwrap_or_default().is_empty(), "{method} {path}");
    }
}

/// A hand-built TLS 1.1 ClientHello (no supported_versions extension, so no newer version is on offer).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // empty session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.1-era suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, (handshake.len() >> 8) as u8, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls11_client_hello_is_refused() {
    let (gw, _dir) = Gateway::start();
    let mut sock = TcpStream::connect(gw.public).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(&tls11_client_hello()).unwrap();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    // The only acceptable answers are a fatal protocol_version alert or nothing at all; a
    // handshake record (0x16) would mean a ServerHello.
    assert!(reply.first() != Some(&0x16), "server answered a TLS 1.1 hello with a handshake: {reply:02x?}");
    if !reply.is_empty() {
        assert_eq!(&reply[..1], &[0x15], "expected an alert record: {reply:02x?}");
        assert_eq!(reply[5], 0x02, "expected a fatal alert: {reply:02x?}");
        // protocol_version or handshake_failure: either way no TLS 1.1 session.
        assert!([70, 40].contains(&reply[6]), "unexpected alert: {reply:02x?}");
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_nothing_useful() {
    let (gw, _dir) = Gateway::start();
    let mut sock = TcpStream::connect(gw.public).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    assert!(!String::from_utf8_lossy(&reply).contains("Gatehouse"), "plain HTTP was served");
}

/// The first write of an ICE-TCP client: an RFC 4571 frame holding a STUN binding request.
fn framed_binding_request() -> Vec<u8> {
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend(*b"transaction1");
    let mut frame = u16::try_from(stun.len()).unwrap().to_be_bytes().to_vec();
    frame.extend(stun);
    frame
}

/// Writes `opening` and reports whether the gateway closed the connection within `within`
/// without sending a byte (`Some(true)`), sent something (`Some(false)`), or kept it open
/// silently (`None`).
fn closed_unanswered(public: std::net::SocketAddr, opening: &[u8], within: Duration) -> Option<bool> {
    let mut sock = TcpStream::connect(public).unwrap();
    sock.set_read_timeout(Some(within)).unwrap();
    sock.write_all(opening).unwrap();
    let mut reply = [0u8; 256];
    match sock.read(&mut reply) {
        Ok(0) => Some(true),
        Ok(_) => Some(false),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        // A reset is a close too.
        Err(_) => Some(true),
    }
}

#[test]
fn the_public_port_serves_https_and_ice_tcp_and_closes_anything_else() {
    let (gw, _dir) = Gateway::start();
    // ICE-TCP is taken and waits, silent, for a binding request that a participant accepts
    // (ICE-lite: the gateway answers only checks for a participant it knows).
    assert_eq!(closed_unanswered(gw.public, &framed_binding_request(), Duration::from_millis(700)), None);
    // Anything that opens neither TLS nor ICE-TCP is closed at once, unanswered.
    for opening in [&b"SSH-2.0-OpenSSH_9.2\r\n"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[0x00, 0x14, 0x00, 0x11]] {
        let closed = closed_unanswered(gw.public, opening, Duration::from_secs(3));
        assert_eq!(closed, Some(true), "{:?} was not closed unanswered", String::from_utf8_lossy(opening));
    }
    // HTTPS on the same port, all the while.
    let (response, _) = gw.https_get("/", &rustls::version::TLS13);
    assert_eq!(response.status, 200);
    let metrics = gw.admin_get("/metrics").body;
    for line in [
        r#"gatehouse_public_connections_total{outcome="ice_tcp"} 1"#,
        r#"gatehouse_public_connections_total{outcome="unrecognised"} 3"#,
        r#"gatehouse_public_connections_total{outcome="tls"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // With ICE-TCP off, or on a port of its own, the public port refuses it too.
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), &["--media-tcp-port", "off"]);
    assert_eq!(closed_unanswered(gw.public, &framed_binding_request(), Duration::from_secs(3)), Some(true));
    let metrics = gw.admin_get("/metrics").body;
    assert!(metrics.contains(r#"gatehouse_public_connections_total{outcome="ice_tcp_not_served"} 1"#), "{metrics}");
}

#[test]
fn admin_probes_and_metrics() {
    let (gw, _dir) = Gateway::start();
    // The media port is bound and logged like the other listeners.
    assert!(gw.media.ip().is_loopback() && gw.media.port() != 0, "{}", gw.media);
    let health = gw.admin_get("/healthz");
    assert_eq!(health.status, 200);
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["ready"], true);

    gw.https_get("/", &rustls::version::TLS13);
    gw.https_get("/static/style.css", &rustls::version::TLS13);
    let metrics = gw.admin_get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = &metrics.body;
    assert!(text.contains(&format!("gatehouse_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("gatehouse_uptime_seconds "), "{text}");
    assert!(
        text.contains(r#"gatehouse_http_requests_total{listener="public",method="GET",route="/",status="200"} 1"#),
        "{text}"
    );
    // Route templates, never concrete paths.
    assert!(text.contains(r#"route="/static/{*path}""#), "{text}");
    assert!(!text.contains("style.css"), "{text}");
    assert!(text.contains("gatehouse_http_request_duration_seconds_bucket"), "{text}");

    // One span per request, by route template, with status and latency.
    let log = gw.log.lock().unwrap().join("\n");
    let request_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request" && v["span"]["route"] == "/static/{*path}")
        .unwrap_or_else(|| panic!("no request line in the log:\n{log}"));
    assert_eq!(request_line["status"], 200);
    assert!(request_line["latency_ms"].is_number());
    assert!(!log.contains("style.css"), "a concrete path reached the log");
}

#[test]
fn readiness_drops_at_shutdown_and_sigterm_exits_zero_within_the_drain() {
    let (mut gw, _dir) = Gateway::start();
    assert_eq!(gw.admin_get("/readyz").status, 200);
    // An open connection keeps the drain going, so readiness can be observed meanwhile.
    let held = TcpStream::connect(gw.public).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    gw.terminate();
    let mut saw_503 = false;
    for _ in 0..100 {
        let ready = gw.admin_get("/readyz");
        if ready.status == 503 {
            assert_eq!(ready.json()["code"], "shutting_down");
            saw_503 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_503, "readiness never dropped during shutdown");
    // New connections are no longer accepted once shutdown has begun.
    let refused = TcpStream::connect(gw.public)
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = [0u8; 1];
            s.write_all(b"\x16")?;
            s.read(&mut buf)
        })
        .map_or(true, |n| n == 0);
    assert!(refused, "a new connection was served during shutdown");
    drop(held);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("gatehouse did not exit within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_with_a_stuck_client_still_exits_within_the_drain_limit() {
    let (mut gw, _dir) = Gateway::start();
    let _held = TcpStream::connect(gw.public).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(12)).expect("gatehouse did not exit");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[test]
fn a_second_start_reuses_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (first_cert, first_ca) = {
        let gw = Gateway::start_in(dir.path(), &[]);
        gw.https_get("/", &rustls::version::TLS13);
        (std::fs::read(dir.path().join("certs/server.pem")).unwrap(), std::fs::read(gw.ca_path()).unwrap())
    };
    let gw = Gateway::start_in(dir.path(), &[]);
    assert_eq!(std::fs::read(dir.path().join("certs/server.pem")).unwrap(), first_cert);
    assert_eq!(std::fs::read(gw.ca_path()).unwrap(), first_ca);
    let (response, _) = gw.https_get("/", &rustls::version::TLS13);
    assert_eq!(response.status, 200);
}

#[test]
fn operator_certificates_are_served_and_a_mismatched_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = gatehouse::certs::generate_development(&dir.path().join("a"), &[]).unwrap();
    let b = gatehouse::certs::generate_development(&dir.path().join("b"), &[]).unwrap();
    let cert = a.cert.to_str().unwrap();
    let gw = Gateway::start_in(dir.path(), &["--tls-cert", cert, "--tls-key", a.key.to_str().unwrap()]);
    let (response, _) = https_get(gw.public, &dir.path().join("a/ca.pem"), "/", &rustls::version::TLS13);
    assert_eq!(response.status, 200);
    assert!(!dir.path().join("certs").exists(), "development certificates were generated needlessly");

    let data = dir.path().join("data2");
    let args = [&["serve"][..], &LOOPBACK_ANY_PORTS, &["--media-tcp-port", "0", "--tls-cert", cert]].concat();
    let env = [("GATEHOUSE_TLS_KEY", b.key.to_str().unwrap()), ("GATEHOUSE_DATA_DIR", data.to_str().unwrap())];
    let (code, _, err) = run_cli(&args, &env);
    assert_ne!(code, 0);
    assert!(err.contains("does not match"), "{err}");
    let (code, _, err) =
        run_cli(&["serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent-key.pem"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--tls-cert") && err.contains("/nonexistent.pem"), "{err}");
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nadmin-lisen = \"127.0.0.1:0\"\n").unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["serve", "--listen", "nowhere"], vec![], "--listen"),
        (vec!["serve"], vec![("GATEHOUSE_ADMIN_LISTEN", "not-an-address")], "GATEHOUSE_ADMIN_LISTEN"),
        (vec!["serve", "--log-format", "xml"], vec![], "--log-format"),
        (vec!["serve", "--config", config.to_str().unwrap()], vec![], "admin-lisen"),
        (vec!["serve", "--log", "gatehouse=[[["], vec![], "--log"),
        (vec!["serve", "--media-tcp-port", "udp"], vec![], "--media-tcp-port"),
    ];
    for (args, env, setting) in cases {
        let (code, _, err) = run_cli(&args, &env);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(setting), "{args:?}: message does not name {setting}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    }
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Gateway::start_in(dir.path(), &[]));
    let db = rusqlite::Connection::open(dir.path().join("data/gatehouse.db")).unwrap();
    db.pragma_update(None, "user_version", 9999).unwrap();
    drop(db);
    let data = dir.path().join("data");
    let args = [&["serve"][..], &LOOPBACK_ANY_PORTS, &["--data-dir", data.to_str().unwrap()]].concat();
    let (code, _, err) = run_cli(&args, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("newer Gatehouse"), "{err}");
}

#[test]
fn docker_files_use_only_settings_that_serve_knows() {
    let (code, help, _) = run_cli(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = Vec::new();
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    for line in
        dockerfile.lines().filter(|l| l.starts_with("CMD") || l.starts_with("ENTRYPOINT") || l.starts_with("ENV"))
    {
        used.extend(settings_in(line));
    }
    let compose = std::fs::read_to_string(root.join("docker/compose.yaml")).unwrap();
    for line in compose.lines().filter(|l| !l.trim_start().starts_with('#')) {
        used.extend(settings_in(line));
    }
    assert!(used.iter().any(|s| s.starts_with("--")), "no flags found in the Docker files");
    assert!(used.iter().any(|s| s.starts_with("GATEHOUSE_")), "no environment variables found in the Docker files");
    for setting in used {
        assert!(
            help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).any(|w| w == setting),
            "{setting} is used by the Docker files but unknown to `gatehouse serve --help`"
        );
    }
}

/// Flags (`--x`) and `GATEHOUSE_*` variables mentioned in a piece of text.
fn settings_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| (w.starts_with("--") && w.len() > 2) || w.starts_with("GATEHOUSE_"))
        .map(str::to_owned)
        .collect()
}
