//! Moving a restored and verified scratch database into place. MySQL and MariaDB have no
//! `RENAME DATABASE`: tables move with one multi-table `RENAME TABLE` (atomic: all or none),
//! and the objects that cannot change database — views, triggers, stored routines, events — are
//! read from the scratch database (`SHOW CREATE …`, with the `sql_mode`, character set and
//! time zone they were created with) and created again in the destination. When an existing
//! database is replaced, its tables move aside into an `old` database in the same statement,
//! and everything is put back if a later step fails. See docs/adr/0007-mysql-restore-swap.md.

use anyhow::{Context, Result, bail};
use sqlx::{AssertSqlSafe, mysql::MySqlConnection};

use super::{list_tables_and_sequences, quote_ident, quote_literal, text_at};
use crate::swap_journal::{Entry, Journal, MysqlSwap, Step, test_pause};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ObjectKind {
    View,
    Trigger,
    Procedure,
    Function,
    Event,
}

impl ObjectKind {
    fn sql(self) -> &'static str {
        match self {
            Self::View => "VIEW",
            Self::Trigger => "TRIGGER",
            Self::Procedure => "PROCEDURE",
            Self::Function => "FUNCTION",
            Self::Event => "EVENT",
        }
    }
}

/// One object's definition and the session settings it was created with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectDef {
    pub kind: ObjectKind,
    pub name: String,
    /// The `CREATE …` statement, unqualified (read while the database was the current one).
    pub create: String,
    pub sql_mode: Option<String>,
    pub character_set_client: String,
    pub collation_connection: String,
    pub time_zone: Option<String>,
}

/// The non-table objects of a database, in creation order: routines (views and triggers may
/// call them), views, triggers (in their firing order), events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Objects {
    pub routines: Vec<ObjectDef>,
    pub views: Vec<ObjectDef>,
    pub triggers: Vec<ObjectDef>,
    pub events: Vec<ObjectDef>,
}

impl Objects {
    pub fn len(&self) -> usize {
        self.routines.len() + self.views.len() + self.triggers.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn use_db(conn: &mut MySqlConnection, db: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!("USE {}", quote_ident(db))))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("use database {db}"))?;
    Ok(())
}

async fn names(
    conn: &mut MySqlConnection,
    sql: &'static str,
    db: &str,
) -> Result<Vec<Vec<String>>> {
    let rows = sqlx::query(sql)
        .bind(db)
        .fetch_all(&mut *conn)
        .await
        .context("list database objects")?;
    rows.iter()
        .map(|r| {
            (0..sqlx::Row::len(r))
                .map(|i| text_at(r, i))
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

/// Reads every view, trigger, routine and event of `db`. Leaves `db` as the current database.
pub async fn capture_objects(conn: &mut MySqlConnection, db: &str) -> Result<Objects> {
    use_db(conn, db).await?;
    let mut o = Objects::default();
    for r in names(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES
         WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        db,
    )
    .await?
    {
        let kind = match r[0].as_str() {
            "PROCEDURE" => ObjectKind::Procedure,
            "FUNCTION" => ObjectKind::Function,
            other => bail!(
                "database {db} has a stored {other} ({}), which lifeboat cannot move between databases; restore with a plain mariadb client instead",
                r[1]
            ),
        };
        o.routines.push(show_create(conn, kind, &r[1]).await?);
    }
    for r in names(
        conn,
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        db,
    )
    .await?
    {
        o.views.push(show_create(conn, ObjectKind::View, &r[0]).await?);
    }
    for r in names(
        conn,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?
         ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
        db,
    )
    .await?
    {
        o.triggers
            .push(show_create(conn, ObjectKind::Trigger, &r[0]).await?);
    }
    for r in names(
        conn,
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
        db,
    )
    .await?
    {
        o.events.push(show_create(conn, ObjectKind::Event, &r[0]).await?);
    }
    Ok(o)
}

async fn show_create(
    conn: &mut MySqlConnection,
    kind: ObjectKind,
    name: &str,
) -> Result<ObjectDef> {
    let sql = format!("SHOW CREATE {} {}", kind.sql(), quote_ident(name));
    let row = sqlx::raw_sql(AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .with_context(|| {
            format!(
                "read the definition of {} {name}",
                kind.sql().to_lowercase()
            )
        })?;
    // Column positions are the same in MySQL 5.7/8 and MariaDB 10/11.
    let (create, sql_mode, cs, coll, tz) = match kind {
        ObjectKind::View => (1, None, 2, 3, None),
        ObjectKind::Trigger | ObjectKind::Procedure | ObjectKind::Function => {
            (2, Some(1), 3, 4, None)
        }
        ObjectKind::Event => (3, Some(1), 4, 5, Some(2)),
    };
    let def = ObjectDef {
        kind,
        name: name.to_owned(),
        create: text_at(&row, create)?,
        sql_mode: sql_mode.map(|i| text_at(&row, i)).transpose()?,
        character_set_client: text_at(&row, cs)?,
        collation_connection: text_at(&row, coll)?,
        time_zone: tz.map(|i| text_at(&row, i)).transpose()?,
    };
    if def.create.trim().is_empty() {
        bail!(
            "cannot read the definition of {} {name}: this user lacks the privilege to see it (needs to be its definer, or SHOW_ROUTINE / SELECT on mysql.proc)",
            kind.sql().to_lowercase()
        );
    }
    Ok(def)
}

fn check_mode(s: &str) -> Result<()> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b',')
    {
        bail!("unexpected sql_mode {s:?}");
    }
    Ok(())
}

fn check_word(s: &str) -> Result<()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("unexpected character set or collation {s:?}");
    }
    Ok(())
}

