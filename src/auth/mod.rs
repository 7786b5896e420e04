//! Who may do what: credentials and the decisions made on them. Knows nothing of WebRTC or HTTP.

pub mod api_token;
pub mod policy;
