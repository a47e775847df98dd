//! The console's accounts (`siaga users`, the sign-in): name, role, the routes an agency
//! account sees, an argon2id password hash. Every statement on `console_users` is here.

use rusqlite::{OptionalExtension, params};

use super::store::{Db, Row};
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

fn user_row(r: &Row) -> rusqlite::Result<User> {
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

pub fn get(conn: &Db, name: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM console_users WHERE name = ?1"
    ))?
    .query_row(params![name], user_row)
    .optional()
}

pub fn list(conn: &Db) -> rusqlite::Result<Vec<User>> {
    conn.prepare(&format!(
        "SELECT {COLUMNS} FROM console_users ORDER BY name"
    ))?
    .query_map([], user_row)?
    .collect()
}

/// Adds an account; false if the name is taken.
pub fn add(
    conn: &Db,
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
pub fn remove(conn: &Db, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM console_users WHERE name = ?1", params![name])? == 1)
}

/// Sets a new password hash; false if there is no such account.
pub fn set_password(
    conn: &Db,
    name: &str,
    password_hash: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE console_users SET password = ?2, changed_at = ?3 WHERE name = ?1",
        params![name, password_hash, now_ms],
    )? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::testing::{Store, TestLog};

    #[test]
    fn accounts_are_added_listed_changed_and_removed() {
        accounts_are_added_listed_changed_and_removed_on(Store::Sqlite)
    }

    #[test]
    fn accounts_are_added_listed_changed_and_removed_on_postgres() {
        accounts_are_added_listed_changed_and_removed_on(Store::Postgres)
    }

    fn accounts_are_added_listed_changed_and_removed_on(store: Store) {
        let log = TestLog::new(store);
        let conn = log.open();
        let routes = ["police".to_owned(), "fire".to_owned()];
        assert!(add(&conn, "pol", Role::Agency, &routes, "hash-1", 1000).expect("add"));
        assert!(add(&conn, "sri", Role::Supervisor, &[], "hash-2", 1001).expect("add"));
        assert!(
            !add(&conn, "pol", Role::Auditor, &[], "other", 1002).expect("add"),
            "a taken name is refused"
        );
        let pol = get(&conn, "pol").expect("get").expect("pol exists");
        assert_eq!(
            (pol.role, pol.routes.as_slice()),
            (Role::Agency, &routes[..])
        );
        assert_eq!(pol.password_hash, "hash-1");
        let names: Vec<String> = list(&conn)
            .expect("list")
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["pol", "sri"]);
        assert!(set_password(&conn, "pol", "hash-3", 2000).expect("passwd"));
        let pol = get(&conn, "pol").expect("get").expect("pol exists");
        assert_eq!(
            (pol.password_hash.as_str(), pol.changed_at),
            ("hash-3", 2000)
        );
        assert!(!set_password(&conn, "nobody", "x", 2000).expect("passwd"));
        assert!(remove(&conn, "pol").expect("remove"));
        assert!(!remove(&conn, "pol").expect("remove again"));
        assert!(get(&conn, "pol").expect("get").is_none());
    }
}