/// The session settings to create `def` with. The text travels as utf8mb4; the original
/// client character set is kept when that reads the same bytes (ASCII, or utf8mb4 itself).
fn session_sql(def: &ObjectDef) -> Result<String> {
    let original = def.character_set_client.as_str();
    let keep = def.create.is_ascii()
        || original == "utf8mb4"
        || (matches!(original, "utf8" | "utf8mb3") && def.create.chars().all(|c| c.len_utf8() < 4));
    let (cs, coll) = if keep {
        (original, def.collation_connection.as_str())
    } else {
        ("utf8mb4", "utf8mb4_general_ci")
    };
    check_word(cs)?;
    check_word(coll)?;
    let mut parts = vec![
        format!("character_set_client = {cs}"),
        format!("character_set_results = {cs}"),
        format!("collation_connection = {coll}"),
    ];
    if let Some(m) = &def.sql_mode {
        check_mode(m)?;
        parts.push(format!("sql_mode = '{m}'"));
    }
    if let Some(tz) = &def.time_zone {
        parts.push(format!("time_zone = {}", quote_literal(tz)?));
    }
    Ok(format!("SET SESSION {}", parts.join(", ")))
}

fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|d| d.number())
}

async fn create_one(
    conn: &mut MySqlConnection,
    def: &ObjectDef,
) -> std::result::Result<(), sqlx::Error> {
    let set = session_sql(def).map_err(|e| sqlx::Error::Protocol(format!("{e:#}")))?;
    sqlx::raw_sql(AssertSqlSafe(set))
        .execute(&mut *conn)
        .await?;
    // The definition comes from the server's own SHOW CREATE output.
    sqlx::raw_sql(AssertSqlSafe(def.create.clone()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates `objects` in `db` (which becomes the current database). Views that depend on views
/// not created yet are retried until no more progress is made.
pub async fn create_objects(conn: &mut MySqlConnection, db: &str, objects: &Objects) -> Result<()> {
    use_db(conn, db).await?;
    let what = |d: &ObjectDef| format!("{} {}", d.kind.sql().to_lowercase(), d.name);
    for d in &objects.routines {
        create_one(conn, d)
            .await
            .with_context(|| format!("create {} in {db}", what(d)))?;
    }
    let mut pending: Vec<&ObjectDef> = objects.views.iter().collect();
    while !pending.is_empty() {
        let mut left = Vec::new();
        let mut last_err = None;
        for d in &pending {
            match create_one(conn, d).await {
                Ok(()) => {}
                // No such table / invalid view / no such function: a dependency comes later.
                Err(e) if matches!(error_number(&e), Some(1146 | 1356 | 1305)) => {
                    last_err = Some((what(d), e));
                    left.push(*d);
                }
                Err(e) => return Err(e).with_context(|| format!("create {} in {db}", what(d))),
            }
        }
        if left.len() == pending.len() {
            if let Some((w, e)) = last_err {
                return Err(e).with_context(|| format!("create {w} in {db}"));
            }
            break;
        }
        pending = left;
    }
    for d in objects.triggers.iter().chain(&objects.events) {
        create_one(conn, d)
            .await
            .with_context(|| format!("create {} in {db}", what(d)))?;
    }
    sqlx::raw_sql("SET NAMES utf8mb4")
        .execute(&mut *conn)
        .await
        .context("reset the session character set")?;
    Ok(())
}

/// Drops every view, trigger, routine and event of `db` (tables are left alone).
pub async fn drop_objects(conn: &mut MySqlConnection, db: &str) -> Result<()> {
    let o = capture_names(conn, db).await?;
    for (kind, name) in o {
        let sql = format!(
            "DROP {} IF EXISTS {}.{}",
            kind.sql(),
            quote_ident(db),
            quote_ident(&name)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("drop {} {name} in {db}", kind.sql().to_lowercase()))?;
    }
    Ok(())
}

async fn capture_names(conn: &mut MySqlConnection, db: &str) -> Result<Vec<(ObjectKind, String)>> {
    let mut out = Vec::new();
    for r in names(
        conn,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
        db,
    )
    .await?
    {
        out.push((ObjectKind::Trigger, r[0].clone()));
    }
    for r in names(
        conn,
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
        db,
    )
    .await?
    {
        out.push((ObjectKind::View, r[0].clone()));
    }
    for r in names(
        conn,
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
        db,
    )
    .await?
    {
        let kind = if r[0] == "FUNCTION" {
            ObjectKind::Function
        } else {
            ObjectKind::Procedure
        };
        out.push((kind, r[1].clone()));
    }
    for r in names(
        conn,
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
        db,
    )
    .await?
    {
        out.push((ObjectKind::Event, r[0].clone()));
    }
    Ok(out)
}

/// Removes everything from `db` but keeps the database itself (for servers where databases
/// cannot be created or dropped with SQL, e.g. PlanetScale): views, triggers, routines,
/// events, then every table and sequence, with foreign key checks off for this session.
pub async fn empty_database(conn: &mut MySqlConnection, db: &str) -> Result<()> {
    drop_objects(conn, db).await?;
    let tables = list_tables_and_sequences(conn, db).await?;
    if tables.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", quote_ident(db), quote_ident(t)))
        .collect();
    sqlx::raw_sql("SET SESSION foreign_key_checks = 0")
        .execute(&mut *conn)
        .await
        .context("disable foreign key checks")?;
    // Identifiers quoted with quote_ident.
    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {}",
        list.join(", ")
    )))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("drop the tables of {db}"));
    sqlx::raw_sql("SET SESSION foreign_key_checks = 1")
        .execute(&mut *conn)
        .await
        .context("re-enable foreign key checks")?;
    dropped?;
    Ok(())
}

