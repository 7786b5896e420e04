//! Test harness: starts the real `gatehouse` binary on port 0 in a temporary folder, learns its
//! addresses from its JSON log lines, and speaks HTTPS to it with a rustls client that trusts
//! only the generated development CA.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tempfile::TempDir;

pub const BINARY: &str = env!("CARGO_BIN_EXE_gatehouse");
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running gateway process and the folder it keeps its state in.
pub struct Gateway {
    child: Child,
    pub dir: PathBuf,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// The UDP media address.
    pub media: SocketAddr,
    /// Every line the gateway wrote to standard error so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Every line the gateway printed on standard output so far.
    pub printed: Arc<Mutex<Vec<String>>>,
}

/// `serve` flags for listeners on loopback at ports the system picks, so runs never collide.
pub const LOOPBACK_ANY_PORTS: [&str; 6] =
    ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--media-port", "0"];

impl Gateway {
    /// Starts a gateway in a fresh temporary folder.
    pub fn start() -> (Self, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Self::start_in(dir.path(), &[]), dir)
    }

    /// Starts a gateway whose data and certificate folders live under `dir`. Its clock can be
    /// moved with [`Gateway::advance_clock`].
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        let mut args = LOOPBACK_ANY_PORTS.to_vec();
        args.extend_from_slice(extra);
        Self::launch(Command::new(BINARY), dir, &args)
    }

    /// Starts a gateway inside the network namespace `netns` (through `ip netns exec`), with
    /// `args` saying where it listens.
    pub fn start_in_netns(netns: &str, dir: &Path, args: &[&str]) -> Self {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, BINARY]);
        Self::launch(command, dir, args)
    }

    fn launch(mut command: Command, dir: &Path, args: &[&str]) -> Self {
        let mut child = command
            .env("GATEHOUSE_TEST_CLOCK_OFFSET_FILE", dir.join("clock-offset"))
            .arg("serve")
            .args(["--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--certs-dir")
            .arg(dir.join("certs"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gatehouse");
        let stdout = child.stdout.take().unwrap();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send((v["listener"].as_str().unwrap_or_default().to_owned(), v["addr"].clone()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (mut public, mut admin, mut media) = (None, None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while public.is_none() || admin.is_none() || media.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (listener, addr) = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("gatehouse did not start; log:\n{}", log.lock().unwrap().join("\n"))
            });
            let addr: SocketAddr = addr.as_str().unwrap().parse().unwrap();
            match listener.as_str() {
                "https" => public = Some(addr),
                "admin" => admin = Some(addr),
                "media" => media = Some(addr),
                "media-tcp" => {}
                other => panic!("unknown listener {other}"),
            }
        }
        Self {
            child,
            dir: dir.to_owned(),
            public: public.unwrap(),
            admin: admin.unwrap(),
            media: media.unwrap(),
            log,
            printed,
        }
    }

    /// Moves the gateway's clock forward by `seconds` (in total, from its start).
    pub fn set_clock_offset(&self, seconds: i64) {
        std::fs::write(self.dir.join("clock-offset"), seconds.to_string()).unwrap();
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("certs").join("ca.pem")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn terminate(&self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// GET on the admin listener, over plain HTTP.
    pub fn admin_get(&self, path: &str) -> Response {
        let mut stream = TcpStream::connect(self.admin).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
        Response::read(&mut stream)
    }

    /// GET on the public API with a bearer token.
    pub fn api_get(&self, path: &str, token: &str) -> Response {
        let head = format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n");
        https_request(self.public, &self.ca_path(), &head, &rustls::version::TLS13).0
    }

    /// Any request on the public listener over TLS 1.3.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if method != "GET" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        https_request_with_body(self.public, &self.ca_path(), &head, body.as_bytes())
    }

    /// Creates a staff account with the CLI; returns its TOTP secret (base32) if one was enrolled.
    pub fn add_staff(&self, name: &str, role: &str, password: &str, totp: bool) -> Option<String> {
        let data = self.dir.join("data");
        let mut args = vec!["staff", "add", "--name", name, "--role", role, "--data-dir", data.to_str().unwrap()];
        if totp {
            args.push("--totp");
        }
        let mut child = Command::new(BINARY)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "staff add failed: {}", String::from_utf8_lossy(&out.stderr));
        let uri = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        uri.split("secret=").nth(1).map(|rest| rest.split('&').next().unwrap().to_owned())
    }

    /// Signs in through the API; returns the session.
    pub fn sign_in(&self, name: &str, password: &str, totp_secret: Option<&str>) -> Session {
        let mut body = serde_json::json!({ "username": name, "password": password });
        if let Some(secret) = totp_secret {
            body["totp"] = totp_now(secret).into();
        }
        let response = self.request("POST", "/api/v1/session", &[], Some(&body));
        assert_eq!(response.status, 200, "sign-in failed: {}", response.body);
        let cookie = response.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
        Session { cookie, csrf: response.json()["csrf_token"].as_str().unwrap().to_owned() }
    }

    /// A request as a signed-in staff member, with the CSRF token.
    pub fn staff_request(
        &self,
        session: &Session,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Response {
        let headers = [("Cookie", session.cookie.as_str()), ("X-CSRF-Token", session.csrf.as_str())];
        self.request(method, path, &headers, body.as_ref())
    }

    /// `gatehouse audit token` against this gateway's data folder.
    pub fn audit_token(&self) -> String {
        let data = self.dir.join("data");
        let (code, out, err) =
            run_cli(&["audit", "token", "--label", "security desk", "--data-dir", data.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{err}");
        out.trim().to_owned()
    }

    /// GET on the public listener over TLS with the given protocol version.
    pub fn https_get(
        &self,
        path: &str,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Response, rustls::ProtocolVersion) {
        https_get(self.public, &self.ca_path(), path, version)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed-in staff member's cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// Held by the tests whose verdict depends on timely media (real browsers, bandwidth
/// estimation), so that on a small machine they do not starve one another of CPU and read
/// the resulting delays as congestion.
pub fn media_heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves nothing to repair.
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The current TOTP code for a base32 secret.
pub fn totp_now(secret: &str) -> String {
    let secret = gatehouse::auth::totp::TotpSecret::from_base32(secret).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    gatehouse::auth::totp::code_at(&secret, now, 6)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Reads one response: up to Content-Length when given (servers may keep the connection
    /// open), otherwise to the end of the stream.
    pub fn read(stream: &mut impl Read) -> Self {
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect::<Vec<_>>();
        let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = raw[head_end..].to_vec();
        match length {
            Some(length) => {
                while body.len() < length {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body.extend_from_slice(&buf[..n]),
                    }
                }
                body.truncate(length);
            }
            None => {
                let _ = stream.read_to_end(&mut body);
            }
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(&body) } else { body };
        Self { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// For a `429 rate_limited`: its `Retry-After`, which must be whole seconds, at least one,
    /// and the same as the body's `retry_after_s`.
    pub fn retry_after(&self) -> u64 {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.json()["code"], "rate_limited", "{}", self.body);
        let header = self.header("retry-after").unwrap_or_else(|| panic!("a 429 without Retry-After: {self:?}"));
        let seconds: u64 = header.parse().unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {header:?}"));
        assert!(seconds >= 1, "Retry-After: {seconds}");
        assert_eq!(self.json()["retry_after_s"], seconds, "{}", self.body);
        seconds
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A rustls client configuration that trusts only the CA at `ca`.
pub fn client_config(ca: &Path, version: &'static rustls::SupportedProtocolVersion) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in gatehouse::certs::load_certs(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn https_get(
    addr: SocketAddr,
    ca: &Path,
    path: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Response, rustls::ProtocolVersion) {
    https_request(addr, ca, &format!("GET {path} HTTP/1.1\r\n"), version)
}

/// Sends a request with a body over TLS 1.3.
pub fn https_request_with_body(addr: SocketAddr, ca: &Path, head: &str, body: &[u8]) -> Response {
    tls_exchange(addr, ca, head, body, &rustls::version::TLS13).0
}

/// Sends `head` (request line and any headers, each ending in CRLF) over TLS and reads the response.
pub fn https_request(
    addr: SocketAddr,
    ca: &Path,
    head: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Response, rustls::ProtocolVersion) {
    tls_exchange(addr, ca, head, &[], version)
}

/// Sends `head` and `body` on a connection of its own in TLS `version`; returns the response and
/// the version negotiated.
fn tls_exchange(
    addr: SocketAddr,
    ca: &Path,
    head: &str,
    body: &[u8],
    version: &'static rustls::SupportedProtocolVersion,
) -> (Response, rustls::ProtocolVersion) {
    let config = client_config(ca, version);
    let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(tls, "{head}Host: localhost\r\nConnection: close\r\n\r\n").unwrap();
    tls.write_all(body).unwrap();
    let response = Response::read(&mut tls);
    let version = conn.protocol_version().unwrap();
    (response, version)
}

/// Runs `gatehouse` with `args` to completion, returning its exit code and standard error.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BINARY).args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
