//! A backup of a Supabase-shaped PostgreSQL database (Supabase's own `auth`, `storage` and
//! `graphql` schemas, an extension installed in one of them, beside the application's `public`
//! tables) restored into a plain PostgreSQL target: Supabase's schemas and the extension are
//! left out, owners and privileges are not restored, and the user data comes back equal. With
//! `--include-provider-schemas` they come along.

use lifeboat_e2e::pg::Pg;
use lifeboat_e2e::sandbox::find_str;
use lifeboat_e2e::{Sandbox, SandboxTarget};

const SUPABASE_SHAPED: &str = r#"
CREATE SCHEMA auth;
CREATE SCHEMA storage;
CREATE SCHEMA extensions;
CREATE SCHEMA graphql;
CREATE EXTENSION pgcrypto WITH SCHEMA graphql;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text UNIQUE, created_at timestamptz DEFAULT now());
CREATE TABLE auth.sessions (id bigserial PRIMARY KEY, user_id uuid REFERENCES auth.users (id));
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE storage.objects (id bigserial PRIMARY KEY, bucket_id text REFERENCES storage.buckets (id),
  name text, owner uuid REFERENCES auth.users (id), metadata jsonb);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT NULL::uuid $$;
INSERT INTO auth.users (id, email) VALUES
  ('00000000-0000-0000-0000-000000000001', 'a@example.com'),
  ('00000000-0000-0000-0000-000000000002', 'b@example.com');
INSERT INTO auth.sessions (user_id) VALUES ('00000000-0000-0000-0000-000000000001');
INSERT INTO storage.buckets VALUES ('avatars', 'avatars');
INSERT INTO storage.objects (bucket_id, name, owner, metadata)
  VALUES ('avatars', 'a.png', '00000000-0000-0000-0000-000000000001', '{"size": 3}');

CREATE TABLE public.profiles (id bigserial PRIMARY KEY, user_id uuid, handle text UNIQUE NOT NULL,
  bio text, avatar bytea);
CREATE TABLE public.posts (id bigserial PRIMARY KEY, profile_id bigint REFERENCES public.profiles (id),
  body text, tags text[], created_at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00');
CREATE VIEW public.post_counts AS
  SELECT p.handle, count(x.id) AS n FROM public.profiles p LEFT JOIN public.posts x ON x.profile_id = p.id GROUP BY p.handle;
INSERT INTO public.profiles (user_id, handle, bio, avatar) VALUES
  ('00000000-0000-0000-0000-000000000001', 'alice', 'emoji 😀 and ''quotes''', '\x00ff'),
  ('00000000-0000-0000-0000-000000000002', 'bob', NULL, NULL);
INSERT INTO public.posts (profile_id, body, tags)
  SELECT 1 + g % 2, 'post ' || g, ARRAY['t' || (g % 7)] FROM generate_series(1, 3000) g;
GRANT SELECT ON public.profiles TO PUBLIC;
"#;

/// The `public` schema's definitions and data, without owners and privileges.
fn public_dump(pg: &Pg, db: &str) -> String {
    lifeboat_e2e::compare::dump_sql_with(
        pg,
        db,
        &["--schema=public", "--no-owner", "--no-privileges"],
    )
}

#[test]
fn supabase_backup_restores_into_plain_postgres_without_supabase_schemas() {
    let s = Sandbox::builder("provider_restore")
        .target(SandboxTarget::new("supa").provider("supabase"))
        .target(SandboxTarget::new("plain"))
        .build();
    s.pg.psql("supa", SUPABASE_SHAPED);

    let rec = s.backup_ok("supa");
    let id = find_str(&rec, "backup_id").expect("backup_id");
    assert_eq!(
        find_str(&rec, "provider").as_deref(),
        Some("supabase"),
        "{rec}"
    );

    let r = s.restore(&id, "supa_copy", &["--to", &s.target("plain")]);
    r.assert_ok();
    assert_eq!(
        find_str(&r.json(), "state").as_deref(),
        Some("succeeded"),
        "{r}"
    );

    let skipped = s.pg.query_one(
        "supa_copy",
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('auth', 'storage');",
    );
    assert_eq!(skipped.trim(), "0", "objects of auth/storage were restored");
    let schemas = s.pg.psql(
        "supa_copy",
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace \
         WHERE nspname IN ('auth', 'storage', 'extensions', 'public');",
    );
    assert_eq!(
        schemas.trim(),
        "extensions,public",
        "schemas restored: {schemas}"
    );

    let (a, b) = (public_dump(&s.pg, "supa"), public_dump(&s.pg, "supa_copy"));
    assert!(a.contains("alice") && a.len() > 2000, "source dump: {a}");
    lifeboat_e2e::compare::assert_same_dump(&a, &b, "public schema", s.dir.path());
    let ext = |db: &str| {
        s.pg.query_one(
            db,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto';",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(ext("supa"), "1");
    assert_eq!(
        ext("supa_copy"),
        "0",
        "the extension in graphql was restored"
    );
    // Privileges from the source are not restored.
    let acl = s.pg.query_one(
        "supa_copy",
        "SELECT coalesce(relacl::text, '') FROM pg_class WHERE oid = 'public.profiles'::regclass;",
    );
    assert!(!acl.contains("=r/"), "privileges were restored: {acl}");

    // Asked for, Supabase's schemas and their extension come along, with their rows.
    let r = s.restore(
        &id,
        "supa_all",
        &["--to", &s.target("plain"), "--include-provider-schemas"],
    );
    r.assert_ok();
    assert_eq!(
        s.pg.query_one("supa_all", "SELECT count(*) FROM auth.users;")
            .trim(),
        "2"
    );
    assert_eq!(
        s.pg.query_one("supa_all", "SELECT count(*) FROM storage.objects;")
            .trim(),
        "1"
    );
    assert_eq!(ext("supa_all"), "1");
    let (a, b) = (public_dump(&s.pg, "supa"), public_dump(&s.pg, "supa_all"));
    lifeboat_e2e::compare::assert_same_dump(&a, &b, "public schema, all schemas", s.dir.path());

    s.shutdown();
}
