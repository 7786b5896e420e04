//! Wires the parts together for `gatehouse serve`, and choreographs graceful shutdown:
//! readiness drops, listeners stop accepting, open connections get a bounded drain, then exit.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{Actor, AuditLog, Code, Details, Event, EventKind};
use crate::auth::links::LinkKeys;
use crate::auth::staff::StaffAccounts;
use crate::certs::{self, CertPaths};
use crate::config::{IceTcpSetting, ServeConfig, TlsSource};
use crate::demo;
use crate::health::Readiness;
use crate::http::{
    self,
    admin::AdminState,
    demux::{PortMetrics, PortSharing},
    listener::{ClientAddr, TlsListener},
    observe::HttpMetrics,
};
use crate::metrics::Metrics;
use crate::schedule::Schedule;
use crate::session::Sessions;
use crate::sfu::{IceTcp, IceTcpIntake, Sfu, SfuConfig};
use crate::store::{SqliteStore, Store};

/// How long open connections may take to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the gateway until `shutdown` resolves, then drains and returns.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Poll the shutdown future once so its signal handlers exist before anything else: a
    // SIGTERM during start-up must lead to a drain, not to the default kill.
    let mut shutdown = std::pin::pin!(shutdown);
    let stop_requested_early = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    let readiness = Arc::new(Readiness::default());

    let data_dir = config.data_dir.clone();
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir))
            .await?
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
    );
    let audit = {
        let (db, data_dir) = (store.database_path().to_owned(), config.data_dir.clone());
        tokio::task::spawn_blocking(move || AuditLog::open(&db, &data_dir))
            .await?
            .context("cannot open the audit log")?
    };
    // No audit, no service: a gateway that cannot record its own start does not start.
    audit.append(version_event(EventKind::GatewayStarted)).await.context("cannot write to the audit log")?;
    readiness.store_opened();

    let tls = tls_config(&config)?;

    let public_tcp = bind(config.listen, "--listen").await?;
    let admin_tcp = bind(config.admin_listen, "--admin-listen").await?;
    let public_addr = public_tcp.local_addr()?;
    let admin_addr = admin_tcp.local_addr()?;

    let mut registered = None;
    let session_gauges = crate::session::SessionGauges::default();
    let metrics = Metrics::build(|registry| {
        audit.register_metrics(registry);
        session_gauges.register(registry);
        registered = Some((Arc::new(HttpMetrics::register(registry)), PortMetrics::register(registry)));
    });
    let (http_metrics, port_metrics) = registered.context("HTTP metrics were not registered")?;

    // Two stop signals, because the admin listener must keep answering `/readyz` with 503
    // while the public side drains.
    let public_stop = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let connections = TaskTracker::new();

    let admin_router = http::admin::router(
        AdminState {
            readiness: readiness.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
        },
        http_metrics.clone(),
    );
    let admin_server = tokio::spawn(
        axum::serve(admin_tcp, admin_router).with_graceful_shutdown(admin_stop.clone().cancelled_owned()).into_future(),
    );

    // ICE-TCP media shares the public port unless it has a port of its own (or none).
    let (ice_tcp, ice_tcp_intake) = match config.ice_tcp {
        IceTcpSetting::SharedWithListen => {
            let (intake, connections) = IceTcpIntake::new();
            (IceTcp::Shared { port_of: public_addr, connections }, Some(intake))
        }
        IceTcpSetting::OwnPort(addr) => (IceTcp::OwnPort(addr), None),
        IceTcpSetting::Off => (IceTcp::Off, None),
    };
    let sharing = PortSharing { ice_tcp: ice_tcp_intake, metrics: port_metrics };
    let tls_listener = TlsListener::spawn(public_tcp, tls, sharing, connections.clone(), public_stop.clone())?;
    let links = {
        let data_dir = config.data_dir.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || LinkKeys::load(&data_dir))
                .await?
                .context("cannot load the join-link keys")?,
        )
    };
    let schedule =
        Schedule::new(store.clone(), audit.clone(), config.windows, links).with_join_limit(config.join_limit);
    let staff = StaffAccounts::new(store.clone(), audit.clone()).with_sign_in_limit(config.sign_in_limit);
    let clock = crate::clock::system();
    let demo = if config.demo {
        let (store, staff, schedule) = (store.clone(), staff.clone(), schedule.clone());
        let now = clock();
        tokio::task::spawn_blocking(move || demo::seed(store.as_ref(), &staff, &schedule, now))
            .await?
            .context("cannot seed the demo")?
    } else {
        None
    };
    let (sfu, _media_loop) =
        Sfu::start(SfuConfig { udp_bind: config.media_listen, ice_tcp, public_ips: config.public_ips.clone() })
            .await
            .with_context(|| format!("cannot serve media on UDP {} (--media-port)", config.media_listen))?;
    let sfu_events = sfu.events();
    let media_addr = sfu.local_addr();
    let media_tcp_addr = sfu.local_tcp_addr();
    let sessions_stop = CancellationToken::new();
    let sessions =
        Sessions::start(schedule.clone(), sfu, sfu_events, clock.clone(), sessions_stop.clone(), session_gauges);
    let door_summaries_stop = CancellationToken::new();
    let door_summaries = [
        tokio::spawn(schedule.clone().run_door_summaries(clock.clone(), door_summaries_stop.clone())),
        tokio::spawn(staff.clone().run_sign_in_summaries(clock.clone(), door_summaries_stop.clone())),
    ];
    let api = http::api::Api { store: store.clone(), audit: audit.clone(), staff, schedule, sessions, clock };
    let public_router = http::public_router(http_metrics, api);
    let checkpoints_stop = CancellationToken::new();
    let checkpoints = tokio::spawn(audit.clone().run_checkpoints(checkpoints_stop.clone()));
    let public_server = tokio::spawn(
        axum::serve(tls_listener, public_router.into_make_service_with_connect_info::<ClientAddr>())
            .with_graceful_shutdown(public_stop.clone().cancelled_owned())
            .into_future(),
    );

    readiness.listeners_bound();
    tracing::info!(listener = "https", addr = %public_addr, "listening");
    tracing::info!(listener = "admin", addr = %admin_addr, "listening");
    tracing::info!(listener = "media", addr = %media_addr, "listening");
    match media_tcp_addr {
        Some(addr) if addr == public_addr => tracing::info!(addr = %addr, "ICE-TCP media shares the https listener"),
        Some(addr) => tracing::info!(listener = "media-tcp", addr = %addr, "listening"),
        None => tracing::info!("ICE-TCP media is off"),
    }
    let url = browser_url(public_addr);
    println!("Gatehouse is running. Open {url}");
    if let Some(seed) = demo {
        print_demo(&url, &seed);
    } else if config.demo {
        println!("(--demo: this data folder already has staff or rooms, so nothing was seeded.)");
    }

    if !stop_requested_early {
        shutdown.await;
    }
    tracing::info!("shutdown requested; draining open connections");
    readiness.begin_shutdown();
    // Live sessions tell their participants the gateway is going away; their WebSockets then close.
    sessions_stop.cancel();
    public_stop.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "drain timed out; closing the remaining connections");
    }
    // Hyper may still be finishing a response on a connection that just closed; it has no
    // more work worth waiting for after the drain.
    public_server.abort();
    // Refused join attempts not yet summarised are recorded before the stop.
    door_summaries_stop.cancel();
    for summaries in door_summaries {
        let _ = summaries.await;
    }
    checkpoints_stop.cancel();
    let _ = checkpoints.await;
    if let Err(e) = audit.append(version_event(EventKind::GatewayStopped)).await {
        tracing::error!(error = %e, "cannot record the gateway's stop in the audit log");
    }
    match audit.checkpoint().await {
        Ok(size) => tracing::info!(tree_size = size, "signed the final audit checkpoint"),
        Err(e) => tracing::error!(error = %e, "cannot sign the final audit checkpoint"),
    }
    admin_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_server).await;
    tracing::info!("stopped");
    Ok(())
}

