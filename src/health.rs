//! The readiness latch: whether the gateway should be sent traffic, and if not, why.

use std::sync::atomic::{AtomicBool, Ordering};

/// Conditions that must all hold before `/readyz` answers 200. Each is an atomic flag because
/// the admin listener reads them on every probe while other tasks flip them.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The store is open and migrated.
    store_open: AtomicBool,
    /// Every listener is bound and accepting.
    listeners_bound: AtomicBool,
    /// Shutdown has begun: load balancers must stop sending new work at once.
    shutting_down: AtomicBool,
}

/// Why the gateway is not ready; the code is stable for probes and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    StoreNotOpen,
    ListenersNotBound,
    ShuttingDown,
}

impl NotReady {
    pub fn code(self) -> &'static str {
        match self {
            Self::StoreNotOpen => "store_not_open",
            Self::ListenersNotBound => "listeners_not_bound",
            Self::ShuttingDown => "shutting_down",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::StoreNotOpen => "The database is not open yet.",
            Self::ListenersNotBound => "The listeners are not bound yet.",
            Self::ShuttingDown => "The gateway is shutting down.",
        }
    }
}

impl Readiness {
    pub fn store_opened(&self) {
        self.store_open.store(true, Ordering::Release);
    }

    pub fn listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// The first unmet condition, shutdown first because it overrides everything else.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.shutting_down.load(Ordering::Acquire) {
            Err(NotReady::ShuttingDown)
        } else if !self.store_open.load(Ordering::Acquire) {
            Err(NotReady::StoreNotOpen)
        } else if !self.listeners_bound.load(Ordering::Acquire) {
            Err(NotReady::ListenersNotBound)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds_and_never_after_shutdown() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err(NotReady::StoreNotOpen));
        r.store_opened();
        assert_eq!(r.check(), Err(NotReady::ListenersNotBound));
        r.listeners_bound();
        assert_eq!(r.check(), Ok(()));
        r.begin_shutdown();
        assert_eq!(r.check(), Err(NotReady::ShuttingDown));
    }
}
