//! Ordered migrations on both backends, for the control and the company
//! databases: a new database and one made by the schema-at-open code (kept
//! here as fixtures, `fixtures/legacy/*.sql`, exactly as that code ran them)
//! reach the same schema; the next migration applies to a database at the
//! previous version and keeps its data; opening again changes nothing; a
//! database newer than this build is refused.

use std::path::Path;

use rusqlite::Connection;
use tokio_postgres::Client;
use wb_crypto::DataKey;
use wb_store::migrations::{self, Database, Migration};
use wb_store::postgres::PgControl;
use wb_store::sqlite::{open_encrypted, OpenMode, SqliteControl, SqliteTenants};
use wb_store::{StoreError, TenantDirectory};

use crate::pg_backend;

const LEGACY_SQLITE_CONTROL: &str = include_str!("../fixtures/legacy/sqlite_control.sql");
const LEGACY_SQLITE_TENANT: &str = include_str!("../fixtures/legacy/sqlite_tenant.sql");
const LEGACY_PG_CONTROL: &str = include_str!("../fixtures/legacy/postgres_control.sql");
const LEGACY_PG_TENANT: &str = include_str!("../fixtures/legacy/postgres_tenant.sql");

/// The `nodes` table of control databases made before node certificates.
const NODES_WITH_CERTIFICATE: &str = "CREATE TABLE IF NOT EXISTS nodes (
    id          TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    -- The master key's certification of (id, public_key); added by
    -- `add_node_certificates` to databases made before it existed.
    certificate BLOB
) STRICT;";
const NODES_BEFORE_CERTIFICATE: &str = "CREATE TABLE IF NOT EXISTS nodes (
    id          TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;";

/// A company database of schema version 1: no attachments, and (before the
/// index was dropped) an index on `day_balances(day)`.
fn sqlite_tenant_version_1() -> String {
    let files = LEGACY_SQLITE_TENANT
        .find("-- Attachments:")
        .expect("the fixture has the files table");
    let posted = LEGACY_SQLITE_TENANT
        .find("-- Posted entries are immutable")
        .expect("the fixture has the entry triggers");
    format!(
        "{}{}CREATE INDEX day_balances_by_day ON day_balances(day);",
        &LEGACY_SQLITE_TENANT[..files],
        &LEGACY_SQLITE_TENANT[posted..],
    )
    .replace("('schema_version', '2')", "('schema_version', '1')")
}

/// A migration this build does not have: what the next real one looks like.
fn next(list: &[Migration], sql: &'static str) -> Vec<Migration> {
    let mut list = list.to_vec();
    let version = migrations::latest(&list) + 1;
    list.push(Migration {
        version,
        name: "test_next",
        sql,
    });
    list
}

// ---- SQLCipher ----

fn sqlite_file(dir: &Path, name: &str, key: &DataKey) -> Connection {
    open_encrypted(&dir.join(name), key, OpenMode::Create).expect("create a database")
}

fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The schema as SQLite sees it: tables by their columns (an `ALTER TABLE`
/// rewrites the stored text), indexes and triggers by their text.
fn sqlite_schema(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables = conn
        .prepare(
            "SELECT name, strict, wr FROM pragma_table_list
             WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap();
    let tables: Vec<(String, i64, i64)> = tables
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (table, strict, without_rowid) in tables {
        out.push(format!(
            "table {table} strict={strict} without_rowid={without_rowid}"
        ));
        let mut columns = conn
            .prepare(
                "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden
                 FROM pragma_table_xinfo(?1) ORDER BY cid",
            )
            .unwrap();
        for column in columns
            .query_map([&table], |r| {
                Ok(format!(
                    "  column {} {} {} notnull={} default={:?} pk={} hidden={}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .unwrap()
        {
            out.push(column.unwrap());
        }
        let mut keys = conn
            .prepare(
                "SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
            )
            .unwrap();
        for key in keys
            .query_map([&table], |r| {
                Ok(format!(
                    "  references {}.{:?} from {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(1)?
                ))
            })
            .unwrap()
        {
            out.push(key.unwrap());
        }
    }
    let mut others = conn
        .prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_master
             WHERE type IN ('index', 'trigger', 'view') ORDER BY type, name",
        )
        .unwrap();
    for other in others
        .query_map([], |r| {
            Ok(format!(
                "{} {} on {}: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                squash(&r.get::<_, Option<String>>(3)?.unwrap_or_default())
            ))
        })
        .unwrap()
    {
        out.push(other.unwrap());
    }
    out
}

fn sqlite_version(conn: &Connection, db: Database) -> i64 {
    migrations::sqlite::version(conn, db).unwrap()
}

#[test]
fn sqlite_control_new_and_existing_reach_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    drop(sqlite_file(dir.path(), "new.db", &key));
    let today = sqlite_file(dir.path(), "today.db", &key);
    today.execute_batch(LEGACY_SQLITE_CONTROL).unwrap();
    let older = sqlite_file(dir.path(), "older.db", &key);
    let before_certificates =
        LEGACY_SQLITE_CONTROL.replace(NODES_WITH_CERTIFICATE, NODES_BEFORE_CERTIFICATE);
    assert_ne!(before_certificates, LEGACY_SQLITE_CONTROL);
    older.execute_batch(&before_certificates).unwrap();
    for conn in [&today, &older] {
        conn.execute_batch(
            "INSERT INTO companies VALUES ('c1', 'Acme', 'active', x'00', '2026-01-01T00:00:00Z');
             INSERT INTO nodes (id, public_key, created_at) VALUES ('n1', 'ab', '2026-01-01T00:00:00Z');",
        )
        .unwrap();
        assert_eq!(sqlite_version(conn, Database::Control), 0);
    }
    drop((today, older));
    // Through the door a server uses.
    for name in ["new.db", "today.db", "older.db"] {
        drop(SqliteControl::open(&dir.path().join(name), &key).unwrap());
    }
    let open =
        |name: &str| open_encrypted(&dir.path().join(name), &key, OpenMode::Existing).unwrap();
    let new = sqlite_schema(&open("new.db"));
    assert!(
        new.iter().any(|l| l.contains("certificate BLOB")),
        "{new:#?}"
    );
    for name in ["today.db", "older.db"] {
        let conn = open(name);
        assert_eq!(sqlite_schema(&conn), new, "{name}");
        assert_eq!(
            sqlite_version(&conn, Database::Control),
            migrations::latest(migrations::SQLITE_CONTROL)
        );
        let kept: (String, String) = conn
            .query_row(
                "SELECT c.name, n.public_key FROM companies c, nodes n",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, ("Acme".into(), "ab".into()), "{name}");
    }
}

#[test]
fn sqlite_tenant_new_and_existing_reach_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let mut new = sqlite_file(dir.path(), "new.db", &key);
    let mut today = sqlite_file(dir.path(), "today.db", &key);
    today.execute_batch(LEGACY_SQLITE_TENANT).unwrap();
    let mut v1 = sqlite_file(dir.path(), "v1.db", &key);
    v1.execute_batch(&sqlite_tenant_version_1()).unwrap();
    assert!(sqlite_schema(&v1)
        .iter()
        .any(|l| l.contains("day_balances_by_day")));
    v1.execute_batch(
        "INSERT INTO accounts (code, name, type, created_at) VALUES ('1000', 'Cash', 'asset', 't');",
    )
    .unwrap();
    assert_eq!(sqlite_version(&new, Database::Tenant), 0);
    assert_eq!(sqlite_version(&today, Database::Tenant), 2);
    assert_eq!(sqlite_version(&v1, Database::Tenant), 1);
    for conn in [&mut new, &mut today, &mut v1] {
        let reached =
            migrations::sqlite::migrate(conn, Database::Tenant, migrations::SQLITE_TENANT).unwrap();
        assert_eq!(reached, migrations::latest(migrations::SQLITE_TENANT));
    }
    let schema = sqlite_schema(&new);
    assert!(
        schema.iter().any(|l| l.starts_with("table files")),
        "{schema:#?}"
    );
    assert_eq!(sqlite_schema(&today), schema);
    // Version 1 gained attachments, lost the unused index, kept its rows.
    assert_eq!(sqlite_schema(&v1), schema);
    let name: String = v1
        .query_row("SELECT name FROM accounts WHERE code = '1000'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "Cash");
    assert_eq!(
        sqlite_version(&v1, Database::Tenant),
        migrations::latest(migrations::SQLITE_TENANT)
    );
}

#[test]
fn sqlite_next_migration_applies_to_a_database_at_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    for db in [Database::Control, Database::Tenant] {
        let (list, table, row) = match db {
            Database::Control => (
                migrations::SQLITE_CONTROL,
                "cursors",
                "INSERT INTO cursors (name, seq) VALUES ('kept', 7)",
            ),
            Database::Tenant => (
                migrations::SQLITE_TENANT,
                "meta",
                "INSERT INTO meta (key, value) VALUES ('kept', '7')",
            ),
        };
        let list = next(
            list,
            match db {
                Database::Control => {
                    "ALTER TABLE cursors ADD COLUMN note TEXT NOT NULL DEFAULT 'none';"
                }
                Database::Tenant => {
                    "ALTER TABLE meta ADD COLUMN note TEXT NOT NULL DEFAULT 'none';"
                }
            },
        );
        let n = migrations::latest(&list) - 1;
        let mut conn = sqlite_file(dir.path(), &format!("{db:?}.db"), &key);
        assert_eq!(
            migrations::sqlite::migrate_to(&mut conn, db, &list, n).unwrap(),
            n
        );
        conn.execute_batch(row).unwrap();
        let reached = migrations::sqlite::migrate(&mut conn, db, &list).unwrap();
        assert_eq!(reached, n + 1);
        assert_eq!(sqlite_version(&conn, db), n + 1);
        let note: String = conn
            .query_row(
                &format!(
                    "SELECT note FROM {table} WHERE {} = 'kept'",
                    if db == Database::Control {
                        "name"
                    } else {
                        "key"
                    }
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(note, "none");
        // This build's code, which knows only version n, refuses it now.
        let err = migrations::sqlite::migrate(&mut conn, db, &list[..list.len() - 1]).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == n + 1 && supported == n)
        );
    }
}

#[test]
fn sqlite_failed_migration_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let mut conn = sqlite_file(dir.path(), "t.db", &key);
    let list = next(
        migrations::SQLITE_TENANT,
        "CREATE TABLE half_done (id INTEGER PRIMARY KEY); SELECT no_such_function();",
    );
    migrations::sqlite::migrate(&mut conn, Database::Tenant, migrations::SQLITE_TENANT).unwrap();
    assert!(migrations::sqlite::migrate(&mut conn, Database::Tenant, &list).is_err());
    assert_eq!(
        sqlite_version(&conn, Database::Tenant),
        migrations::latest(migrations::SQLITE_TENANT)
    );
    assert!(!sqlite_schema(&conn).iter().any(|l| l.contains("half_done")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopening_is_a_no_op_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let path = dir.path().join("control.db");
    drop(SqliteControl::open(&path, &key).unwrap());
    let before = sqlite_schema(&open_encrypted(&path, &key, OpenMode::Existing).unwrap());
    drop(SqliteControl::open(&path, &key).unwrap());
    let conn = open_encrypted(&path, &key, OpenMode::Existing).unwrap();
    assert_eq!(sqlite_schema(&conn), before);
    assert_eq!(
        sqlite_version(&conn, Database::Control),
        migrations::latest(migrations::SQLITE_CONTROL)
    );
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteControl::open(&path, &key).unwrap_err();
    assert!(matches!(
        err,
        StoreError::SchemaTooNew {
            found: 99,
            supported: 10,
            ..
        }
    ));
    assert!(err.to_string().contains("newer than this build"), "{err}");

    let tenants = SqliteTenants::new(dir.path().join("companies")).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    drop(tenants.create(&id, &key).await.unwrap());
    drop(tenants);
    let path = dir.path().join("companies").join(format!("{id}.db"));
    let before = sqlite_schema(&open_encrypted(&path, &key, OpenMode::Existing).unwrap());
    let tenants = SqliteTenants::new(dir.path().join("companies")).unwrap();
    drop(tenants.open(&id, &key).await.unwrap());
    drop(tenants);
    let conn = open_encrypted(&path, &key, OpenMode::Existing).unwrap();
    assert_eq!(sqlite_schema(&conn), before);
    let latest = migrations::latest(migrations::SQLITE_TENANT);
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [(latest + 1).to_string()],
    )
    .unwrap();
    drop(conn);
    let tenants = SqliteTenants::new(dir.path().join("companies")).unwrap();
    let err = tenants.open(&id, &key).await.err().expect("refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew { found, supported, .. }
                if found == latest + 1 && supported == latest
        ),
        "{err}"
    );
}

// ---- PostgreSQL ----

async fn pg_database(prefix: &str) -> Client {
    let url = pg_backend::fresh_database_url(prefix).await;
    pg_backend::endpoint(&url).await.connect().await.unwrap()
}

async fn pg_lines(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| format!("{:?}", r.get::<_, Option<String>>(i)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The schema as the catalog sees it: columns, constraints, indexes,
/// triggers and functions of the public schema.
async fn pg_schema(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT table_name::text, ordinal_position::text, column_name::text, data_type::text,
                is_nullable::text, column_default::text, collation_name::text, is_identity::text
         FROM information_schema.columns WHERE table_schema = 'public'
         ORDER BY table_name, ordinal_position",
        "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
         WHERE schemaname = 'public' ORDER BY 1, 2",
        "SELECT tgrelid::regclass::text, tgname::text, pg_get_triggerdef(oid) FROM pg_trigger
         WHERE NOT tgisinternal ORDER BY 1, 2",
        "SELECT proname::text, pg_get_functiondef(oid) FROM pg_proc
         WHERE pronamespace = 'public'::regnamespace ORDER BY 1",
    ] {
        out.extend(pg_lines(client, sql).await);
    }
    out
}

async fn pg_version(client: &Client, db: Database) -> i64 {
    migrations::postgres::version(client, db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_control_new_and_existing_reach_the_same_schema() {
    let new_url = pg_backend::fresh_database_url("mig_ctl_new").await;
    let today_url = pg_backend::fresh_database_url("mig_ctl_today").await;
    let today = pg_backend::endpoint(&today_url)
        .await
        .connect()
        .await
        .unwrap();
    today.batch_execute(LEGACY_PG_CONTROL).await.unwrap();
    today
        .batch_execute(
            "INSERT INTO companies VALUES ('c1', 'Acme', 'active', '\\x00', '2026-01-01T00:00:00Z');
             INSERT INTO placements (company_id, server, database, role, placed_at)
             VALUES ('c1', 'main', 'wb_c1', 'wb_c1', '2026-01-01T00:00:00Z')",
        )
        .await
        .unwrap();
    assert_eq!(pg_version(&today, Database::Control).await, 0);
    // Through the door a server uses.
    for url in [&new_url, &today_url] {
        drop(pg_backend::pg_control_at(url, pg_backend::budget()).await);
    }
    let new = pg_backend::endpoint(&new_url)
        .await
        .connect()
        .await
        .unwrap();
    let schema = pg_schema(&new).await;
    assert!(
        schema.iter().any(|l| l.contains("schema_migrations")),
        "{schema:#?}"
    );
    assert_eq!(pg_schema(&today).await, schema);
    let latest = migrations::latest(migrations::POSTGRES_CONTROL);
    assert_eq!(pg_version(&today, Database::Control).await, latest);
    assert_eq!(pg_version(&new, Database::Control).await, latest);
    let kept: String = today
        .query_one(
            "SELECT c.name || '/' || p.database FROM companies c JOIN placements p ON p.company_id = c.id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, "Acme/wb_c1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tenant_new_and_existing_reach_the_same_schema() {
    let new = pg_database("mig_ten_new").await;
    let today = pg_database("mig_ten_today").await;
    today.batch_execute(LEGACY_PG_TENANT).await.unwrap();
    let v1 = pg_database("mig_ten_v1").await;
    v1.batch_execute(LEGACY_PG_TENANT).await.unwrap();
    v1.batch_execute(
        "DROP TABLE files; UPDATE meta SET value = '1' WHERE key = 'schema_version';
         INSERT INTO accounts VALUES (1, '1000', 'Cash', 'asset', NULL, NULL, 't');",
    )
    .await
    .unwrap();
    assert_eq!(pg_version(&new, Database::Tenant).await, 0);
    assert_eq!(pg_version(&today, Database::Tenant).await, 2);
    assert_eq!(pg_version(&v1, Database::Tenant).await, 1);
    for client in [&new, &today, &v1] {
        let reached =
            migrations::postgres::migrate(client, Database::Tenant, migrations::POSTGRES_TENANT)
                .await
                .unwrap();
        assert_eq!(reached, migrations::latest(migrations::POSTGRES_TENANT));
    }
    let schema = pg_schema(&new).await;
    assert!(
        schema.iter().any(|l| l.contains("files_immutable")),
        "{schema:#?}"
    );
    assert_eq!(pg_schema(&today).await, schema);
    assert_eq!(pg_schema(&v1).await, schema);
    let name: String = v1
        .query_one("SELECT name FROM accounts WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Cash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_next_migration_applies_to_a_database_at_the_previous_version() {
    for (db, list, row, read) in [
        (
            Database::Control,
            migrations::POSTGRES_CONTROL,
            "INSERT INTO cursors (name, seq) VALUES ('kept', 7)",
            "SELECT note FROM cursors WHERE name = 'kept'",
        ),
        (
            Database::Tenant,
            migrations::POSTGRES_TENANT,
            "INSERT INTO meta (key, value) VALUES ('kept', '7')",
            "SELECT note FROM meta WHERE key = 'kept'",
        ),
    ] {
        let sql = match db {
            Database::Control => "ALTER TABLE cursors ADD COLUMN note TEXT NOT NULL DEFAULT 'none'",
            Database::Tenant => "ALTER TABLE meta ADD COLUMN note TEXT NOT NULL DEFAULT 'none'",
        };
        let list = next(list, sql);
        let n = migrations::latest(&list) - 1;
        let client = pg_database("mig_next").await;
        let reached = migrations::postgres::migrate_to(&client, db, &list, n)
            .await
            .unwrap();
        assert_eq!(reached, n);
        client.batch_execute(row).await.unwrap();
        let reached = migrations::postgres::migrate(&client, db, &list)
            .await
            .unwrap();
        assert_eq!(reached, n + 1);
        assert_eq!(pg_version(&client, db).await, n + 1);
        let note: String = client.query_one(read, &[]).await.unwrap().get(0);
        assert_eq!(note, "none");
        let err = migrations::postgres::migrate(&client, db, &list[..list.len() - 1])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == n + 1 && supported == n)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failed_migration_leaves_the_previous_version() {
    let client = pg_database("mig_fail").await;
    let list = next(
        migrations::POSTGRES_TENANT,
        "CREATE TABLE half_done (id BIGINT PRIMARY KEY); SELECT no_such_function();",
    );
    migrations::postgres::migrate(&client, Database::Tenant, migrations::POSTGRES_TENANT)
        .await
        .unwrap();
    assert!(
        migrations::postgres::migrate(&client, Database::Tenant, &list)
            .await
            .is_err()
    );
    assert_eq!(
        pg_version(&client, Database::Tenant).await,
        migrations::latest(migrations::POSTGRES_TENANT)
    );
    assert!(!pg_schema(&client)
        .await
        .iter()
        .any(|l| l.contains("half_done")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reopening_is_a_no_op_and_newer_databases_are_refused() {
    let url = pg_backend::fresh_database_url("mig_again").await;
    // Two nodes starting at once migrate once.
    let budget = pg_backend::budget();
    let (a, b) = tokio::join!(
        PgControl::open(pg_backend::pool(&url, budget.clone()).await),
        PgControl::open(pg_backend::pool(&url, budget.clone()).await),
    );
    a.unwrap();
    b.unwrap();
    let client = pg_backend::endpoint(&url).await.connect().await.unwrap();
    let before = pg_schema(&client).await;
    let applied = pg_lines(
        &client,
        "SELECT version::text, name FROM schema_migrations ORDER BY schema_migrations.version",
    )
    .await;
    let expected: Vec<String> = migrations::POSTGRES_CONTROL
        .iter()
        .map(|m| format!("Some(\"{}\") Some(\"{}\")", m.version, m.name))
        .collect();
    assert_eq!(applied, expected);
    drop(pg_backend::pg_control_at(&url, budget.clone()).await);
    assert_eq!(pg_schema(&client).await, before);
    client
        .batch_execute("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future')")
        .await
        .unwrap();
    let err = PgControl::open(pg_backend::pool(&url, budget).await)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 10,
                ..
            }
        ),
        "{err}"
    );

    let tenant = pg_database("mig_again_t").await;
    migrations::postgres::migrate(&tenant, Database::Tenant, migrations::POSTGRES_TENANT)
        .await
        .unwrap();
    let before = pg_schema(&tenant).await;
    assert_eq!(
        migrations::postgres::migrate(&tenant, Database::Tenant, migrations::POSTGRES_TENANT)
            .await
            .unwrap(),
        migrations::latest(migrations::POSTGRES_TENANT)
    );
    assert_eq!(pg_schema(&tenant).await, before);
    let latest = migrations::latest(migrations::POSTGRES_TENANT);
    tenant
        .execute(
            "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
            &[&(latest + 1).to_string()],
        )
        .await
        .unwrap();
    let err = migrations::postgres::migrate(&tenant, Database::Tenant, migrations::POSTGRES_TENANT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew { found, supported, .. }
                if found == latest + 1 && supported == latest
        ),
        "{err}"
    );
}

// ---- Disaster recovery coverage ----

/// Every control table, and what disaster recovery (`wb-server/src/dr.rs`)
/// does with it. Its configuration backup lists the tables it copies by
/// hand, so a new control table would silently stay behind: adding one to
/// the migrations fails this test until it is placed here (and, when it
/// holds configuration, added to the backup).
const CONTROL_TABLES: &[(&str, &str)] = &[
    (
        "companies",
        "backed up (wrapped DEK apart, at keys/companies/{id}.dek)",
    ),
    ("users", "backed up"),
    ("memberships", "backed up"),
    ("api_keys", "backed up (hashes only)"),
    ("export_schedules", "backed up (credentials still sealed)"),
    ("cursors", "only ship:company:{id}, as shipped_seq"),
    ("sessions", "not backed up"),
    (
        "audit_events",
        "not backed up (company trails ship apart, backup/audit_trail.rs)",
    ),
    ("collected_sources", "not backed up"),
    ("collected_events", "not backed up"),
    ("audit_checkpoints", "not backed up"),
    ("nodes", "not backed up"),
    ("login_failures", "not backed up"),
    ("leases", "not backed up"),
    ("alerts", "not backed up"),
    (
        "invitations",
        "not backed up (short-lived: an inviter sends a lost one again)",
    ),
    (
        "outbox",
        "not backed up (messages in flight are lost with the node)",
    ),
    ("company_policies", "backed up (dr.rs security_policies)"),
    (
        "totp_factors",
        "backed up when confirmed (dr.rs factors; the secret stays sealed)",
    ),
    ("recovery_codes", "backed up (hashes, dr.rs factors)"),
    ("passkeys", "backed up (public credentials, dr.rs factors)"),
    ("mfa_challenges", "not backed up (five minutes long)"),
    ("webauthn_ceremonies", "not backed up (five minutes long)"),
    (
        "passphrase_resets",
        "not backed up (an hour long: a lost one is asked for again)",
    ),
    (
        "staff",
        "not backed up yet (a restored node's staff are created again with workbooks staff create, with new authenticators)",
    ),
    ("staff_sessions", "not backed up (eight hours long)"),
    (
        "access_grants",
        "backed up with approvals and endings (wb-app dr_grants.rs)",
    ),
    (
        "grant_notices",
        "not backed up (restored grants are marked told of their state)",
    ),
    (
        "company_lifecycle",
        "backed up as each company's state (dr.rs CompanyConfig: destroy_after, destroyed_at, the certificate)",
    ),
    (
        "company_key_versions",
        "backed up as each company's key_version and retired_keys (dr.rs CompanyConfig); each wrapping apart, at keys/companies/{id}.v{n}.dek",
    ),
    (
        "company_retention",
        "backed up as each company's retention (dr.rs CompanyConfig)",
    ),
    ("placements", "PostgreSQL only; not backed up"),
    (
        "schema_migrations",
        "PostgreSQL only; written by the migrations",
    ),
];

#[test]
fn sqlite_every_control_table_is_placed_for_disaster_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::generate();
    let mut conn = sqlite_file(dir.path(), "control.db", &key);
    migrations::sqlite::migrate(&mut conn, Database::Control, migrations::SQLITE_CONTROL).unwrap();
    let mut tables = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    for table in tables.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let table = table.unwrap();
        assert!(
            CONTROL_TABLES.iter().any(|(t, _)| *t == table),
            "control table {table} is new: decide what disaster recovery does with it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_control_table_is_placed_for_disaster_recovery() {
    let client = pg_database("mig_dr").await;
    migrations::postgres::migrate(&client, Database::Control, migrations::POSTGRES_CONTROL)
        .await
        .unwrap();
    for table in pg_lines(
        &client,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .await
    {
        assert!(
            CONTROL_TABLES
                .iter()
                .any(|(t, _)| format!("Some({t:?})") == table),
            "control table {table} is new: decide what disaster recovery does with it"
        );
    }
}
