//! Signalling: the versioned JSON protocol spoken over the WebSocket, and the per-connection
//! state machine that joins a member to its live session.

pub mod connection;
pub mod protocol;

pub use connection::{Frame, Peer, Socket, run};
