//! The one place that reads settings: command-line flags, `GATEHOUSE_*` environment variables and an optional TOML file.
//!
//! Precedence is flag > environment > file > built-in default. clap resolves the first two;
//! the file fills whatever they left unset; [`ServeConfig::resolve`] applies the defaults and
//! checks the combination, naming the offending setting on failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::auth::door_throttle::DoorLimit;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_MEDIA_PORT: u16 = 8443;
pub const DEFAULT_CERTS_DIR: &str = "./certs";

/// Gatehouse: a secure video gateway for clinical consultations between prison rooms and hospitals.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: HTTPS, signalling and the admin listener.
    Serve(Box<ServeArgs>),
    /// Manage the gateway's TLS certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Verify, export and inspect the audit log; manage its signing key and API tokens.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage staff accounts (schedulers, security staff, admins).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Manage the join-link signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Enrol and list the prison rooms.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// List booked appointments.
    #[command(subcommand)]
    Appointments(AppointmentsCommand),
}

#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// Enrol a room and print its device credential, shown this once: type it into the room's
    /// kiosk page. The gateway may be running.
    Add(RoomAddArgs),
    /// List rooms: id, site, name, time zone and whether a device credential is active.
    List(DataDirArg),
}

#[derive(Debug, Args)]
pub struct RoomAddArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The prison (or other site) the room is in, e.g. "HMP Example".
    #[arg(long)]
    pub site: String,
    /// The room's name, as participants see it.
    #[arg(long)]
    pub name: String,
    /// The room's IANA time zone, e.g. Europe/London.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: String,
}

#[derive(Debug, Subcommand)]
pub enum AppointmentsCommand {
    /// List appointments by start time: id, start, end (UTC), room, status now and clinician.
    List(AppointmentListArgs),
}

#[derive(Debug, Args)]
pub struct AppointmentListArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Only this room's (its id, from `gatehouse rooms list`).
    #[arg(long, value_name = "ROOM_ID")]
    pub room: Option<String>,
    /// Only those ending after this time (RFC 3339, e.g. 2026-11-25T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only those starting before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new join-link signing key. Links issued before stay valid; restart the gateway so
    /// that it signs new links with the new key.
    RotateLinkKey(DataDirArg),
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create an account. The password is read from standard input; the TOTP enrolment URI is
    /// printed for security and admin accounts (and schedulers given --totp).
    Add(StaffAddArgs),
    /// List accounts.
    List(DataDirArg),
    /// Disable an account and end its sessions.
    Disable(StaffNameArgs),
    /// Give an account a new TOTP secret (a lost phone) and print its enrolment URI.
    ResetTotp(StaffNameArgs),
}

#[derive(Debug, Args)]
pub struct StaffAddArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The sign-in name.
    #[arg(long, value_name = "USERNAME")]
    pub name: String,
    /// scheduler, security or admin.
    #[arg(long, value_parser = ["scheduler", "security", "admin"])]
    pub role: String,
    /// The name shown in the console [default: the sign-in name].
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Enrol a second factor for a scheduler too (security and admin always have one).
    #[arg(long)]
    pub totp: bool,
}

#[derive(Debug, Args)]
pub struct StaffNameArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The sign-in name.
    #[arg(long, value_name = "USERNAME")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash, the Merkle tree and every checkpoint signature.
    ///
    /// Exit codes: 0 verified; 3 a record was modified; 4 a record is missing or was inserted;
    /// 5 records were reordered; 6 the log was truncated; 7 a checkpoint's signature is bad or a
    /// checkpoint was removed or swapped; 8 the log is inconsistent with the pinned checkpoint;
    /// 1 verification could not run.
    Verify(AuditVerifyArgs),
    /// Print the latest signed checkpoint, to keep and later pass as --pin.
    Checkpoint(DataDirArg),
    /// Print the verifier (public) key that checkpoints are signed with.
    Key(DataDirArg),
    /// Replace the signing key; checkpoints signed with the old key stay verifiable.
    RotateKey(DataDirArg),
    /// Export the audit log as JSON Lines, CSV or a FHIR R4 Bundle of AuditEvent resources.
    Export(AuditExportArgs),
    /// Issue a bearer token for the audit API; it is printed once and only its hash is kept.
    Token(AuditTokenArgs),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// The gateway's data folder.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// A checkpoint printed earlier by `gatehouse audit checkpoint`; the log must still contain its tree.
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,
    /// Also trust this verifier key (repeatable), e.g. one kept outside the gateway.
    #[arg(long = "key", value_name = "VKEY")]
    pub keys: Vec<String>,
    /// Verify a JSON Lines export instead of the data folder's log (needs --pin and --key).
    #[arg(long, value_name = "FILE", requires = "pin")]
    pub export: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// jsonl (authoritative, verifiable), csv or fhir.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv", "fhir"])]
    pub format: String,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditTokenArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// A label saying who holds the token, e.g. "security-desk".
    #[arg(long, value_name = "LABEL")]
    pub label: String,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// (Re)generate the development CA and server certificate in the certificates folder.
    Dev(CertsDevArgs),
}

