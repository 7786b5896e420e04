//! The gateway's clock, passed to everything that decides by time (windows, sessions, links).
//!
//! Production reads the system clock. Debug builds, and only they, honour
//! `GATEHOUSE_TEST_CLOCK_OFFSET_FILE`: a file holding a number of seconds to add to the system
//! clock, re-read on every reading, so integration tests can move the real server's time
//! forward instead of sleeping. Release builds do not contain that code.

use std::sync::Arc;

use jiff::Timestamp;

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock (plus the test offset in debug builds).
pub fn system() -> Clock {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("GATEHOUSE_TEST_CLOCK_OFFSET_FILE") {
        let path = std::path::PathBuf::from(path);
        return Arc::new(move || {
            let offset: i64 = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            Timestamp::now() + jiff::SignedDuration::from_secs(offset)
        });
    }
    Arc::new(Timestamp::now)
}
