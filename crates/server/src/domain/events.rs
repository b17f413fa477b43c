//! What happened, as typed events. Each flow returns or emits these; the flows log them with
//! `tracing` fields (event = the name, then the fields), and the audit trail will persist them
//! in the transaction of the change they describe. Never a secret, token or Trusted Auth Token:
//! events carry identifiers only.

use consentry_protocol::ErrorCode;

use crate::domain::decision::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A Trusted Auth Token was verified and a browser session started.
    SessionAttested {
        user_id: String,
        profile_id: String,
    },
    /// A Trusted Auth Token was refused (the reason is the error code, never the token).
    AttestationRefused {
        profile_id: String,
        code: ErrorCode,
    },
    /// The user consented to new (resource, scope) pairs for a client.
    ConsentGranted {
        user_id: String,
        client_id: String,
        scopes: Vec<String>,
    },
    /// An authorization code was issued.
    CodeIssued {
        user_id: String,
        client_id: String,
    },
    /// The user denied the request on the consent screen.
    ConsentDenied {
        user_id: String,
        client_id: String,
    },
    /// The one decision refused a path.
    Denied {
        path: Path,
        client_id: String,
        code: ErrorCode,
    },
    /// A code was presented a second time: its grant was revoked.
    CodeReplayed {
        client_id: String,
    },
    /// Tokens were issued (`grant_id` is the token family of a user grant).
    TokensIssued {
        path: Path,
        client_id: String,
        subject: String,
        grant_id: Option<String>,
        scopes: Vec<String>,
    },
    /// A refresh token was rotated.
    RefreshRotated {
        client_id: String,
        grant_id: String,
    },
    /// A rotated refresh token was presented again: the grant was revoked.
    RefreshReuseDetected {
        client_id: String,
        grant_id: Option<String>,
    },
    /// Grants were revoked (`reason` is a fixed word: user_revoked, admin, client_deleted, …).
    GrantsRevoked {
        user_id: Option<String>,
        client_id: Option<String>,
        reason: &'static str,
        count: u64,
    },
    /// A token was revoked through RFC 7009.
    TokenRevoked {
        client_id: String,
    },
    /// A client registered itself (RFC 7591), was updated (RFC 7592) or deleted.
    ClientRegistered {
        client_id: String,
    },
    ClientUpdated {
        client_id: String,
    },
    ClientDeleted {
        client_id: String,
    },
    /// A user was deleted by an administrator.
    UserDeleted {
        user_id: String,
    },
    /// An organization's policy changed (`by`: `admin_api` or `org_admin`), revoking `revoked`
    /// grants it excludes.
    PolicyChanged {
        organization_id: String,
        version: i64,
        by: &'static str,
        revoked: u64,
    },
}

impl Event {
    /// The event's stable name (`consent.granted`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Event::SessionAttested { .. } => "session.attested",
            Event::AttestationRefused { .. } => "session.refused",
            Event::ConsentGranted { .. } => "consent.granted",
            Event::ConsentDenied { .. } => "consent.denied",
            Event::CodeIssued { .. } => "code.issued",
            Event::Denied { .. } => "decision.denied",
            Event::CodeReplayed { .. } => "code.replayed",
            Event::TokensIssued { .. } => "token.issued",
            Event::RefreshRotated { .. } => "refresh.rotated",
            Event::RefreshReuseDetected { .. } => "refresh.reuse_detected",
            Event::GrantsRevoked { .. } => "grants.revoked",
            Event::TokenRevoked { .. } => "token.revoked",
            Event::ClientRegistered { .. } => "client.registered",
            Event::ClientUpdated { .. } => "client.updated",
            Event::ClientDeleted { .. } => "client.deleted",
            Event::UserDeleted { .. } => "user.deleted",
            Event::PolicyChanged { .. } => "policy.changed",
        }
    }
}