/// One `RENAME TABLE` statement moving every `(from_db, to_db, tables)` group.
fn rename_sql(moves: &[(&str, &str, &[String])]) -> Option<String> {
    let parts: Vec<String> = moves
        .iter()
        .flat_map(|(from, to, tables)| {
            tables.iter().map(move |t| {
                format!(
                    "{}.{} TO {}.{}",
                    quote_ident(from),
                    quote_ident(t),
                    quote_ident(to),
                    quote_ident(t)
                )
            })
        })
        .collect();
    (!parts.is_empty()).then(|| format!("RENAME TABLE {}", parts.join(", ")))
}

async fn rename(conn: &mut MySqlConnection, moves: &[(&str, &str, &[String])]) -> Result<()> {
    if let Some(sql) = rename_sql(moves) {
        // Identifiers quoted with quote_ident.
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .context("rename tables")?;
    }
    Ok(())
}

/// What to move where.
#[derive(Debug, Clone)]
pub struct SwapPlan<'a> {
    /// The restored, verified database.
    pub scratch: &'a str,
    /// The name the operator asked for.
    pub dest: &'a str,
    /// `Some(name)` when `dest` exists and is replaced (`--clean`): its tables move there, to
    /// be dropped by the caller after success. `None`: `dest` must not exist and is created.
    pub old: Option<&'a str>,
    /// The backup's default character set and collation for `dest`.
    pub character_set: &'a str,
    pub collation: &'a str,
}

