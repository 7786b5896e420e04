//! The integration tests: each drives the real `gatehouse` binary on port 0 through its real boundaries.

mod audit;
mod audit_api;
mod audit_crash;
mod browser;
mod client;
mod foundation;
mod media;
mod schedule;
mod signalling;
mod support;
mod tcp_runtime;
mod web;
mod webdriver;
