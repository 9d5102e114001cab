//! Runbooks that cannot drift: the `lifeboat` commands of docs/OPERATIONS.md and
//! docs/DISASTER_RECOVERY.md run against a real sandbox (PostgreSQL, coordinator, agent).
//!
//! # The convention
//!
//! A shell block in those documents is *runnable* when the line right before its opening fence
//! is one of these HTML comments (invisible when the Markdown is rendered):
//!
//! ```text
//! <!-- runnable -->              every `lifeboat …` line must exit 0
//! <!-- runnable expect-fail -->  every `lifeboat …` line must exit 1, "the operation failed"
//!                                (a refusal the document describes; a usage error, exit 2,
//!                                still fails the test)
//! ```
//!
//! followed by a fence opening with `sh`. Inside it:
//!
//! - Each line starting with `lifeboat ` is one command. A trailing `\` continues it on the next
//!   line; `# …` after the command is a comment. Words are split like a shell does for plain
//!   words and `'…'`/`"…"` quotes (no variables other than the placeholders, no pipes).
//! - The command runs through the real CLI with the sandbox's `admin` certificate and its
//!   coordinator (the connection flags are added; documents rely on `LIFEBOAT_*` variables).
//! - Other lines (comments, blank lines, other programs) are not run. Keep runnable blocks to
//!   `lifeboat` commands.
//! - Placeholders are replaced before a command runs:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `$TARGET` | the sandbox target, `ENV/NAME` (`test/orders`) |
//! | `$ENV` | its environment (`test`) |
//! | `$AGENT` | the sandbox agent's name |
//! | `$REPOSITORY` | the agent's repository name (`local`) |
//! | `$BACKUP_ID` | a backup of `$TARGET` taken before the first block runs |
//! | `$JOB_ID` | the job that took that backup |
//! | `$SOURCE_DB` | the target's live database (exists, not empty) |
//! | `$DB` | a database name that does not exist yet, new for every block |
//! | `$PITR_TARGET` | a physical target on the same server (`test/cluster`), whose WAL PostgreSQL archives through the agent; it has a base backup and archived WAL after it |
//! | `$DATA_DIR` | an empty directory the agent may restore a data directory into (under the target's `restore_data_dirs`, owned by `postgres`), new for every block |
//! | `$PITR_TIME` | a moment inside `$PITR_TARGET`'s recoverable window (RFC 3339, UTC): after some rows were committed and before others |
//!
//! After a block that restored into `$DATA_DIR` (without `--dry-run`), the directory must be a
//! data directory (`PG_VERSION`) with `recovery.signal`; when the restore went `--to-time
//! $PITR_TIME`, a server is started on it and must hold exactly the rows committed before that
//! moment (waiting at the target with `--recovery-action pause`, open once it is over
//! otherwise). After a block whose restores into `$DATA_DIR` were all dry runs, the directory
//! must still be empty.
//!
//! An unknown `$PLACEHOLDER` in a runnable command fails the test. Blocks run in document order,
//! OPERATIONS.md first, against one sandbox. The test fails listing the document, the line and
//! the output of every command that did not do what its block says, and fails when the documents
//! hold fewer than [`MIN_BLOCKS`] runnable blocks.
//!
//! Commands in ```sh blocks *without* a marker (they need a real installation: other targets,
//! certificates, an S3 bucket) are still checked: each is parsed by the real CLI with `--help`
//! appended, so a subcommand or flag that does not exist fails the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lifeboat_e2e::fixtures::load_bulk;
use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::poll::{eventually, scaled};
use lifeboat_e2e::sandbox::{AGENT, ENV, find_str};
use lifeboat_e2e::wal::{Tools, archive_through_agent, physical_target, wait_archived};
use lifeboat_e2e::{Sandbox, SandboxTarget};

/// Fewer runnable blocks than this means the extraction broke or the documents lost them.
const MIN_BLOCKS: usize = 5;

const DOCS: &[&str] = &["docs/OPERATIONS.md", "docs/DISASTER_RECOVERY.md"];

const TARGET_NAME: &str = "orders";

/// The physical target (and the database holding its rows).
const PITR_NAME: &str = "cluster";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Success,
    Failure,
}

#[derive(Debug)]
struct Command {
    doc: String,
    /// 1-based line of the command's first line in the document.
    line: usize,
    text: String,
}