#[derive(Debug, Args)]
pub struct CertsDevArgs {
    /// Folder for the development CA and server certificate.
    #[arg(long, env = "GATEHOUSE_CERTS_DIR", default_value = DEFAULT_CERTS_DIR, value_name = "DIR")]
    pub certs_dir: PathBuf,
    /// Extra DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "hostname", env = "GATEHOUSE_HOSTNAMES", value_delimiter = ',', value_name = "NAME")]
    pub hostnames: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Settings for `gatehouse serve`. Every field is optional here so that the layers can be merged;
/// the defaults live in [`ServeConfig::resolve`] and are shown in `--help`.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSettings {
    /// Public HTTPS listener address [default: 0.0.0.0:8443].
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener (plain HTTP: /healthz, /readyz, /metrics); keep it on loopback
    /// [default: 127.0.0.1:9090].
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Folder for the database and keys; created on first run [default: ./data].
    #[arg(long, env = "GATEHOUSE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Folder for the self-generated development CA and server certificate [default: ./certs].
    #[arg(long, env = "GATEHOUSE_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// PEM certificate chain to serve instead of the development certificate (needs --tls-key).
    #[arg(long, env = "GATEHOUSE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "GATEHOUSE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS name or IP address for the development certificate and printed URLs
    /// (repeatable; comma-separated in the environment).
    #[arg(long = "hostname", env = "GATEHOUSE_HOSTNAMES", value_delimiter = ',', value_name = "NAME")]
    #[serde(default, rename = "hostnames")]
    pub hostnames: Vec<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// UDP port for all media, on the --listen address: one port serves every participant
    /// [default: 8443].
    #[arg(long, env = "GATEHOUSE_MEDIA_PORT", value_name = "PORT")]
    pub media_port: Option<u16>,
    /// Where ICE-TCP media (RFC 4571), the fallback for networks that allow no UDP, is
    /// served: "listen" shares the --listen port with HTTPS (one TCP port for everything),
    /// a port number gives it a port of its own on the --listen address, "off" disables it
    /// [default: listen].
    #[arg(long, env = "GATEHOUSE_MEDIA_TCP_PORT", value_name = "listen|PORT|off")]
    pub media_tcp_port: Option<String>,
    /// Public address to advertise in media candidates when behind 1:1 NAT (repeatable;
    /// comma-separated in the environment) [default: the bound address].
    #[arg(long = "public-ip", env = "GATEHOUSE_PUBLIC_IPS", value_delimiter = ',', value_name = "IP")]
    #[serde(default, rename = "public-ips")]
    pub public_ips: Vec<std::net::IpAddr>,
    /// How long before an appointment's start joining opens, e.g. "15m" [default: 15m].
    #[arg(long, env = "GATEHOUSE_EARLY_JOIN", value_name = "DURATION")]
    pub early_join: Option<String>,
    /// How long after an appointment's booked end the session may run before it ends for
    /// everyone, e.g. "10m" [default: 10m].
    #[arg(long, env = "GATEHOUSE_OVERRUN", value_name = "DURATION")]
    pub overrun: Option<String>,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "gatehouse=debug" [default: info].
    #[arg(long, env = "GATEHOUSE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Join attempts one source address may make at once before it is limited, e.g. a ward of
    /// kiosks behind one address reconnecting together; credentials refused at the kiosk's
    /// lookup and the device checks spend from the same allowance. Other refused requests
    /// (staff and audit API requests without a valid session or token, signalling from another
    /// site's page) get as many records of their own, then are summarised [default: 30].
    #[arg(long, env = "GATEHOUSE_JOIN_BURST", value_name = "COUNT")]
    pub join_burst: Option<u32>,
    /// Once an address has used its burst, how long until it may make one more join attempt,
    /// e.g. "2s" [default: 2s].
    #[arg(long, env = "GATEHOUSE_JOIN_REFILL", value_name = "DURATION")]
    pub join_refill: Option<String>,
    /// Failed staff sign-ins one source address may make at once
    /// before every sign-in from it is refused for a while, e.g. a hospital's staff behind one
    /// address [default: 20].
    #[arg(long, env = "GATEHOUSE_SIGN_IN_BURST", value_name = "COUNT")]
    pub sign_in_burst: Option<u32>,
    /// Once an address has used its burst of failed sign-ins, how long until it may try once
    /// more, e.g. "15s" [default: 15s].
    #[arg(long, env = "GATEHOUSE_SIGN_IN_REFILL", value_name = "DURATION")]
    pub sign_in_refill: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Optional TOML file with the same settings (kebab-case keys); flags and environment win.
    #[arg(long, env = "GATEHOUSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// On an empty data folder, seed a demo room, an appointment open now, and a scheduler and
    /// a security account, and print how to use them.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub settings: ServeSettings,
}

