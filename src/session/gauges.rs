//! The live-session gauges for `/metrics`: consultations in progress and members connected.
//! Each is held as a unit that gives itself back when dropped, so the gauges cannot drift
//! from what is live, however a session or a connection ends.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct SessionGauges {
    sessions: Gauge,
    connections: Gauge,
}

impl SessionGauges {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("live_sessions", "Consultations in progress", self.sessions.clone());
        registry.register(
            "connected_participants",
            "Members of live consultations connected to signalling now",
            self.connections.clone(),
        );
    }

    /// One more consultation in progress, for as long as the result is kept.
    pub(super) fn session(&self) -> Held {
        Held::of(&self.sessions)
    }

    /// One more member connected, for as long as the result is kept.
    pub(super) fn connection(&self) -> Held {
        Held::of(&self.connections)
    }
}

/// One unit of a gauge, given back when dropped.
#[derive(Debug)]
pub(super) struct Held(Gauge);

impl Held {
    fn of(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}
