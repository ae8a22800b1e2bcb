//! A stand-in for a Haplo application's database: the schema `a<ID>` with
//! Haplo's `users` and `api_keys` tables as `db/app.sql` creates them
//! (reserved users 0-127 included), `public.applications`, and helpers
//! that change them the way Haplo does.
//!
//! Keys are made exactly as Haplo makes them (33 random bytes, its base64
//! variant, `a` in plain text, `b` bcrypt cost 5 with the `$2a$` prefix),
//! so whatever reads them reads what a real Haplo wrote. Every user row
//! has a `password`, `recovery_token` and `otp_identifier` starting with
//! [`SECRET_MARK`]: a test can show that none of them ever surfaces.
//!
//! One database per test: creating the tables is not safe to race.

use base64::Engine as _;
use tokio_postgres::{Client, NoTls};

/// Haplo's user kinds (`app/models/user.rb`).
pub mod kind {
    /// An ordinary user.
    pub const USER: i32 = 0;
    /// A group.
    pub const GROUP: i32 = 1;
    /// SYSTEM and SUPPORT.
    pub const SUPER_USER: i32 = 3;
    /// A service user (keys, no login).
    pub const SERVICE_USER: i32 = 6;
    /// A blocked user: their keys stay, and answer UNAUTHORISED.
    pub const BLOCKED: i32 = 8;
    /// A deleted user: likewise.
    pub const DELETED: i32 = 16;
    /// A disabled group.
    pub const DISABLED_GROUP: i32 = 17;
    /// Every kind, for tests that cover them all.
    pub const ALL: [i32; 7] = [
        USER,
        GROUP,
        SUPER_USER,
        SERVICE_USER,
        BLOCKED,
        DELETED,
        DISABLED_GROUP,
    ];
}

/// Every secret column of `users` starts with this.
pub const SECRET_MARK: &str = "never-read-";

/// One Haplo application's tables in a test database.
#[derive(Debug)]
pub struct HaploApp {
    client: Client,
    /// The application id: the schema is `a<app_id>`.
    pub app_id: u32,
    schema: String,
}