#[derive(Debug)]
struct Block {
    doc: String,
    line: usize,
    expect: Expect,
    commands: Vec<Command>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The marker on `line`, if it is one.
fn marker(line: &str) -> Option<Result<Expect, String>> {
    let t = line.trim();
    let inner = t.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    let mut words = inner.split_whitespace();
    if words.next() != Some("runnable") {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    Some(match rest.as_slice() {
        [] => Ok(Expect::Success),
        ["expect-fail"] => Ok(Expect::Failure),
        other => Err(format!("unknown runnable marker options {other:?}")),
    })
}

/// Every runnable block of one document, or the problems found in its markers.
fn extract(doc: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(m) = marker(lines[i]) else {
            i += 1;
            continue;
        };
        let marker_line = i + 1;
        let expect = match m {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{doc}:{marker_line}: {e}"));
                i += 1;
                continue;
            }
        };
        let fence = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        if fence != "```sh" {
            problems.push(format!(
                "{doc}:{marker_line}: a runnable marker must be followed by a ```sh fence on the \
                 next line, found {fence:?}"
            ));
            i += 1;
            continue;
        }
        let (commands, j) = fence_commands(doc, &lines, i + 2);
        if j >= lines.len() {
            problems.push(format!(
                "{doc}:{marker_line}: the runnable block is never closed"
            ));
        }
        if commands.is_empty() {
            problems.push(format!(
                "{doc}:{marker_line}: a runnable block without any `lifeboat` command"
            ));
        }
        blocks.push(Block {
            doc: doc.to_owned(),
            line: marker_line,
            expect,
            commands,
        });
        i = j + 1;
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

/// The `lifeboat` commands of the fenced block whose first content line is `start` (0-based),
/// and the index of its closing fence (`lines.len()` if it is never closed).
fn fence_commands(doc: &str, lines: &[&str], start: usize) -> (Vec<Command>, usize) {
    let mut j = start;
    let mut commands = Vec::new();
    let mut pending: Option<Command> = None;
    while j < lines.len() && lines[j].trim() != "```" {
        let raw = lines[j];
        if let Some(mut cmd) = pending.take() {
            let (body, cont) = split_continuation(raw);
            cmd.text.push(' ');
            cmd.text.push_str(body.trim());
            if cont {
                pending = Some(cmd);
            } else {
                commands.push(cmd);
            }
        } else if raw.trim_start().starts_with("lifeboat ") {
            let (body, cont) = split_continuation(raw);
            let cmd = Command {
                doc: doc.to_owned(),
                line: j + 1,
                text: body.trim().to_owned(),
            };
            if cont {
                pending = Some(cmd);
            } else {
                commands.push(cmd);
            }
        }
        j += 1;
    }
    if let Some(cmd) = pending {
        commands.push(cmd);
    }
    (commands, j)
}

/// Every `lifeboat` command in every ```sh block of a document, runnable or not.
fn all_sh_commands(doc: &str, text: &str) -> Vec<Command> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```sh" {
            let (c, j) = fence_commands(doc, &lines, i + 1);
            out.extend(c);
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// A line without a trailing `\`, and whether it had one.
fn split_continuation(line: &str) -> (&str, bool) {
    let t = line.trim_end();
    match t.strip_suffix('\\') {
        Some(rest) => (rest, true),
        None => (t, false),
    }
}

/// Shell-like words: plain words, `'…'` and `"…"` quotes, `#` starting a comment outside
/// quotes at the start of a word.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '|' | ';' | '&' | '>' | '<' | '`' => {
                return Err(format!("{c:?} is not allowed in a runnable command"));
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Replaces the placeholders in one word; an unknown one is an error.
fn substitute(word: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None => return Err(format!("unknown placeholder ${name}")),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What the PITR blocks can rely on: `$PITR_TIME` and the rows committed before it.
struct Pitr {
    time: String,
    rows_at_time: String,
}

const PITR_ROWS: &str = "SELECT string_agg(k::text, ',' ORDER BY k) FROM events;";

/// Makes `$PITR_TARGET` usable: PostgreSQL archives through the agent, a base backup, ten
/// rows, `$PITR_TIME`, ten more rows, and everything archived.
fn set_up_pitr(s: &mut Sandbox, tools: &Tools) -> Pitr {
    archive_through_agent(s, tools, PITR_NAME);
    s.pg.psql(
        PITR_NAME,
        "CREATE TABLE events (k int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());",
    );
    s.backup_ok(PITR_NAME);
    s.pg.psql(
        PITR_NAME,
        "INSERT INTO events (k) SELECT generate_series(1, 10); SELECT pg_sleep(0.3);",
    );
    let time = s.pg.query_one(
        PITR_NAME,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"');",
    );
    let rows_at_time = s.pg.query_one(PITR_NAME, PITR_ROWS);
    s.pg.psql(
        PITR_NAME,
        "SELECT pg_sleep(0.3); INSERT INTO events (k) SELECT generate_series(11, 20);",
    );
    let name =
        s.pg.query_one(PITR_NAME, "SELECT pg_walfile_name(pg_switch_wal());");
    wait_archived(&s.pg, &name);
    let target = s.target(PITR_NAME);
    eventually(
        "the agent to report the archive",
        scaled(Duration::from_secs(60)),
        || {
            let w = s.admin.json(&["pitr", "window", &target]);
            anyhow::ensure!(
                find_str(&w, "last_archived").is_some_and(|l| l >= name),
                "{w}"
            );
            Ok(())
        },
    );
    Pitr { time, rows_at_time }
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// Judges what a block's restores (`restores`: their arguments) left in `$DATA_DIR` (`root`,
/// with `data` inside): nothing after dry runs only; otherwise a data directory set up for
/// recovery, which, restored to `$PITR_TIME`, starts and holds exactly the rows from before it.
fn check_data_dir(
    root: tempfile::TempDir,
    restores: &[Vec<String>],
    pitr: &Pitr,
    password: &str,
) -> Result<String, String> {
    let data = root.path().join("data");
    let Some(last) = restores
        .iter()
        .rfind(|a| !a.iter().any(|w| w == "--dry-run"))
    else {
        let left: Vec<_> = std::fs::read_dir(&data)
            .map_err(|e| format!("list {}: {e}", data.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        return if left.is_empty() {
            Ok("the dry run wrote nothing".to_owned())
        } else {
            Err(format!("a dry run wrote into {}: {left:?}", data.display()))
        };
    };
    for f in ["PG_VERSION", "recovery.signal"] {
        if !data.join(f).is_file() {
            return Err(format!("the restored {} has no {f}", data.display()));
        }
    }
    if flag_value(last, "--to-time") != Some(pitr.time.as_str()) {
        return Ok("a data directory with recovery.signal".to_owned());
    }
    let paused = match flag_value(last, "--recovery-action") {
        Some("shutdown") => return Ok("a data directory with recovery.signal".to_owned()),
        Some("pause") => true,
        _ => false,
    };
    let pg = Pg::start_existing(root, password);
    let want = if paused { "t t" } else { "f f" };
    let deadline = Instant::now() + scaled(Duration::from_secs(90));
    loop {
        let out = pg.try_psql(
            "postgres",
            "SELECT CASE WHEN pg_is_in_recovery() THEN 't ' || \
             CASE WHEN pg_is_wal_replay_paused() THEN 't' ELSE 'f' END ELSE 'f f' END;",
        );
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state == want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server on {} did not reach the recovery target (state {state:?}, want \
                 {want:?}):\n{}",
                data.display(),
                pg.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = pg.query_one(PITR_NAME, PITR_ROWS);
    if rows == pitr.rows_at_time {
        Ok(format!(
            "recovered to {}: rows {rows}{}",
            pitr.time,
            if paused { ", paused there" } else { "" }
        ))
    } else {
        Err(format!(
            "restored to {} the server holds rows {rows}, not {}",
            pitr.time, pitr.rows_at_time
        ))
    }
}

#[test]
fn runnable_blocks_in_the_runbooks_work() {
    // Read and parse the documents first: a broken document fails before a sandbox starts.
    let root = repo_root();
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    for doc in DOCS {
        let text =
            std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("read {doc}: {e}"));
        match extract(doc, &text) {
            Ok(b) => blocks.extend(b),
            Err(p) => problems.extend(p),
        }
    }
    assert!(
        problems.is_empty(),
        "malformed runnable blocks:\n{}",
        problems.join("\n")
    );
    assert!(
        blocks.len() >= MIN_BLOCKS,
        "only {} runnable blocks in {DOCS:?}; expected at least {MIN_BLOCKS}",
        blocks.len()
    );
    let mut parsed = Vec::new();
    for b in &blocks {
        for c in &b.commands {
            match shell_words(&c.text) {
                Ok(w) if w.first().map(String::as_str) == Some("lifeboat") => {
                    parsed.push((b, c, w[1..].to_vec()))
                }
                Ok(_) => problems.push(format!("{}:{}: not a lifeboat command", c.doc, c.line)),
                Err(e) => problems.push(format!("{}:{}: {e}: {}", c.doc, c.line, c.text)),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "unparsable runnable commands:\n{}",
        problems.join("\n")
    );

    // The sandbox: one target with data and one backup; a physical target on the same server
    // archiving its WAL through the agent, with a base backup.
    let tools = Tools::new();
    let mut s = Sandbox::builder("runbooks")
        .target(SandboxTarget::new(TARGET_NAME).extra("allow_clean_restore = true"))
        .target(physical_target(PITR_NAME))
        .agent_wal_socket_group("postgres")
        .agent_wal_client(&tools.bin())
        .build();
    let pitr = set_up_pitr(&mut s, &tools);
    load_bulk(&s.pg, TARGET_NAME, "orders", 1000);
    let run = s.backup_run(TARGET_NAME);
    run.assert_ok();
    let backup_id = find_str(&run.json(), "backup_id").expect("backup_id in backup run output");
    let job_id = find_str(&run.json(), "job_id").unwrap_or_else(|| backup_id.clone());

    let mut failures = Vec::new();
    let mut ran = 0usize;
    for (n, block) in blocks.iter().enumerate() {
        let data_root = block
            .commands
            .iter()
            .any(|c| c.text.contains("$DATA_DIR"))
            .then(Pg::empty_root);
        let data_dir = data_root
            .as_ref()
            .map(|r| r.path().join("data").display().to_string())
            .unwrap_or_default();
        let mut restores = Vec::new();
        let mut block_ok = true;
        let vars: Vec<(&str, String)> = vec![
            ("TARGET", s.target(TARGET_NAME)),
            ("ENV", ENV.to_owned()),
            ("AGENT", AGENT.to_owned()),
            ("REPOSITORY", "local".to_owned()),
            ("BACKUP_ID", backup_id.clone()),
            ("JOB_ID", job_id.clone()),
            ("SOURCE_DB", TARGET_NAME.to_owned()),
            ("DB", format!("runbook_{n}")),
            ("PITR_TARGET", s.target(PITR_NAME)),
            ("DATA_DIR", data_dir.clone()),
            ("PITR_TIME", pitr.time.clone()),
        ];
        for (b, c, words) in parsed.iter().filter(|(b, _, _)| std::ptr::eq(*b, block)) {
            let args: Result<Vec<String>, String> =
                words.iter().map(|w| substitute(w, &vars)).collect();
            let args = match args {
                Ok(a) => a,
                Err(e) => {
                    failures.push(format!("{}:{}: {e}: {}", c.doc, c.line, c.text));
                    continue;
                }
            };
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = s.admin.run(&argv);
            ran += 1;
            let ok = match b.expect {
                Expect::Success => out.code == 0,
                Expect::Failure => out.code == 1,
            };
            block_ok &= ok;
            if args.first().map(String::as_str) == Some("restore")
                && !data_dir.is_empty()
                && flag_value(&args, "--data-dir") == Some(data_dir.as_str())
            {
                restores.push(args.clone());
            }
            eprintln!(
                "{}:{}: `lifeboat {}` exited {}",
                c.doc,
                c.line,
                args.join(" "),
                out.code
            );
            if b.expect == Expect::Failure {
                eprintln!(
                    "  refused as documented: {}",
                    out.stderr.trim().lines().last().unwrap_or_default()
                );
            }
            if !ok {
                let wanted = match b.expect {
                    Expect::Success => "exit 0",
                    Expect::Failure => "exit 1 (expect-fail)",
                };
                failures.push(format!(
                    "{}:{} (block at {}:{}): wanted {wanted}\n{out}",
                    c.doc, c.line, b.doc, b.line
                ));
            }
        }
        // What the block's restores left in $DATA_DIR (when its commands did as documented).
        if let Some(root) = data_root
            && block_ok
            && block.expect == Expect::Success
            && !restores.is_empty()
        {
            match check_data_dir(root, &restores, &pitr, s.pg.password()) {
                Ok(what) => eprintln!("  {}:{}: $DATA_DIR: {what}", block.doc, block.line),
                Err(e) => failures.push(format!(
                    "{}:{}: $DATA_DIR after the block: {e}",
                    block.doc, block.line
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} runbook commands failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} runnable blocks, {ran} commands, all as documented",
        blocks.len()
    );
    s.shutdown();
}

#[test]
fn every_documented_lifeboat_command_parses() {
    let root = repo_root();
    let dummies: Vec<(&str, String)> = vec![
        ("TARGET", "prod/orders".into()),
        ("ENV", "prod".into()),
        ("AGENT", "prod-1".into()),
        ("REPOSITORY", "offsite".into()),
        ("BACKUP_ID", "20261127T233000Z-7f3a9c".into()),
        ("JOB_ID", "20261127T233000Z-7f3a9c".into()),
        ("SOURCE_DB", "orders".into()),
        ("DB", "orders_check".into()),
        ("PITR_TARGET", "prod/main".into()),
        ("DATA_DIR", "/srv/pg/recovered".into()),
        ("PITR_TIME", "2026-12-03T13:03:27Z".into()),
    ];
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for doc in DOCS {
        let text =
            std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("read {doc}: {e}"));
        for c in all_sh_commands(doc, &text) {
            let words = match shell_words(&c.text) {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{}:{}: {e}: {}", c.doc, c.line, c.text));
                    continue;
                }
            };
            let mut args: Vec<String> = words[1..]
                .iter()
                .map(|w| substitute(w, &dummies).unwrap_or_else(|_| w.clone()))
                .collect();
            args.push("--help".into());
            let out = std::process::Command::new(lifeboat_e2e::bin("lifeboat"))
                .args(&args)
                .env_remove("LIFEBOAT_COORDINATOR")
                .output()
                .expect("run lifeboat");
            checked += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{}:{}: `{}` is not a valid lifeboat command line:\n{}",
                    c.doc,
                    c.line,
                    c.text,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        checked >= MIN_BLOCKS,
        "only {checked} lifeboat commands found"
    );
}

#[test]
fn extraction_follows_the_convention() {
    let doc = "text\n<!-- runnable -->\n```sh\n# comment\nlifeboat backup list --target $TARGET  # c\n\
               pg_dump -Fc x\nlifeboat schedule set $TARGET \\\n  --cron \"30 2 * * *\"\n```\n\
               ```sh\nlifeboat not-runnable\n```\n<!-- runnable expect-fail -->\n```sh\n\
               lifeboat restore $BACKUP_ID --database $SOURCE_DB --wait\n```\n";
    let blocks = extract("doc.md", doc).expect("well formed");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].expect, Expect::Success);
    assert_eq!(blocks[0].commands.len(), 2);
    assert_eq!(blocks[0].commands[0].line, 5);
    assert_eq!(blocks[1].expect, Expect::Failure);
    let words = shell_words(&blocks[0].commands[1].text).expect("words");
    assert_eq!(
        words,
        [
            "lifeboat",
            "schedule",
            "set",
            "$TARGET",
            "--cron",
            "30 2 * * *"
        ]
    );
    let vars = vec![("TARGET", "test/orders".to_owned())];
    assert_eq!(substitute("$TARGET", &vars).as_deref(), Ok("test/orders"));
    assert!(substitute("$NOPE", &vars).is_err());
    // A quoted placeholder is one word, substituted like a bare one.
    let words = shell_words("lifeboat restore --to-time \"$PITR_TIME\" --data-dir $DATA_DIR")
        .expect("words");
    assert_eq!(words[3], "$PITR_TIME");
    let vars = vec![
        ("PITR_TIME", "2026-12-03T13:03:27Z".to_owned()),
        ("DATA_DIR", "/srv/pg/recovered".to_owned()),
    ];
    assert_eq!(
        substitute(&words[3], &vars).as_deref(),
        Ok("2026-12-03T13:03:27Z")
    );
    assert_eq!(
        flag_value(&words, "--data-dir"),
        Some("$DATA_DIR"),
        "the restores into $DATA_DIR are found by their flag"
    );
    assert!(shell_words("lifeboat backup list | head").is_err());
    assert!(extract("doc.md", "<!-- runnable -->\ntext\n").is_err());
}
