//! The Prometheus registry and the process-wide metrics: build information and uptime.
//!
//! Each part registers its own metrics at start-up; the admin listener encodes the registry.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The registry plus the gauges refreshed when it is scraped.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    /// Builds the registry: `register` lets other parts add theirs before it is frozen.
    pub fn build(register: impl FnOnce(&mut Registry)) -> Arc<Self> {
        let mut registry = Registry::with_prefix("gatehouse");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Build information; the value is always 1", build_info);
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("uptime_seconds", "Seconds since the gateway started", uptime.clone());
        register(&mut registry);
        Arc::new(Self { registry, started: Instant::now(), uptime })
    }

    /// The whole registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
