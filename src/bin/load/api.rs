//! The few calls of the gateway's JSON API that a load run needs, over real HTTPS: a
//! scheduler signs in, enrols rooms, books appointments and issues the clinicians' links.
//!
//! One HTTP/1.1 request per TLS connection keeps this small; provisioning makes a few
//! hundred requests before the measurement starts, so their cost is beside the point.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The gateway's public listener, as given by `--gateway https://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn parse(url: &str) -> Result<Origin> {
        let rest = url.strip_prefix("https://").ok_or_else(|| anyhow!("--gateway must start with https://"))?;
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().with_context(|| format!("bad port in {url}"))?),
            None => (authority, 443),
        };
        if host.is_empty() || host.contains('/') {
            bail!("--gateway must be https://HOST[:PORT], without a path");
        }
        Ok(Origin { host: host.to_owned(), port })
    }

    pub fn ws_url(&self) -> String {
        format!("wss://{}:{}/ws", self.host, self.port)
    }
}

/// What one consultation's two participants join with.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The room's device credential.
    pub device: String,
    /// The clinician's join-link token.
    pub link: String,
}

/// A signed-in scheduler.
pub struct Scheduler {
    origin: Origin,
    tls: TlsConnector,
    cookie: String,
    csrf: String,
}

impl Scheduler {
    pub async fn sign_in(
        origin: Origin,
        tls: Arc<rustls::ClientConfig>,
        username: &str,
        password: &str,
    ) -> Result<Scheduler> {
        let tls = TlsConnector::from(tls);
        let body = json!({ "username": username, "password": password });
        let response = request(&origin, &tls, "POST", "/api/v1/session", &[], Some(&body)).await?;
        if response.status != 200 {
            bail!("signing in as {username} failed ({}): {}", response.status, response.body);
        }
        let cookie = response
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .ok_or_else(|| anyhow!("the sign-in set no session cookie"))?
            .to_owned();
        let csrf = response.json()?["csrf_token"].as_str().ok_or_else(|| anyhow!("no csrf_token"))?.to_owned();
        Ok(Scheduler { origin, tls, cookie, csrf })
    }

    /// Enrols a room, books it an appointment open now and lasting `length`, and issues the
    /// clinician's link. `label` keeps the room's name unique to this run.
    pub async fn consultation(&self, label: &str, length: SignedDuration) -> Result<Credentials> {
        let room = self
            .call("POST", "/api/v1/rooms", json!({ "site": "Load test", "name": label, "timezone": "Europe/London" }))
            .await?;
        let device = room["device_credential"].as_str().ok_or_else(|| anyhow!("no device credential"))?.to_owned();
        let now = Timestamp::now();
        let appointment = self
            .call(
                "POST",
                "/api/v1/appointments",
                json!({
                    "room_id": room["room"]["id"],
                    "start": (now - SignedDuration::from_mins(5)).to_string(),
                    "end": (now + length).to_string(),
                    "clinician": { "name": "Dr Load", "email": "load@hospital.example" },
                    "patient_pseudonym": "LOAD-0001",
                    "escort_name": "Officer Load",
                }),
            )
            .await?;
        let id = appointment["id"].as_str().ok_or_else(|| anyhow!("no appointment id"))?;
        let issued = self
            .call(
                "POST",
                &format!("/api/v1/appointments/{id}/links"),
                json!({ "participant_id": appointment["clinician"]["id"] }),
            )
            .await?;
        let url = issued["url"].as_str().ok_or_else(|| anyhow!("no link url"))?;
        let link = url.rsplit('/').next().unwrap_or_default().to_owned();
        Ok(Credentials { device, link })
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let headers = [("Cookie", self.cookie.as_str()), ("X-CSRF-Token", self.csrf.as_str())];
        let response = request(&self.origin, &self.tls, method, path, &headers, Some(&body)).await?;
        if !(200..300).contains(&response.status) {
            bail!("{method} {path} failed ({}): {}", response.status, response.body);
        }
        response.json()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("the gateway answered with non-JSON: {}", self.body))
    }
}

async fn request(
    origin: &Origin,
    tls: &TlsConnector,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Response> {
    let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
        .await
        .with_context(|| format!("connecting to {}:{}", origin.host, origin.port))?;
    let name = ServerName::try_from(origin.host.clone())?;
    let mut stream = tls.connect(name, tcp).await.context("the TLS handshake with the gateway failed")?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", origin.host);
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify still delivered a whole response when the
    // length matches; the parse below checks.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP response from the gateway"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("a malformed HTTP status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        bail!("the gateway sent a chunked response, which this client does not read");
    }
    Ok(Response { status, headers, body: body.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse() {
        let o = Origin::parse("https://localhost:8443/").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("localhost", 8443));
        assert_eq!(o.ws_url(), "wss://localhost:8443/ws");
        assert_eq!(Origin::parse("https://gw.example").unwrap().port, 443);
        assert!(Origin::parse("http://localhost:1").is_err());
        assert!(Origin::parse("https://localhost:1/x").is_err());
    }
}
