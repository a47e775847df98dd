//! The console's accounts (`siaga users`, the sign-in): name, role, the routes an agency
//! account sees, an argon2id password hash. Every statement on `console_users` is here.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// What an account may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: every call, the access trail, class corrections.
    Supervisor,
    /// Only the calls offered to its routes; read-only.
    Agency,
    /// Every call, read-only (verify and export come with the evidence work).
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supervisor => "supervisor",
            Role::Agency => "agency",
            Role::Auditor => "auditor",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "supervisor" => Ok(Role::Supervisor),
            "agency" => Ok(Role::Agency),
            "auditor" => Ok(Role::Auditor),
            _ => Err(format!("unknown role {s:?}: supervisor, agency or auditor")),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The dialplan routes an agency account sees (empty for the other roles).
    pub routes: Vec<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
    pub changed_at: i64,
}

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    let role: String = r.get(1)?;
    let routes: String = r.get(2)?;
    Ok(User {
        name: r.get(0)?,
        // An unknown role (edited by hand) gets the least: an agency with no routes.
        role: role.parse().unwrap_or(Role::Agency),
        routes: routes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
        changed_at: r.get(5)?,
    })
}

const COLUMNS: &str = "name, role, routes, password, created_at, changed_at";

pub fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM console_users WHERE name = ?1"
    ))?
    .query_row(params![name], user_row)
    .optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    conn.prepare(&format!(
        "SELECT {COLUMNS} FROM console_users ORDER BY name"
    ))?
    .query_map([], user_row)?
    .collect()
}

/// Adds an account; false if the name is taken.
pub fn add(
    conn: &Connection,
    name: &str,
    role: Role,
    routes: &[String],
    password_hash: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let added = conn.execute(
        "INSERT INTO console_users (name, role, routes, password, created_at, changed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO NOTHING",
        params![name, role.as_str(), routes.join(","), password_hash, now_ms],
    )?;
    Ok(added == 1)
}

/// Removes an account; false if there was none.
pub fn remove(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM console_users WHERE name = ?1", params![name])? == 1)
}

/// Sets a new password hash; false if there is no such account.
pub fn set_password(
    conn: &Connection,
    name: &str,
    password_hash: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE console_users SET password = ?2, changed_at = ?3 WHERE name = ?1",
        params![name, password_hash, now_ms],
    )? == 1)
}
