//! The integration tests: each drives the real `gatehouse` binary on port 0 through its real boundaries.

mod audit;
mod foundation;
mod support;
