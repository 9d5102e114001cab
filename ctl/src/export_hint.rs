//! What `backup export --wait` prints after the file was written: how to check it and restore
//! it by hand, for the backup's engine.

use lifeboat_proto as pb;
use lifeboat_proto::domain::PG_BASEBACKUP_FORMAT;

/// The commands that restore an exported file without lifeboat, indented under a heading.
/// Without the backup record (it could not be read) both engines are shown.
pub fn restore_by_hand(job: &pb::Job, backup: Option<&pb::BackupRecord>) -> String {
    let path = shell_quote(&job.export_path);
    let db = backup
        .map(|b| b.database.as_str())
        .filter(|d| !d.is_empty())
        .map_or_else(|| "restored".to_owned(), |d| format!("{d}_restored"));
    let mut lines = vec![
        "\nrestore it by hand (into a new database; the manifest copy holds the row counts and versions):".to_owned(),
        format!("  echo \"{}  {path}\" | sha256sum -c -", job.export_raw_sha256),
    ];
    let engine = backup.map(|b| pb::Engine::try_from(b.engine).unwrap_or(pb::Engine::Unspecified));
    let physical = backup.is_some_and(|b| b.format == PG_BASEBACKUP_FORMAT);
    if physical {
        lines.extend([
            "  install -d -o postgres -m 0700 /srv/pg/restored      # an empty directory"
                .to_owned(),
            format!("  runuser -u postgres -- tar -xf {path} -C /srv/pg/restored"),
            "  runuser -u postgres -- pg_ctl -D /srv/pg/restored -o '-p 5499' start".to_owned(),
        ]);
    } else {
        if matches!(engine, None | Some(pb::Engine::Postgres)) {
            lines.extend([
                format!("  createdb --template=template0 {db}"),
                format!(
                    "  pg_restore --exit-on-error --no-owner --no-privileges --dbname={db} {path}"
                ),
            ]);
        }
        if matches!(engine, None | Some(pb::Engine::Mysql)) {
            lines.extend([
                format!("  mariadb -e 'CREATE DATABASE `{db}` CHARACTER SET utf8mb4'"),
                format!("  mariadb --batch {db} < {path}        # mysql for MySQL and PlanetScale"),
            ]);
        }
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// `s` as one shell word: unchanged when it is plainly safe, else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(path: &str) -> pb::Job {
        pb::Job {
            export_path: path.into(),
            export_raw_sha256: "a".repeat(64),
            ..Default::default()
        }
    }

    #[test]
    fn commands_follow_the_engine() {
        let pg = pb::BackupRecord {
            engine: pb::Engine::Postgres as i32,
            database: "orders".into(),
            format: "pg_dump-custom".into(),
            ..Default::default()
        };
        let s = restore_by_hand(&job("/x/orders.pgdump"), Some(&pg));
        assert!(
            s.contains("pg_restore --exit-on-error --no-owner --no-privileges --dbname=orders_restored /x/orders.pgdump"),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "echo \"{}  /x/orders.pgdump\" | sha256sum -c -",
                "a".repeat(64)
            )),
            "{s}"
        );
        assert!(!s.contains("mariadb"), "{s}");
        let my = pb::BackupRecord {
            engine: pb::Engine::Mysql as i32,
            database: "shop".into(),
            ..Default::default()
        };
        let s = restore_by_hand(&job("/x/a b.sql"), Some(&my));
        assert!(
            s.contains("mariadb --batch shop_restored < '/x/a b.sql'"),
            "{s}"
        );
        assert!(!s.contains("pg_restore"), "{s}");
        let base = pb::BackupRecord {
            engine: pb::Engine::Postgres as i32,
            format: PG_BASEBACKUP_FORMAT.into(),
            ..Default::default()
        };
        let s = restore_by_hand(&job("/x/main.tar"), Some(&base));
        assert!(s.contains("tar -xf /x/main.tar"), "{s}");
        let s = restore_by_hand(&job("/x/it's"), None);
        assert!(s.contains("pg_restore") && s.contains("mariadb"), "{s}");
        assert!(s.contains(r"'/x/it'\''s'"), "{s}");
    }
}
