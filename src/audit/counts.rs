//! How many records the audit log has committed, by kind, outcome and reason: the Prometheus
//! counter that lets operators alert on refusals (a flood of failed sign-ins, joins refused
//! for their address's limit) without reading the log.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::record::{Event, Outcome};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    kind: &'static str,
    outcome: &'static str,
    /// The stable reason code of a refusal or failure; empty for a success. Codes are a
    /// closed set, so this keeps the number of series bounded.
    reason: String,
}

/// The counter family, shared by the writer (which counts what it commits) and the registry.
#[derive(Debug, Clone, Default)]
pub struct RecordCounts {
    family: Family<RecordLabels, Counter>,
}

impl RecordCounts {
    /// Counts records once they are committed.
    pub(super) fn count(&self, committed: &[Event]) {
        for event in committed {
            let (outcome, reason) = match &event.outcome {
                Outcome::Success => ("success", String::new()),
                Outcome::Refused { reason } => ("refused", reason.as_str().to_owned()),
                Outcome::Failed { reason } => ("failed", reason.as_str().to_owned()),
            };
            self.family.get_or_create(&RecordLabels { kind: event.kind.code(), outcome, reason }).inc();
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_records",
            "Audit records committed since the gateway started, by kind, outcome and reason code",
            self.family.clone(),
        );
    }
}
