//! Who may do what: staff accounts, room devices, join links and the policy that decides. Knows
//! nothing of WebRTC or HTTP.

pub mod api_token;
pub mod device;
pub mod door_throttle;
pub mod link_token;
pub mod links;
pub mod password;
pub mod policy;
pub mod staff;
pub mod totp;

use std::net::IpAddr;

use crate::audit::{Actor, Code, Event, EventKind, Object};
use policy::{Principal, Reason};

/// Someone asking for something: who they are and where they asked from (their own address,
/// recorded only in their own audit records).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub ip: Option<IpAddr>,
    /// The operator at the gateway's own console (the CLI), who holds the data folder and so
    /// needs no permission from the policy.
    console: bool,
}

impl Caller {
    pub fn new(principal: Principal, ip: Option<IpAddr>) -> Self {
        Self { principal, ip, console: false }
    }

    /// The operator at the gateway's console.
    pub fn console() -> Self {
        Self { principal: Principal::Anonymous, ip: None, console: true }
    }

    /// Whether this is the operator at the gateway's console.
    pub fn is_console(&self) -> bool {
        self.console
    }

    /// The audit log's view of this caller.
    pub fn actor(&self) -> Actor {
        if self.console {
            return Actor::Operator;
        }
        let code = |v: String| Code::new(v).ok();
        match &self.principal {
            Principal::Anonymous => Actor::Anonymous,
            Principal::Staff { id, role } => match (code(id.to_string()), code(role.as_str().to_owned())) {
                (Some(id), Some(role)) => Actor::Staff { id, role },
                _ => Actor::Anonymous,
            },
            Principal::Room { room, .. } => code(room.to_string()).map_or(Actor::Anonymous, |id| Actor::Room { id }),
            Principal::Link { link, role, .. } => match (code(link.to_string()), code(role.as_str().to_owned())) {
                (Some(id), Some(role)) => Actor::Participant { id, role },
                _ => Actor::Anonymous,
            },
        }
    }

    /// An event by this caller, from their address.
    pub fn event(&self, kind: EventKind) -> Event {
        let event = Event::new(kind, self.actor());
        match self.ip {
            Some(ip) => event.from_ip(ip),
            None => event,
        }
    }

    /// The audit record of a refusal.
    pub fn refusal(&self, kind: EventKind, reason: Reason, object: Object) -> Event {
        self.event(kind).refused(reason.code()).with_object(object)
    }
}

/// An id as an audit code; ids are UUIDs, which always fit.
pub fn code(id: impl std::fmt::Display) -> Option<Code> {
    Code::new(id.to_string()).ok()
}

/// The SHA-256 of a secret: what is stored in place of credentials.
pub fn digest(secret: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new random secret with a recognisable prefix (so scanners and people can tell what it is).
pub fn new_secret(prefix: &str) -> Result<String, aws_lc_rs::error::Unspecified> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}
