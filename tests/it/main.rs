//! The integration tests: each drives the real `gatehouse` binary on port 0 through its real boundaries.

mod audit;
mod audit_api;
mod audit_crash;
mod browser;
mod capture;
mod client;
mod foundation;
#[cfg(feature = "load")]
mod load;
mod lossy_network;
mod media;
mod netns;
mod quality;
mod relay;
mod retransmission;
mod schedule;
mod signalling;
mod simulcast;
mod support;
mod three_networks;
mod web;
mod webdriver;