/// Moves the scratch database's contents to `dest` (see the module docs). On success `scratch`
/// holds nothing the caller needs (drop it), and `old` (if any) holds the replaced tables
/// (drop it). On failure everything is back where it was, or the error says where it is.
/// Before anything changes, the captured definitions of both sides go into `journal`, so a
/// crash at any step can be finished or undone at the next start ([`recover`]).
pub async fn swap_in_journaled(
    conn: &mut MySqlConnection,
    plan: &SwapPlan<'_>,
    journal: &mut Journal,
) -> Result<()> {
    swap(conn, plan, Some(journal)).await
}

/// [`swap_in_journaled`] without a journal (a crash in the middle is not recovered).
pub async fn swap_in(conn: &mut MySqlConnection, plan: &SwapPlan<'_>) -> Result<()> {
    swap(conn, plan, None).await
}

async fn swap(
    conn: &mut MySqlConnection,
    plan: &SwapPlan<'_>,
    journal: Option<&mut Journal>,
) -> Result<()> {
    let new_objects = capture_objects(conn, plan.scratch).await?;
    let new_tables = list_tables_and_sequences(conn, plan.scratch).await?;
    let exists = super::database_exists(conn, plan.dest).await?;
    let (old_objects, old_tables) = match (plan.old, exists) {
        (Some(_), true) => {
            let o = capture_objects(conn, plan.dest).await?;
            let t = list_tables_and_sequences(conn, plan.dest).await?;
            (o, t)
        }
        (None, true) => bail!(
            "database {} already exists; restore into a new database or replace it with --clean",
            plan.dest
        ),
        (_, false) => (Objects::default(), Vec::new()),
    };
    let old = if exists { plan.old.unwrap_or("") } else { "" };
    if let Some(journal) = journal {
        journal
            .mysql_swap(
                (!old.is_empty()).then_some(old),
                MysqlSwap {
                    new_objects: new_objects.clone(),
                    old_objects: old_objects.clone(),
                    new_tables: new_tables.clone(),
                    old_tables: old_tables.clone(),
                    dest_existed: exists,
                    character_set: plan.character_set.to_owned(),
                    collation: plan.collation.to_owned(),
                },
            )
            .await?;
    }
    test_pause("mysql-swap-begin").await;
    if exists {
        super::create_database(conn, old, "", "").await?;
    } else {
        super::create_database(conn, plan.dest, plan.character_set, plan.collation).await?;
    }
    // Triggers keep a table from changing database; views and routines cannot move at all.
    if let Err(e) = drop_objects(conn, plan.scratch).await {
        undo_created_databases(conn, plan.dest, exists, old).await;
        return Err(e.context(format!(
            "prepare {} for the swap (nothing was changed)",
            plan.scratch
        )));
    }
    let moved = async {
        drop_objects(conn, plan.dest)
            .await
            .with_context(|| format!("clear {} for the swap", plan.dest))?;
        test_pause("mysql-before-rename").await;
        rename(
            conn,
            &[
                (plan.dest, old, &old_tables),
                (plan.scratch, plan.dest, &new_tables),
            ],
        )
        .await
    }
    .await;
    if let Err(e) = moved {
        let e = rollback_objects(conn, plan, &old_objects, e).await;
        undo_created_databases(conn, plan.dest, exists, old).await;
        return Err(e);
    }
    test_pause("mysql-after-rename").await;
    let finished = async {
        if exists && !plan.character_set.is_empty() {
            alter_database_charset(conn, plan.dest, plan.character_set, plan.collation).await?;
        }
        create_objects(conn, plan.dest, &new_objects).await
    }
    .await;
    if let Err(e) = finished {
        // Put the original back: drop what was created, move the tables back, re-create.
        let back = async {
            drop_objects(conn, plan.dest).await?;
            rename(
                conn,
                &[
                    (plan.dest, plan.scratch, &new_tables),
                    (old, plan.dest, &old_tables),
                ],
            )
            .await?;
            create_objects(conn, plan.dest, &old_objects).await
        }
        .await;
        if let Err(back) = back {
            bail!(
                "{e:#}; putting the original back failed too ({back:#}): the restored tables may be in {} or {}, the original tables in {}; check them by hand",
                plan.scratch,
                plan.dest,
                if old.is_empty() { plan.dest } else { old }
            );
        }
        undo_created_databases(conn, plan.dest, exists, old).await;
        return Err(e.context("swap the restored database into place (everything was put back)"));
    }
    Ok(())
}

