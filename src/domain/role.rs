//! Who someone is to the gateway: the roles of people in a consultation and of staff.

/// Every role, for policy questions that span people in a call and staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A prison teleconference room's kiosk.
    Room,
    Clinician,
    Guest,
    Scheduler,
    Security,
    Admin,
}

/// Roles of staff accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaffRole {
    Scheduler,
    Security,
    Admin,
}

/// Roles a join link can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantRole {
    Clinician,
    Guest,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Room, Role::Clinician, Role::Guest, Role::Scheduler, Role::Security, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Clinician => "clinician",
            Self::Guest => "guest",
            Self::Scheduler => "scheduler",
            Self::Security => "security",
            Self::Admin => "admin",
        }
    }
}

impl StaffRole {
    pub const ALL: [StaffRole; 3] = [StaffRole::Scheduler, StaffRole::Security, StaffRole::Admin];

    pub fn as_str(self) -> &'static str {
        Role::from(self).as_str()
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Security and admin accounts can end sessions and read the audit log: a second factor is
    /// required for them.
    pub fn requires_totp(self) -> bool {
        matches!(self, Self::Security | Self::Admin)
    }
}

impl ParticipantRole {
    pub fn as_str(self) -> &'static str {
        Role::from(self).as_str()
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "clinician" => Some(Self::Clinician),
            "guest" => Some(Self::Guest),
            _ => None,
        }
    }
}

impl From<StaffRole> for Role {
    fn from(r: StaffRole) -> Self {
        match r {
            StaffRole::Scheduler => Self::Scheduler,
            StaffRole::Security => Self::Security,
            StaffRole::Admin => Self::Admin,
        }
    }
}

impl From<ParticipantRole> for Role {
    fn from(r: ParticipantRole) -> Self {
        match r {
            ParticipantRole::Clinician => Self::Clinician,
            ParticipantRole::Guest => Self::Guest,
        }
    }
}