impl HaploApp {
    /// Creates application `app_id` in the database at `url` (its owner's
    /// URL), reachable as `hostname` in `public.applications`.
    pub async fn create(url: &str, app_id: u32, hostname: &str) -> HaploApp {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("fixture: connect to the test database");
        tokio::spawn(connection);
        let schema = format!("a{app_id}");
        // Haplo's db/app.sql (users, api_keys) and db/global.sql
        // (applications), trimmed to the tables keygate reads.
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS public.applications (
                     hostname TEXT NOT NULL,
                     application_id INT NOT NULL
                 );
                 CREATE UNIQUE INDEX IF NOT EXISTS idx_applications ON public.applications(hostname);
                 CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.users (
                     id SERIAL PRIMARY KEY,
                     kind SMALLINT NOT NULL DEFAULT(0),
                     obj_id INT,
                     code TEXT,
                     name TEXT NOT NULL,
                     name_first TEXT,
                     name_last TEXT,
                     email TEXT,
                     password TEXT,
                     recovery_token TEXT,
                     otp_identifier TEXT
                 );
                 INSERT INTO {schema}.users (id,kind,name,name_first,name_last) VALUES (0,3,'SYSTEM','SYSTEM','');
                 INSERT INTO {schema}.users (id,kind,name) VALUES (2,0,'ANONYMOUS');
                 INSERT INTO {schema}.users (id,kind,name,name_first,name_last) VALUES (3,3,'SUPPORT','SUPPORT','');
                 INSERT INTO {schema}.users (id,kind,name,code) VALUES (4,1,'Everyone','std:group:everyone');
                 INSERT INTO {schema}.users (id,kind,name,code) VALUES (16,1,'Administrators','std:group:administrators');
                 SELECT setval('{schema}.users_id_seq', 128);
                 CREATE TABLE {schema}.api_keys (
                     id SERIAL PRIMARY KEY,
                     user_id INT NOT NULL REFERENCES {schema}.users(id),
                     a TEXT NOT NULL,
                     b TEXT NOT NULL,
                     path TEXT NOT NULL,
                     name TEXT NOT NULL
                 );
                 CREATE UNIQUE INDEX idx_api_keys_key ON {schema}.api_keys(a);"
            ))
            .await
            .expect("fixture: create Haplo's tables");
        client
            .execute(
                "INSERT INTO public.applications (hostname, application_id) VALUES ($1, $2::int4)",
                &[&hostname, &i32::try_from(app_id).expect("app id fits INT")],
            )
            .await
            .expect("fixture: register the hostname");
        HaploApp {
            client,
            app_id,
            schema,
        }
    }

    /// Reconnects to application `app_id`, already created in the database
    /// at `url` (after the server restarted, say).
    pub async fn connect(url: &str, app_id: u32) -> HaploApp {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("fixture: reconnect to the test database");
        tokio::spawn(connection);
        HaploApp {
            client,
            app_id,
            schema: format!("a{app_id}"),
        }
    }

    /// Adds a user of `kind` (see [`kind`]) with a name, a password and
    /// the other secret columns filled, and returns its id (above 128).
    pub async fn add_user(&self, kind: i32, email: Option<&str>) -> i32 {
        let row = self
            .client
            .query_one(
                &format!(
                    "INSERT INTO {s}.users (kind, name, name_first, name_last, email, password, recovery_token, otp_identifier)
                     VALUES ($1::int4, '', 'Test', 'User', $2, $3 || 'password', $3 || 'recovery', $3 || 'otp')
                     RETURNING id",
                    s = self.schema
                ),
                &[&kind, &email, &SECRET_MARK],
            )
            .await
            .expect("fixture: add a user");
        row.get(0)
    }

    /// Makes a key for `user_id` the way Haplo does, stores it, and
    /// returns the whole 44-character key.
    pub async fn add_key(&self, user_id: i32, path: &str, name: &str) -> String {
        let key = haplo_key();
        let (a, secret) = key.split_at(16);
        let b = bcrypt::hash_with_result(secret, 5)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoA);
        self.insert_key_row(user_id, a, &b, path, name).await;
        key
    }

    /// Stores an `api_keys` row as given, for rows Haplo would never make
    /// (a short `a`, a `b` that is not a bcrypt hash).
    pub async fn insert_key_row(&self, user_id: i32, a: &str, b: &str, path: &str, name: &str) {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {}.api_keys (user_id, a, b, path, name) VALUES ($1, $2, $3, $4, $5)",
                    self.schema
                ),
                &[&user_id, &a, &b, &path, &name],
            )
            .await
            .expect("fixture: insert a key row");
    }

    /// Inserts `count` keys for `user_id` in one statement: ids
    /// `bulk000000000001`... and all with one precomputed hash (bcrypt of
    /// 100,000 secrets would take minutes). Returns the shared 28-character
    /// secret, so `format!("bulk{n:012}{secret}")` is a working key.
    pub async fn bulk_keys(&self, user_id: i32, count: i32) -> String {
        let secret = "bulkSecretbulkSecretbulkSecr";
        let hash = bcrypt::hash_with_result(secret, 5)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoA);
        self.client
            .execute(
                &format!(
                    "INSERT INTO {}.api_keys (user_id, a, b, path, name)
                     SELECT $1, 'bulk' || lpad(i::text, 12, '0'), $2, '/api/', 'bulk key ' || i
                     FROM generate_series(1, $3::int4) AS i",
                    self.schema
                ),
                &[&user_id, &hash, &count],
            )
            .await
            .expect("fixture: bulk insert keys");
        secret.to_owned()
    }

    /// Deletes the key whose id is `a`, as Haplo does (the row goes).
    pub async fn delete_key(&self, a: &str) {
        let n = self
            .client
            .execute(
                &format!("DELETE FROM {}.api_keys WHERE a = $1", self.schema),
                &[&a],
            )
            .await
            .expect("fixture: delete a key");
        assert_eq!(n, 1, "fixture: no key {a} to delete");
    }

    /// Changes a user's kind (block: 8, delete: 16, re-activate: 0).
    pub async fn set_kind(&self, user_id: i32, kind: i32) {
        let n = self
            .client
            .execute(
                &format!(
                    "UPDATE {}.users SET kind = $2::int4 WHERE id = $1",
                    self.schema
                ),
                &[&user_id, &kind],
            )
            .await
            .expect("fixture: set a user's kind");
        assert_eq!(n, 1, "fixture: no user {user_id}");
    }

    /// Changes a user's email.
    pub async fn set_email(&self, user_id: i32, email: Option<&str>) {
        let n = self
            .client
            .execute(
                &format!("UPDATE {}.users SET email = $2 WHERE id = $1", self.schema),
                &[&user_id, &email],
            )
            .await
            .expect("fixture: set a user's email");
        assert_eq!(n, 1, "fixture: no user {user_id}");
    }

    /// Grants `role` exactly what keygate reads: the eight columns, and
    /// `public.applications`. Not `password` nor any other column.
    pub async fn grant_reader(&self, role: &str) {
        let s = &self.schema;
        self.client
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA {s} TO {role};
                 GRANT SELECT (a, b, path, name, user_id) ON {s}.api_keys TO {role};
                 GRANT SELECT (id, kind, email) ON {s}.users TO {role};
                 GRANT SELECT ON public.applications TO {role};"
            ))
            .await
            .expect("fixture: grant the reader role");
    }

    /// Runs any SQL as the owner (to change something no helper covers).
    pub async fn execute(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .expect("fixture: run SQL");
    }
}

/// A new key in Haplo's format (`lib/common/krandom.rb`): 33 random bytes,
/// base64 with `+`->`_` and `/`->`-` and no `=`, and a first or last
/// character that is not alphanumeric replaced by `0`. 44 characters.
pub fn haplo_key() -> String {
    let mut raw = [0u8; 33];
    getrandom::fill(&mut raw).expect("random bytes");
    let mut key: Vec<u8> = base64::engine::general_purpose::STANDARD
        .encode(raw)
        .bytes()
        .filter(|b| *b != b'=')
        .map(|b| match b {
            b'+' => b'_',
            b'/' => b'-',
            other => other,
        })
        .collect();
    for at in [0, key.len() - 1] {
        if !key[at].is_ascii_alphanumeric() {
            key[at] = b'0';
        }
    }
    String::from_utf8(key).expect("base64 is ASCII")
}