/// After a failed swap that put everything back: drops the databases the swap created (the
/// destination when it did not exist before, the empty `old` one), which hold nothing now.
async fn undo_created_databases(conn: &mut MySqlConnection, dest: &str, existed: bool, old: &str) {
    let created = if existed { old } else { dest };
    if created.is_empty() {
        return;
    }
    match list_tables_and_sequences(conn, created).await {
        Ok(t) if t.is_empty() => {
            if let Err(e) = super::drop_database(conn, created).await {
                tracing::warn!(
                    "failed to drop the empty database {created} after a failed swap: {e:#}"
                );
            }
        }
        _ => tracing::warn!("kept database {created} after a failed swap: it is not empty"),
    }
}

async fn rollback_objects(
    conn: &mut MySqlConnection,
    plan: &SwapPlan<'_>,
    old_objects: &Objects,
    e: anyhow::Error,
) -> anyhow::Error {
    if let Err(back) = create_objects(conn, plan.dest, old_objects).await {
        return e.context(format!(
            "re-creating the views, triggers and routines of {} failed too ({back:#}); its tables are intact",
            plan.dest
        ));
    }
    e.context("move the restored tables into place (nothing was changed)")
}

/// Finishes or undoes a swap interrupted by a crash, from its journal (see
/// [`crate::swap_journal`]). `RENAME TABLE` is atomic, so where the restored tables are tells
/// which side of it the crash was: before it, the destination gets its captured views,
/// triggers, routines and events back; after it, the restored ones are created.
pub async fn recover(conn: &mut MySqlConnection, e: &Entry) -> Result<String> {
    let scratch_exists = super::database_exists(conn, &e.scratch).await?;
    let old = e.old.as_deref().unwrap_or("");
    let old_exists = !old.is_empty() && super::database_exists(conn, old).await?;
    match e.step {
        Step::Loading => {
            if scratch_exists {
                super::drop_database(conn, &e.scratch).await?;
            }
            return Ok(format!(
                "it stopped while loading; dropped the scratch database {}, {} is as it was",
                e.scratch, e.dest
            ));
        }
        Step::Finishing => {
            if scratch_exists {
                super::drop_database(conn, &e.scratch).await?;
            }
            if old_exists {
                super::drop_database(conn, old).await?;
            }
            return Ok(format!(
                "the swap had completed; {} holds the restored data, the leftovers were dropped",
                e.dest
            ));
        }
        Step::Swapping => {}
    }
    let s = e
        .mysql
        .as_ref()
        .context("the journal of a MySQL swap has no record of the objects")?;
    let dest_exists = super::database_exists(conn, &e.dest).await?;
    let scratch_tables = if scratch_exists {
        list_tables_and_sequences(conn, &e.scratch).await?
    } else {
        Vec::new()
    };
    let renamed = match (s.new_tables.first(), s.old_tables.first()) {
        (Some(t), _) => !scratch_tables.contains(t),
        (None, Some(t)) => old_exists && list_tables_and_sequences(conn, old).await?.contains(t),
        (None, None) => false,
    };
    if renamed {
        if !dest_exists {
            bail!(
                "the restored tables are neither in {} nor in {}",
                e.scratch,
                e.dest
            );
        }
        drop_objects(conn, &e.dest).await?;
        if s.dest_existed && !s.character_set.is_empty() {
            alter_database_charset(conn, &e.dest, &s.character_set, &s.collation).await?;
        }
        create_objects(conn, &e.dest, &s.new_objects)
            .await
            .context("create the restored views, triggers, routines and events")?;
        if scratch_exists {
            super::drop_database(conn, &e.scratch).await?;
        }
        if old_exists {
            super::drop_database(conn, old).await?;
        }
        return Ok(format!(
            "finished the swap: {} holds the restored data and objects{}",
            e.dest,
            if old_exists {
                ", the replaced tables were dropped"
            } else {
                ""
            }
        ));
    }
    // Before the rename: the destination gets back exactly what it had.
    if dest_exists {
        drop_objects(conn, &e.dest).await?;
        if s.dest_existed {
            create_objects(conn, &e.dest, &s.old_objects)
                .await
                .context("re-create the original views, triggers, routines and events")?;
        } else if list_tables_and_sequences(conn, &e.dest).await?.is_empty() {
            super::drop_database(conn, &e.dest).await?;
        }
    }
    if scratch_exists {
        super::drop_database(conn, &e.scratch).await?;
    }
    if old_exists {
        if !list_tables_and_sequences(conn, old).await?.is_empty() {
            bail!(
                "{old} still holds tables; move them back to {} by hand",
                e.dest
            );
        }
        super::drop_database(conn, old).await?;
    }
    Ok(format!(
        "it stopped before the tables were swapped; {} is as it was, the restored copy was dropped",
        e.dest
    ))
}

