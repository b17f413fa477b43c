//! The product's own user table (a database in a real app). Passwords are stored as
//! `pbkdf2-sha256:<iterations>:<salt>:<hash>` (base64url), checked in constant time.
//! Demo accounts: alice / wonderland, bob / builder.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A user of the product.
pub struct User {
    pub id: &'static str,
    pub username: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub roles: &'static [&'static str],
    password_hash: &'static str,
}

const USERS: &[User] = &[
    User {
        id: "user-alice",
        username: "alice",
        name: "Alice Liddell",
        email: "alice@example.com",
        roles: &["user"],
        password_hash: "pbkdf2-sha256:100000:oFL6ZszyFrEqwdTPDT2hTA:0yEUQDRCb1HbQNzciombhEzWwczAgFmRwAuXtH7w8ak",
    },
    User {
        id: "user-bob",
        username: "bob",
        name: "Bob Builder",
        email: "bob@example.com",
        roles: &["user", "admin"],
        password_hash: "pbkdf2-sha256:100000:npiLpLo4R7_u84Po42C9fQ:qeToOFvEX7jObTaMOJk38cer3O_-YRmPhLlTKSC1Rm8",
    },
];

/// Checked when the username is unknown, so that a wrong username costs as much as a wrong
/// password.
const DUMMY_HASH: &str =
    "pbkdf2-sha256:100000:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn password_matches(password: &str, stored: &str) -> bool {
    let mut parts = stored.split(':');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse().ok().and_then(NonZeroU32::new),
        URL_SAFE_NO_PAD.decode(salt),
        URL_SAFE_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    aws_lc_rs::pbkdf2::verify(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// The user whose username and password these are.
pub fn verify_login(username: &str, password: &str) -> Option<&'static User> {
    let username = username.trim().to_lowercase();
    let user = USERS.iter().find(|u| u.username == username);
    let ok = password_matches(password, user.map_or(DUMMY_HASH, |u| u.password_hash));
    user.filter(|_| ok)
}

/// The user with this id.
pub fn find(id: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_passwords_and_only_them() {
        assert_eq!(
            verify_login("alice", "wonderland").map(|u| u.id),
            Some("user-alice")
        );
        assert_eq!(
            verify_login(" Bob ", "builder").map(|u| u.id),
            Some("user-bob")
        );
        assert!(verify_login("alice", "builder").is_none());
        assert!(verify_login("mallory", "wonderland").is_none());
        assert!(!password_matches("x", "plain:x"));
    }
}
