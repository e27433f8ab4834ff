//! Copying a whole store into another, empty one: how an operator moves from SQLite to
//! PostgreSQL (`slipway store:copy`). Rows are copied as stored, sealed values included, so the
//! servers on the new store need the same master key.

use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Any, AssertSqlSafe, Column, Row, Transaction, ValueRef};

use crate::Store;
use crate::error::{Result, StoreError};

/// Every table of the schema, parents before children. `leases` is not copied: it belongs to
/// the servers running on a store, not to its data.
pub const TABLES: &[&str] = &[
    "users",
    "tokens",
    "apps",
    "config_vars",
    "releases",
    "builds",
    "formation",
    "audit_events",
    "addons",
    "addon_backups",
    "domains",
    "certificates",
    "acme_accounts",
    "collaborators",
    "token_addresses",
    "ssh_keys",
    "app_buildpacks",
    "pipelines",
    "pipeline_apps",
    "canary_policies",
    "canaries",
    "rate_limits",
    "metric_buckets",
    "drains",
    "webhooks",
    "alert_rules",
    "alerts_firing",
];

/// Tables of the schema that are not data: the migrations' ledger and the servers' leases.
const NOT_COPIED: &[&str] = &["_sqlx_migrations", "leases"];

/// One column's value as read, bound again as the same kind.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Store {
    /// The names of the store's tables, the migrations' ledger included, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let sql = match self.backend {
            crate::Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            crate::Backend::Postgres => {
                "SELECT CAST(tablename AS TEXT) FROM pg_tables \
                 WHERE schemaname = current_schema() ORDER BY tablename"
            }
        };
        Ok(sqlx::query_scalar(sql).fetch_all(&self.pool).await?)
    }

    /// Copies every row of this store into `target`, in one transaction on the target: all or
    /// nothing. Conflict when the target has users already (copy into a fresh database only)
    /// or when either store has a table this slipway does not know how to copy. Returns the
    /// number of rows copied per table.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<(&'static str, u64)>> {
        for store in [self, target] {
            let unknown: Vec<String> = store
                .table_names()
                .await?
                .into_iter()
                .filter(|t| !TABLES.contains(&t.as_str()) && !NOT_COPIED.contains(&t.as_str()))
                .collect();
            if !unknown.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "cannot copy table {}: this slipway does not know it (use the slipway that \
                     last migrated the store)",
                    unknown.join(", ")
                )));
            }
        }
        if target.user_count().await? > 0 {
            return Err(StoreError::Conflict(
                "the target store has data already: copy into a fresh, empty database".into(),
            ));
        }
        let mut tx = target.pool.begin().await?;
        let mut counts = Vec::with_capacity(TABLES.len());
        let mut current_releases = Vec::new();
        for &table in TABLES {
            let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {table}")))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                let mut columns = Vec::with_capacity(row.columns().len());
                for column in row.columns() {
                    let name = column.name();
                    let value = value(row, column.ordinal())?;
                    // An app points at its current release, which is copied after it.
                    if table == "apps" && name == "current_release_id" {
                        if let (Value::Text(release), Ok(id)) = (&value, row.try_get("id")) {
                            current_releases.push((id, release.clone()));
                        }
                        columns.push((name.to_owned(), Value::Null));
                    } else {
                        columns.push((name.to_owned(), value));
                    }
                }
                insert(&mut tx, table, columns).await?;
            }
            counts.push((table, u64::try_from(rows.len()).unwrap_or(u64::MAX)));
        }
        for (app, release) in current_releases {
            sqlx::query("UPDATE apps SET current_release_id = $1 WHERE id = $2")
                .bind(release)
                .bind::<String>(app)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }
}

fn value(row: &AnyRow, index: usize) -> Result<Value> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().kind();
    Ok(match kind {
        AnyTypeInfoKind::Null => Value::Null,
        AnyTypeInfoKind::Bool => Value::Int(i64::from(row.try_get::<bool, _>(index)?)),
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
            Value::Int(row.try_get(index)?)
        }
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => Value::Real(row.try_get(index)?),
        AnyTypeInfoKind::Text => Value::Text(row.try_get(index)?),
        AnyTypeInfoKind::Blob => Value::Bytes(row.try_get(index)?),
    })
}

/// Inserts one row. NULLs are written as literals, not bound: PostgreSQL needs a bound
/// parameter's type, and a NULL read back from SQLite has none.
async fn insert(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    columns: Vec<(String, Value)>,
) -> Result<()> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let mut placeholders = Vec::with_capacity(columns.len());
    let mut bound = 0;
    for (_, value) in &columns {
        if matches!(value, Value::Null) {
            placeholders.push("NULL".to_owned());
        } else {
            bound += 1;
            placeholders.push(format!("${bound}"));
        }
    }
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (_, value) in columns {
        query = match value {
            Value::Null => query,
            Value::Int(n) => query.bind(n),
            Value::Real(x) => query.bind(x),
            Value::Text(s) => query.bind(s),
            Value::Bytes(b) => query.bind(b),
        };
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