/// The resolved, checked settings the gateway runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub tls: TlsSource,
    pub hostnames: Vec<String>,
    pub log_format: LogFormat,
    pub log: String,
    pub windows: crate::schedule::WindowSettings,
    /// How many join attempts one source address may make.
    pub join_limit: DoorLimit,
    /// How many failed staff sign-ins one source address may make.
    pub sign_in_limit: DoorLimit,
    /// The UDP address media is served on.
    pub media_listen: SocketAddr,
    /// Where ICE-TCP media is served.
    pub ice_tcp: IceTcpSetting,
    pub public_ips: Vec<std::net::IpAddr>,
    /// Seed a demo room, appointment and staff accounts into an empty data folder.
    pub demo: bool,
}

/// Where ICE-TCP media is served (`--media-tcp-port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceTcpSetting {
    /// On the --listen port, told apart from HTTPS by each connection's first bytes.
    SharedWithListen,
    /// On a TCP port of its own, at this address.
    OwnPort(SocketAddr),
    /// Not at all: media over UDP only.
    Off,
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Generate (once) and reuse a development CA and server certificate in `certs_dir`.
    Development,
    /// Operator-provided PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// A setting that cannot be used, with the setting's name so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into() }
    }
}

impl ServeConfig {
    /// Merges flags and environment (already in `args`) over the file, then the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ServeSettings::default(),
        };
        let s = args.settings;
        let listen = s.listen.or(file.listen).unwrap_or_else(|| parse_default(DEFAULT_LISTEN));
        let admin_listen = s.admin_listen.or(file.admin_listen).unwrap_or_else(|| parse_default(DEFAULT_ADMIN_LISTEN));
        let tls = match (s.tls_cert.or(file.tls_cert), s.tls_key.or(file.tls_key)) {
            (None, None) => TlsSource::Development,
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (Some(_), None) => return Err(ConfigError::new("--tls-key", "is required when --tls-cert is given")),
            (None, Some(_)) => return Err(ConfigError::new("--tls-cert", "is required when --tls-key is given")),
        };
        let log = s.log.or(file.log).unwrap_or_else(|| "info".to_owned());
        if let Err(e) = log.parse::<tracing_subscriber::EnvFilter>() {
            return Err(ConfigError::new("--log", format!("{log:?} is not a valid log filter: {e}")));
        }
        let defaults = crate::schedule::WindowSettings::default();
        let windows = crate::schedule::WindowSettings {
            early_join: duration("--early-join", s.early_join.or(file.early_join))?.unwrap_or(defaults.early_join),
            overrun: duration("--overrun", s.overrun.or(file.overrun))?.unwrap_or(defaults.overrun),
        };
        let join_limit = door_limit(
            ("--join-burst", s.join_burst.or(file.join_burst)),
            ("--join-refill", s.join_refill.or(file.join_refill)),
            DoorLimit::JOIN,
        )?;
        let sign_in_limit = door_limit(
            ("--sign-in-burst", s.sign_in_burst.or(file.sign_in_burst)),
            ("--sign-in-refill", s.sign_in_refill.or(file.sign_in_refill)),
            DoorLimit::STAFF,
        )?;
        let media_listen = SocketAddr::new(listen.ip(), s.media_port.or(file.media_port).unwrap_or(DEFAULT_MEDIA_PORT));
        let public_ips = if s.public_ips.is_empty() { file.public_ips } else { s.public_ips };
        let ice_tcp = match s.media_tcp_port.or(file.media_tcp_port).as_deref() {
            None | Some("listen") => IceTcpSetting::SharedWithListen,
            Some("off") => IceTcpSetting::Off,
            Some(port) => IceTcpSetting::OwnPort(SocketAddr::new(
                listen.ip(),
                port.parse().map_err(|_| {
                    ConfigError::new(
                        "--media-tcp-port",
                        format!("{port:?} is not \"listen\", a port number or \"off\""),
                    )
                })?,
            )),
        };
        let config = Self {
            ice_tcp,
            media_listen,
            public_ips,
            windows,
            join_limit,
            sign_in_limit,
            demo: args.demo,
            listen,
            admin_listen,
            data_dir: s.data_dir.or(file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            certs_dir: s.certs_dir.or(file.certs_dir).unwrap_or_else(|| DEFAULT_CERTS_DIR.into()),
            tls,
            hostnames: if s.hostnames.is_empty() { file.hostnames } else { s.hostnames },
            log_format: s.log_format.or(file.log_format).unwrap_or_default(),
            log,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.listen.port() != 0 && self.listen == self.admin_listen {
            return Err(ConfigError::new("--admin-listen", "must differ from --listen"));
        }
        for name in &self.hostnames {
            if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(ConfigError::new("--hostname", format!("{name:?} is not a host name or IP address")));
            }
        }
        if let TlsSource::Files { cert, key } = &self.tls {
            for (setting, path) in [("--tls-cert", cert), ("--tls-key", key)] {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        setting,
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<ServeSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("--config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        // toml's message names the key and line; keep it on one line.
        let message = e.message().replace('\n', " ");
        let place =
            e.span().map(|span| format!(" (line {})", text[..span.start].lines().count().max(1))).unwrap_or_default();
        ConfigError::new(format!("in {}{place}", path.display()), message)
    })
}

/// A duration such as "15m", "90s" or "1h 30m", between zero and a day.
/// A door's limit from its two settings, each given as (flag, value), or else `defaults`.
/// Neither may be zero: that would lock everyone out.
fn door_limit(
    (burst_flag, burst): (&str, Option<u32>),
    (refill_flag, refill): (&str, Option<String>),
    defaults: DoorLimit,
) -> Result<DoorLimit, ConfigError> {
    Ok(DoorLimit {
        burst: match burst {
            Some(0) => return Err(ConfigError::new(burst_flag, "must be at least 1")),
            Some(burst) => burst,
            None => defaults.burst,
        },
        refill: match duration(refill_flag, refill)? {
            Some(refill) if refill.is_zero() => return Err(ConfigError::new(refill_flag, "must be longer than 0s")),
            Some(refill) => refill,
            None => defaults.refill,
        },
    })
}

fn duration(setting: &str, value: Option<String>) -> Result<Option<jiff::SignedDuration>, ConfigError> {
    let Some(text) = value else { return Ok(None) };
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("{text:?} is not a duration such as 15m, 90s or 1h 30m")))?;
    if parsed.is_negative() || parsed > jiff::SignedDuration::from_hours(24) {
        return Err(ConfigError::new(setting, "must be between 0s and 24h"));
    }
    Ok(Some(parsed))
}

