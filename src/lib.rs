//! Gatehouse: a secure video gateway for clinical consultations between prison rooms and hospital consultants.

pub mod app;
pub mod audit;
pub mod auth;
pub mod certs;
pub mod clock;
pub mod commands;
pub mod config;
pub mod demo;
pub mod domain;
pub mod files;
pub mod health;
pub mod http;
pub mod metrics;
pub mod rate;
pub mod schedule;
pub mod session;
pub mod sfu;
pub mod signal;
pub mod store;
pub mod telemetry;
