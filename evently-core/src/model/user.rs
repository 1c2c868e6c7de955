use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::UserId;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages events and may act on any booking.
    Admin,
    /// Books seats for themself.
    User,
}

impl Role {
    /// The lower-case name stored and sent over the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// Parses `"admin"` or `"user"`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Unique, stored lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Password hash (argon2 PHC string, produced by the edge); never a plain password.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Free-form attributes policies may read (e.g. `tier = "member"`).
    pub attributes: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Input for [`Evently::register_user`](crate::Evently::register_user).
#[derive(Debug, Clone)]
pub struct NewUser {
    /// E-mail address; must contain `@`, compared case-insensitively.
    pub email: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Already-hashed password.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Policy attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Who is calling the engine. The edge (HTTP, bindings) authenticates; the core authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The acting user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
}

impl Actor {
    /// Builds an actor.
    pub fn new(user_id: UserId, role: Role) -> Self {
        Self { user_id, role }
    }

    /// True for administrators.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

pub(crate) fn check_user(u: &User) -> crate::Result<()> {
    use crate::Error;
    let at = u.email.find('@');
    if u.email.len() > 320
        || at.is_none_or(|i| i == 0 || i + 1 == u.email.len())
        || u.email.chars().any(char::is_whitespace)
    {
        return Err(Error::validation("email", "not an e-mail address"));
    }
    super::event::check_text("name", &u.name, 1, 200)?;
    if u.password_hash.is_empty() {
        return Err(Error::validation("password_hash", "must not be empty"));
    }
    if u.attributes.len() > 64
        || u.attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        return Err(Error::validation(
            "attributes",
            "at most 64 attributes, keys 1 to 64 bytes, values up to 256 bytes",
        ));
    }
    Ok(())
}