fn parse_default(addr: &str) -> SocketAddr {
    // The defaults are literals above; a failure here is a programming error caught by tests.
    addr.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// One line describing a command-line error. clap names the flag even when the bad value came
/// from the environment; then the variable is named too, so the operator looks in the right place.
pub fn describe_parse_error(error: &clap::Error, argv: &[String]) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return line;
    };
    let flag = arg.split_whitespace().next().unwrap_or_default();
    let given_as_flag = argv.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let env = Cli::command()
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments().cloned().collect::<Vec<_>>())
        .find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
    match env {
        Some(env) if !given_as_flag && std::env::var_os(&env).is_some() => format!("{line} (set by {env})"),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServeConfig, ConfigError> {
        let mut argv = vec!["gatehouse", "serve"];
        argv.extend_from_slice(args);
        let Command::Serve(serve) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not serve");
        };
        ServeConfig::resolve(*serve)
    }

    #[test]
    fn defaults_parse() {
        assert_eq!(parse_default(DEFAULT_LISTEN).port(), 8443);
        assert_eq!(parse_default(DEFAULT_ADMIN_LISTEN).port(), 9090);
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(matches!(c.tls, TlsSource::Development));
    }

    #[test]
    fn flag_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7000\"\nadmin-listen = \"127.0.0.1:7001\"\n").unwrap();
        let f = file.to_str().unwrap();
        let c = parse(&["--config", f]).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.admin_listen.port(), 7001);
        let c = parse(&["--config", f, "--listen", "127.0.0.1:7002"]).unwrap();
        assert_eq!(c.listen.port(), 7002);
    }

    #[test]
    fn unknown_file_key_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:7000\"\n").unwrap();
        let e = parse(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn ice_tcp_shares_the_listen_port_unless_told_otherwise() {
        assert_eq!(parse(&[]).unwrap().ice_tcp, IceTcpSetting::SharedWithListen);
        assert_eq!(parse(&["--media-tcp-port", "listen"]).unwrap().ice_tcp, IceTcpSetting::SharedWithListen);
        assert_eq!(parse(&["--media-tcp-port", "off"]).unwrap().ice_tcp, IceTcpSetting::Off);
        let own = parse(&["--listen", "10.0.0.5:443", "--media-tcp-port", "8444"]).unwrap();
        assert_eq!(own.ice_tcp, IceTcpSetting::OwnPort("10.0.0.5:8444".parse().unwrap()));
        let e = parse(&["--media-tcp-port", "https"]).unwrap_err();
        assert_eq!(e.setting, "--media-tcp-port");
    }

    #[test]
    fn join_limit_defaults_and_refuses_what_would_lock_everyone_out() {
        let defaults = parse(&[]).unwrap().join_limit;
        assert_eq!((defaults.burst, defaults.refill), (30, jiff::SignedDuration::from_secs(2)));
        let set = parse(&["--join-burst", "500", "--join-refill", "10ms"]).unwrap().join_limit;
        assert_eq!((set.burst, set.refill), (500, jiff::SignedDuration::from_millis(10)));
        assert_eq!(parse(&["--join-burst", "0"]).unwrap_err().setting, "--join-burst");
        assert_eq!(parse(&["--join-refill", "0s"]).unwrap_err().setting, "--join-refill");
    }

    #[test]
    fn sign_in_limit_defaults_and_refuses_what_would_lock_everyone_out() {
        assert_eq!(parse(&[]).unwrap().sign_in_limit, DoorLimit::STAFF);
        let set = parse(&["--sign-in-burst", "3", "--sign-in-refill", "1m"]).unwrap().sign_in_limit;
        assert_eq!(set, DoorLimit { burst: 3, refill: jiff::SignedDuration::from_mins(1) });
        assert_eq!(parse(&["--sign-in-burst", "0"]).unwrap_err().setting, "--sign-in-burst");
        assert_eq!(parse(&["--sign-in-refill", "0s"]).unwrap_err().setting, "--sign-in-refill");
    }

    #[test]
    fn half_tls_pair_is_refused() {
        let e = parse(&["--tls-cert", "/nonexistent"]).unwrap_err();
        assert_eq!(e.setting, "--tls-key");
    }
}
