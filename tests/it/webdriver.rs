//! A small W3C WebDriver client for Debian's chromedriver and headless Chromium: enough to open
//! pages, run scripts and take screenshots. Each browser gets its own profile, so two of them
//! are two independent people.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Response;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser tests can run here (scripts/test installs both).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A running chromedriver.
pub struct Driver {
    child: Child,
    port: u16,
    /// The network namespace chromedriver and its browsers run in, if not this process's own.
    netns: Option<String>,
}

impl Driver {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::launch(Command::new(CHROMEDRIVER), port, None)
    }

    /// Starts chromedriver, and so every browser it opens, inside network namespace `netns`:
    /// the browsers reach only that namespace's networks.
    pub fn start_in_netns(netns: &str) -> Self {
        // A fresh namespace has every port free.
        let port = 9515;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, CHROMEDRIVER]);
        Self::launch(command, port, Some(netns.to_owned()))
    }

    fn launch(mut command: Command, port: u16, netns: Option<String>) -> Self {
        let child = command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, port, netns };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(response) = driver.call("GET", "/status", None)
                && response["value"]["ready"] == true
            {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver did not become ready");
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<Value> {
        let connect = || TcpStream::connect(("127.0.0.1", self.port));
        // A socket belongs to the namespace it was made in, whichever thread uses it then.
        let mut stream = match &self.netns {
            Some(ns) => crate::netns::Networks::within(ns, connect)?,
            None => connect()?,
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let response = Response::read(&mut stream);
        Ok(serde_json::from_str(&response.body).unwrap_or(Value::Null))
    }

    /// A new browser with fake camera and microphone.
    pub fn browser(&self) -> Browser<'_> {
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            // ICE over loopback: without it Chromium offers no 127.0.0.1 candidate.
            "--allow-loopback-in-peer-connection".into(),
            // The test gateway's development CA is not in this fresh profile.
            "--ignore-certificate-errors".into(),
            "--window-size=1280,720".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let response = self.call("POST", "/session", Some(capabilities)).unwrap();
        let session =
            response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}")).to_owned();
        let browser = Browser { driver: self, session, _profile: profile };
        browser.reset_viewport();
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// WebDriver key codes for [`Browser::keys`].
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
}

/// One browser session.
pub struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.driver.call(method, &path, body).unwrap()["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` in the page and returns its result.
    pub fn run(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Runs `script`, which calls its last argument with the result, and returns that.
    pub fn run_async(&self, script: &str) -> Value {
        self.call("POST", "/execute/async", Some(json!({ "script": script, "args": [] })))
    }

    /// Polls `script` until it returns something truthy, or panics after `limit`.
    pub fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.run(script);
            if !(value.is_null() || value == false) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page says: {}",
                self.run("return document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `script` with `args` (JSON values, reachable as `arguments[i]`).
    pub fn run_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Clicks the element `selector` names, as a person would (it must be visible).
    pub fn click(&self, selector: &str) {
        let found = self.run_with(
            "const el = document.querySelector(arguments[0]); if (!el || !el.checkVisibility()) return false; el.click(); return true;",
            vec![json!(selector)],
        );
        assert_eq!(found, json!(true), "no visible {selector} to click; page says: {}", self.text("body"));
    }

    /// Types `value` into the field `selector` names, firing the events a person's typing fires.
    pub fn fill(&self, selector: &str, value: &str) {
        let found = self.run_with(
            "const el = document.querySelector(arguments[0]); if (!el) return false; el.focus(); el.value = arguments[1]; \
             el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true })); return true;",
            vec![json!(selector), json!(value)],
        );
        assert_eq!(found, json!(true), "no field {selector}");
    }

    /// The visible text of the element `selector` names ("" when there is none).
    pub fn text(&self, selector: &str) -> String {
        self.run_with(
            "const el = document.querySelector(arguments[0]); return el ? el.innerText : '';",
            vec![json!(selector)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text of `selector` contains `needle`; returns the text.
    pub fn wait_text(&self, selector: &str, needle: &str, limit: Duration) -> String {
        let script = "const el = document.querySelector(arguments[0]); return el && el.checkVisibility() && el.innerText.includes(arguments[1]) ? el.innerText : null;";
        let deadline = Instant::now() + limit;
        loop {
            if let Some(text) = self.run_with(script, vec![json!(selector), json!(needle)]).as_str() {
                return text.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {selector} to say {needle:?}; it says {:?}; the page says: {}",
                self.text(selector),
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Presses keys on whatever has the focus, as a keyboard would (WebDriver key codes:
    /// TAB, ENTER and so on are in [`keys`]).
    pub fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
    }

    /// Emulates a viewport of `width` x `height` CSS pixels at `scale` device pixels each
    /// (1280x720 at 200% zoom is 640x360 at scale 2), through the DevTools protocol.
    pub fn emulate_viewport(&self, width: u32, height: u32, scale: f64) {
        let params = json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": false });
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params })),
        );
    }

    /// Back to a 1280x720 screen at 100%, the kiosk's (the headless window's own viewport is
    /// smaller than its window size).
    pub fn reset_viewport(&self) {
        self.emulate_viewport(1280, 720, 1.0);
    }

    /// Runs axe-core (from node_modules, injected through WebDriver, which the page's CSP does
    /// not govern) against the WCAG 2.1 A and AA rules, and fails on any serious or critical
    /// violation. Skips when axe-core is not installed outside CI.
    pub fn assert_accessible(&self, what: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/axe-core/axe.min.js");
        let Ok(axe) = std::fs::read_to_string(&path) else {
            assert!(std::env::var_os("CI").is_none(), "axe-core is required in CI: run scripts/test");
            eprintln!("axe-core is missing (run scripts/test): {what} not checked");
            return;
        };
        if self.run("return typeof window.axe === 'object';") != json!(true) {
            self.run(&format!("{axe}\nreturn true;"));
        }
        let result = self.run_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.html) }))))
               .catch((e) => done([{ id: 'axe-error', help: String(e) }]));",
        );
        let violations = result.as_array().cloned().unwrap_or_default();
        assert!(
            violations.is_empty(),
            "{what}: accessibility violations: {}",
            serde_json::to_string_pretty(&violations).unwrap()
        );
    }

    /// Saves a PNG screenshot to `target/screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", None);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).unwrap_or_default();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self.driver.call("DELETE", &format!("/session/{}", self.session), None);
    }
}