fn print_demo(url: &str, seed: &demo::DemoSeed) {
    println!();
    println!("Demo seeded: room \"{}\" with an appointment open now.", seed.room_name);
    println!("  Room kiosk:      {url}room#credential={}", seed.kiosk_credential);
    println!("  Consultant link: {url}join/{}", seed.clinician_link_token);
    println!("  Scheduler:       {url}console  user {}  password {}", seed.scheduler.0, seed.scheduler.1);
    println!("  Security:        {url}console  user {}  password {}", seed.security.0, seed.security.1);
    println!("                   TOTP enrolment (add to an authenticator app): {}", seed.security.2);
    println!("These passwords are shown once. Trust certs/ca.pem in your browser first (see certs/README.md).");
}

fn version_event(kind: EventKind) -> Event {
    let version = Code::new(env!("CARGO_PKG_VERSION")).ok();
    Event::new(kind, Actor::System).with_details(Details { version, ..Details::default() })
}

fn tls_config(config: &ServeConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let paths = match &config.tls {
        TlsSource::Files { cert, key } => CertPaths { cert: cert.clone(), key: key.clone() },
        TlsSource::Development => {
            let (paths, generated) = certs::ensure_development(&config.certs_dir, &config.hostnames)
                .context("cannot prepare the development certificates")?;
            if generated {
                tracing::info!(
                    ca = %config.certs_dir.join(certs::CA_CERT_FILE).display(),
                    "generated a development CA and server certificate; trust the CA in your browser (see certs/README.md)"
                );
            }
            paths
        }
    };
    certs::server_config(&paths).with_context(|| format!("cannot use the TLS certificate {}", paths.cert.display()))
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({setting})"))
}

/// The address a person on this machine should open: wildcard binds are reached as `localhost`.
fn browser_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    format!("https://{host}:{}/", addr.port())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
