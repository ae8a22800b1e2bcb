//! The redb key store: keys, users and a schema version.
//!
//! Tables:
//!
//! | table   | key            | value                                  |
//! |---------|----------------|----------------------------------------|
//! | `meta`  | `"schema"`     | schema version (`u64`)                 |
//! | `keys`  | key id (`str`) | versioned record ([`KeyRecord`])       |
//! | `users` | user id        | `1` when blocked (absent = active)     |
//!
//! Every write is its own transaction committed with redb's default
//! `Durability::Immediate`: when a method returns `Ok`, the change survives
//! a `kill -9` or a power cut. redb takes a file lock, so a second process
//! (a second `keygate serve`, say) gets a clear "already open" error instead
//! of a corrupted file. The store is only read in full once, at start-up;
//! the request path reads the in-memory [`super::Snapshot`] instead.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::record::DecodeError;
use super::{KeyId, KeyRecord, UserId};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const USERS: TableDefinition<&str, u8> = TableDefinition::new("users");

/// The schema this build reads and writes.
const SCHEMA_VERSION: u64 = 1;

/// A store failure. Messages name the file, never a key's secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder for the store could not be created.
    #[error("cannot create the store folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the file.
    #[error("store {} is already open in another process (is another keygate running?)", path.display())]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be opened or created.
    #[error("cannot open store {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// Written by a different schema version.
    #[error("store {} has schema version {found}, this keygate reads version {SCHEMA_VERSION}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A record did not decode.
    #[error("store record for key {id} is unreadable: {source}")]
    Corrupt {
        /// The key id of the record.
        id: String,
        /// Why.
        source: DecodeError,
    },
    /// Any other redb failure.
    #[error("store error: {0}")]
    Redb(#[from] redb::Error),
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(#[from] postcard::Error),
}

impl StoreError {
    fn redb(err: impl Into<redb::Error>) -> Self {
        StoreError::Redb(err.into())
    }
}

/// Everything the store holds, as read at start-up.
#[derive(Debug, Default)]
pub struct Contents {
    /// All keys.
    pub keys: Vec<KeyRecord>,
    /// Users currently blocked.
    pub blocked: Vec<UserId>,
}

/// An open redb key store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens the store at `path`, creating it (and its folder) if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_owned(),
            },
            source => StoreError::Open {
                path: path.to_owned(),
                source,
            },
        })?;
        let store = Store { db };
        store.init_schema(path)?;
        Ok(store)
    }

    /// Stamps a new file with the schema version, or checks an old one's.
    fn init_schema(&self, path: &Path) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::redb)?;
        {
            let mut meta = txn.open_table(META).map_err(StoreError::redb)?;
            let found = meta
                .get("schema")
                .map_err(StoreError::redb)?
                .map(|v| v.value());
            match found {
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found,
                    })
                }
                None => {
                    meta.insert("schema", SCHEMA_VERSION)
                        .map_err(StoreError::redb)?;
                }
            }
            // Create the other tables so that readers never meet a missing one.
            txn.open_table(KEYS).map_err(StoreError::redb)?;
            txn.open_table(USERS).map_err(StoreError::redb)?;
        }
        txn.commit().map_err(StoreError::redb)?;
        Ok(())
    }

    /// Reads every key and blocked user.
    pub fn load(&self) -> Result<Contents, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let keys_table = txn.open_table(KEYS).map_err(StoreError::redb)?;
        let mut contents = Contents::default();
        for entry in keys_table.iter().map_err(StoreError::redb)? {
            let (id, value) = entry.map_err(StoreError::redb)?;
            let id_text = id.value();
            let id = KeyId::parse(id_text).ok_or_else(|| StoreError::Corrupt {
                id: id_text.escape_default().to_string(),
                source: DecodeError::Invalid("key id"),
            })?;
            let record =
                KeyRecord::decode(id, value.value()).map_err(|source| StoreError::Corrupt {
                    id: id.to_string(),
                    source,
                })?;
            contents.keys.push(record);
        }
        let users = txn.open_table(USERS).map_err(StoreError::redb)?;
        for entry in users.iter().map_err(StoreError::redb)? {
            let (user, blocked) = entry.map_err(StoreError::redb)?;
            if blocked.value() == 1 {
                let user = UserId::parse(user.value()).map_err(|_| StoreError::Corrupt {
                    id: user.value().escape_default().to_string(),
                    source: DecodeError::Invalid("user id in users table"),
                })?;
                contents.blocked.push(user);
            }
        }
        Ok(contents)
    }

    /// Durably inserts a new key record.
    pub fn insert_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let bytes = record.encode()?;
        let txn = self.db.begin_write().map_err(StoreError::redb)?;
        {
            let mut keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
            keys.insert(record.id.as_str(), bytes.as_slice())
                .map_err(StoreError::redb)?;
        }
        txn.commit().map_err(StoreError::redb)
    }

    /// Durably removes a key; `false` if there was none.
    pub fn remove_key(&self, id: KeyId) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::redb)?;
        let existed = {
            let mut keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
            let removed = keys.remove(id.as_str()).map_err(StoreError::redb)?;
            removed.is_some()
        };
        txn.commit().map_err(StoreError::redb)?;
        Ok(existed)
    }

    /// Durably records whether a user is blocked.
    pub fn set_blocked(&self, user: &UserId, blocked: bool) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::redb)?;
        {
            let mut users = txn.open_table(USERS).map_err(StoreError::redb)?;
            if blocked {
                users.insert(user.as_str(), 1u8).map_err(StoreError::redb)?;
            } else {
                users.remove(user.as_str()).map_err(StoreError::redb)?;
            }
        }
        txn.commit().map_err(StoreError::redb)
    }
}