async fn alter_database_charset(
    conn: &mut MySqlConnection,
    db: &str,
    character_set: &str,
    collation: &str,
) -> Result<()> {
    check_word(character_set)?;
    let mut sql = format!(
        "ALTER DATABASE {} CHARACTER SET {character_set}",
        quote_ident(db)
    );
    if !collation.is_empty() {
        check_word(collation)?;
        sql.push_str(&format!(" COLLATE {collation}"));
    }
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("set the character set of {db}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(create: &str, cs: &str) -> ObjectDef {
        ObjectDef {
            kind: ObjectKind::Trigger,
            name: "t".into(),
            create: create.into(),
            sql_mode: Some("STRICT_TRANS_TABLES,NO_ZERO_DATE".into()),
            character_set_client: cs.into(),
            collation_connection: format!("{cs}_general_ci"),
            time_zone: Some("+00:00".into()),
        }
    }

    #[test]
    fn session_keeps_original_charset_when_the_bytes_read_the_same() {
        let s = session_sql(&def("CREATE TRIGGER x", "latin1")).expect("sql");
        assert!(s.contains("character_set_client = latin1"), "{s}");
        assert!(
            s.contains("sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE'"),
            "{s}"
        );
        assert!(s.contains("time_zone = '+00:00'"), "{s}");
        let s = session_sql(&def("CREATE TRIGGER x SET @a = 'é'", "latin1")).expect("sql");
        assert!(s.contains("character_set_client = utf8mb4"), "{s}");
        let s = session_sql(&def("SET @a = '😀'", "utf8mb3")).expect("sql");
        assert!(s.contains("character_set_client = utf8mb4"), "{s}");
        let s = session_sql(&def("SET @a = 'é'", "utf8mb3")).expect("sql");
        assert!(s.contains("character_set_client = utf8mb3"), "{s}");
    }

    #[test]
    fn hostile_session_values_are_refused() {
        let mut d = def("x", "utf8mb4");
        d.sql_mode = Some("ANSI'; DROP DATABASE x; --".into());
        assert!(session_sql(&d).is_err());
        let mut d = def("x", "utf8mb4");
        d.collation_connection = "x; DROP".into();
        assert!(session_sql(&d).is_err());
        let mut d = def("x", "utf8mb4");
        d.time_zone = Some("\\'".into());
        assert!(session_sql(&d).is_err());
    }

    #[test]
    fn one_rename_statement_for_both_directions() {
        let old = vec!["a".to_owned()];
        let new = vec!["a".to_owned(), "we`ird".to_owned()];
        let sql = rename_sql(&[("dest", "old", &old), ("scratch", "dest", &new)]).expect("sql");
        assert_eq!(
            sql,
            "RENAME TABLE `dest`.`a` TO `old`.`a`, `scratch`.`a` TO `dest`.`a`, `scratch`.`we``ird` TO `dest`.`we``ird`"
        );
        assert_eq!(rename_sql(&[("a", "b", &[])]), None);
    }
}
