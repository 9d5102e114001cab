//! What a PostgreSQL database holds beyond rows, for the manifest (at backup) and a restore's
//! pre-flight (at the destination): schemas, extensions, and the roles objects belong to.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use sqlx::{Row, postgres::PgConnection};

use crate::manifest::{DumpObjects, ExtensionInfo};

/// User schemas: what pg_dump dumps (not the system's, not TOAST or temp schemas).
const USER_SCHEMA: &str =
    "n.nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)' AND n.nspname <> 'information_schema'";

/// The dump's schemas, extensions, and the roles that own its objects or hold privileges on
/// them (what `ALTER … OWNER TO` and `GRANT` in the dump name). Extension members are left
/// out: pg_dump does not dump them.
pub async fn dump_objects(conn: &mut PgConnection) -> Result<DumpObjects> {
    let schemas: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT n.nspname::text FROM pg_namespace n WHERE {USER_SCHEMA} ORDER BY 1"
    )))
    .fetch_all(&mut *conn)
    .await
    .context("list schemas")?;
    let extensions = sqlx::query(
        "SELECT e.extname::text AS name, e.extversion AS version, n.nspname::text AS schema \
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context("list extensions")?
    .iter()
    .map(|r| {
        Ok(ExtensionInfo {
            name: r.try_get("name")?,
            version: r.try_get("version")?,
            schema: r.try_get("schema")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // The constant parts are fixed text; no value is interpolated.
    let roles: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH objs AS (
           SELECT c.relowner AS owner, c.relacl AS acl
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE {USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
           UNION ALL
           SELECT p.proowner, p.proacl
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE {USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
           UNION ALL
           SELECT t.typowner, t.typacl
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE {USER_SCHEMA} AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
           UNION ALL
           SELECT n.nspowner, n.nspacl FROM pg_namespace n WHERE {USER_SCHEMA}
           UNION ALL
           SELECT lomowner, lomacl FROM pg_largeobject_metadata
           UNION ALL
           SELECT defaclrole, defaclacl FROM pg_default_acl
           UNION ALL
           SELECT pubowner, NULL FROM pg_publication
           UNION ALL
           SELECT srvowner, srvacl FROM pg_foreign_server
           UNION ALL
           SELECT evtowner, NULL FROM pg_event_trigger
         ),
         oids AS (
           SELECT owner AS oid FROM objs
           UNION SELECT (aclexplode(acl)).grantee FROM objs WHERE acl IS NOT NULL
           UNION SELECT (aclexplode(a.attacl)).grantee
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE a.attacl IS NOT NULL AND {USER_SCHEMA}
         )
         SELECT DISTINCT r.rolname::text FROM oids JOIN pg_roles r ON r.oid = oids.oid ORDER BY 1"
    )))
    .fetch_all(&mut *conn)
    .await
    .context("list the roles that own objects")?;
    Ok(DumpObjects {
        schemas,
        extensions,
        roles,
    })
}

/// Whether `role` is one of the server's built-in roles (`pg_database_owner`,
/// `pg_read_all_data`, ...). The `pg_` prefix is reserved: no user can create such a role.
/// pg_dump never gives objects to them with `ALTER … OWNER` (the `public` schema's owner
/// `pg_database_owner` is the default it leaves out), only GRANTs, which the object's owner
/// may make without being a member.
pub fn is_builtin_role(role: &str) -> bool {
    role.starts_with("pg_")
}

/// Of `roles`, those the connected user cannot give objects to (`ALTER … OWNER TO` needs
/// superuser or membership in the new owner), sorted; empty for a superuser. Built-in
/// `pg_*` roles are never listed (see [`is_builtin_role`]).
pub async fn not_member_of(conn: &mut PgConnection, roles: &[String]) -> Result<Vec<String>> {
    let roles: Vec<&str> = roles
        .iter()
        .map(String::as_str)
        .filter(|r| !is_builtin_role(r))
        .collect();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT r FROM unnest($1::text[]) AS r
          WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
            AND NOT pg_has_role(current_user, r, 'MEMBER')
          ORDER BY 1",
    )
    .bind(roles)
    .fetch_all(&mut *conn)
    .await
    .context("check role memberships")?;
    Ok(names)
}

/// The roles that exist on the server.
pub async fn roles(conn: &mut PgConnection) -> Result<HashSet<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles")
        .fetch_all(&mut *conn)
        .await
        .context("list roles")?;
    Ok(names.into_iter().collect())
}

/// Extensions the server can create (`pg_available_extensions`), with their default version.
pub async fn available_extensions(conn: &mut PgConnection) -> Result<HashMap<String, String>> {
    let rows = sqlx::query(
        "SELECT name::text AS name, coalesce(default_version, '') AS version \
         FROM pg_available_extensions",
    )
    .fetch_all(&mut *conn)
    .await
    .context("list available extensions")?;
    rows.iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("version")?)))
        .collect::<Result<HashMap<_, _>, sqlx::Error>>()
        .map_err(Into::into)
}

/// What a restore with owners kept needs of the destination's roles.
#[derive(Debug, PartialEq, Eq)]
pub enum OwnerVerdict {
    /// Every role exists and the restoring user may give objects to each.
    Fine,
    /// These roles do not exist on the destination.
    Missing(Vec<String>),
    /// These roles exist, but the restoring user is neither superuser nor a member.
    NotMember(Vec<String>),
}

/// The restore pre-flight's owner check, shared with `targets check` so that the check predicts
/// what a restore will refuse. `conn` is connected as the restoring user.
pub async fn owner_verdict(conn: &mut PgConnection, wanted: &[String]) -> Result<OwnerVerdict> {
    let have = roles(conn).await?;
    let missing = missing(wanted, &have);
    if !missing.is_empty() {
        return Ok(OwnerVerdict::Missing(
            missing.into_iter().map(str::to_owned).collect(),
        ));
    }
    let cannot = not_member_of(conn, wanted).await?;
    if cannot.is_empty() {
        Ok(OwnerVerdict::Fine)
    } else {
        Ok(OwnerVerdict::NotMember(cannot))
    }
}

/// The roles of `wanted` the server lacks, sorted.
pub fn missing<'a>(wanted: &'a [String], have: &HashSet<String>) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|r| !have.contains(r.as_str()))
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roles_are_the_reserved_pg_prefix() {
        for r in ["pg_database_owner", "pg_read_all_data", "pg_monitor"] {
            assert!(is_builtin_role(r), "{r}");
        }
        for r in ["postgres", "app_owner", "PG_x", "xpg_"] {
            assert!(!is_builtin_role(r), "{r}");
        }
    }

    #[test]
    fn missing_roles_are_listed_once_in_order() {
        let have: HashSet<String> = ["postgres", "app"].iter().map(|s| (*s).into()).collect();
        let wanted: Vec<String> = ["reporting", "app", "auditor", "reporting"]
            .iter()
            .map(|s| (*s).into())
            .collect();
        assert_eq!(missing(&wanted, &have), ["auditor", "reporting"]);
        assert!(missing(&[], &have).is_empty());
    }
}
