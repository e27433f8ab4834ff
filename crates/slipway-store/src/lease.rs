//! Leases: several servers share one PostgreSQL store, and the work that must happen once
//! (rolling out releases, reconciling containers, add-on backups, certificate orders) is done
//! by the holder of the `leader` lease only. A lease is taken when free or expired and renewed
//! by its holder in one statement, so two servers never both get it. Expiry is judged by the
//! database's clock: servers' clocks may disagree, the database's is the one they share.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;

use crate::codec::{Cols, micros};
use crate::error::{Result, StoreError};
use crate::{Backend, Store};

/// The database's clock in microseconds since the Unix epoch.
macro_rules! now {
    (sqlite) => {
        "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    };
    (postgres) => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
    };
}

/// Takes the lease when it is free, expired or already ours; `$1` name, `$2` holder, `$3`
/// holder URL, `$4` TTL in microseconds. The term goes up when the holder changes, and
/// `renewed_at` goes up on every renewal even within one tick of SQLite's millisecond clock,
/// so it tells renewals apart (see `release_lease`).
macro_rules! acquire {
    ($db:ident) => {
        concat!(
            "INSERT INTO leases (name, holder, holder_url, term, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, $3, 1, ",
            now!($db),
            ", ",
            now!($db),
            ", ",
            now!($db),
            " + $4) \
             ON CONFLICT (name) DO UPDATE SET \
             term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END, \
             acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at \
             ELSE excluded.acquired_at END, \
             holder = excluded.holder, holder_url = excluded.holder_url, \
             renewed_at = CASE WHEN excluded.renewed_at > leases.renewed_at \
             THEN excluded.renewed_at ELSE leases.renewed_at + 1 END, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.renewed_at \
             RETURNING name, holder, holder_url, term, acquired_at, renewed_at, expires_at"
        )
    };
}

/// Whether `$2` holds the lease `$1` in term `$3`, unexpired.
macro_rules! holds {
    ($db:ident) => {
        concat!(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > ",
            now!($db)
        )
    };
}

/// Who holds a lease, since when and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    /// The holding server's id.
    pub holder: String,
    /// Where the holder's API answers, for followers to point clients at.
    pub holder_url: String,
    /// Goes up by one each time the lease changes hands: an action stamped with an older term
    /// comes from a server that lost the lease.
    pub term: i64,
    pub acquired_at: OffsetDateTime,
    pub renewed_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl Store {
    /// Takes or renews the lease `name` for `holder` until `ttl` from now (by the database's
    /// clock). `Some` when `holder` has it now; `None` when another server holds it and its
    /// lease has not expired.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        holder_url: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let ttl = i64::try_from(ttl.as_micros()).map_err(|_| {
            StoreError::Conflict(format!("lease time {ttl:?} is too long to store"))
        })?;
        let sql = match self.backend {
            Backend::Sqlite => acquire!(sqlite),
            Backend::Postgres => acquire!(postgres),
        };
        sqlx::query(sql)
            .bind(name)
            .bind(holder)
            .bind(holder_url)
            .bind(ttl)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| lease_from_row(&row))
            .transpose()
    }

    /// The lease as it stands, expired or not; `None` when it was never taken or was released.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        sqlx::query(
            "SELECT name, holder, holder_url, term, acquired_at, renewed_at, expires_at \
             FROM leases WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| lease_from_row(&row))
        .transpose()
    }

    /// Whether `holder` still holds the lease in `term` and it has not expired: what a leader
    /// checks before an action another leader must not repeat.
    pub async fn holds_lease(&self, name: &str, holder: &str, term: i64) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => holds!(sqlite),
            Backend::Postgres => holds!(postgres),
        };
        let found: Option<(i64,)> = sqlx::query_as(sql)
            .bind(name)
            .bind(holder)
            .bind(term)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Gives the lease up, so another server takes it at once instead of after it expires:
    /// it expires now, its term kept. Only `lease` as renewed last: when the holder renewed it
    /// since (a successor with the same id), it stays.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at = renewed_at \
             WHERE name = $1 AND holder = $2 AND renewed_at = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(micros(lease.renewed_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What a store checks before the writes only the leader may make (making a release current):
/// that `holder` still holds `lease` in the term it last took it in, unexpired. A leader that
/// lost its lease while a deploy was under way fails at that write instead of acting beside
/// the new leader.
#[derive(Debug)]
pub struct Fence {
    lease: String,
    holder: String,
    /// The term held; 0 while none is.
    term: AtomicI64,
}

impl Fence {
    pub fn new(lease: &str, holder: &str) -> Self {
        Self {
            lease: lease.to_owned(),
            holder: holder.to_owned(),
            term: AtomicI64::new(0),
        }
    }

    /// The holder took or renewed the lease in `term`.
    pub fn hold(&self, term: i64) {
        self.term.store(term, Ordering::SeqCst);
    }

    /// The holder lost the lease: fenced writes fail until it takes it again.
    pub fn drop_lease(&self) {
        self.term.store(0, Ordering::SeqCst);
    }

    /// Conflict unless the lease is still held as last recorded, checked inside `tx` so the
    /// fenced write commits only with it.
    pub(crate) async fn check(
        &self,
        backend: Backend,
        tx: &mut Transaction<'_, Any>,
    ) -> Result<()> {
        let term = self.term.load(Ordering::SeqCst);
        let sql = match backend {
            Backend::Sqlite => holds!(sqlite),
            Backend::Postgres => holds!(postgres),
        };
        let found: Option<(i64,)> = sqlx::query_as(sql)
            .bind(&self.lease)
            .bind(&self.holder)
            .bind(term)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::Conflict(format!(
                "this server no longer holds the `{}` lease: another server leads now",
                self.lease
            )));
        }
        Ok(())
    }
}

fn lease_from_row(row: &AnyRow) -> Result<Lease> {
    let cols = Cols::new("leases", row);
    Ok(Lease {
        name: cols.text("name")?,
        holder: cols.text("holder")?,
        holder_url: cols.text("holder_url")?,
        term: cols.int("term")?,
        acquired_at: cols.time("acquired_at")?,
        renewed_at: cols.time("renewed_at")?,
        expires_at: cols.time("expires_at")?,
    })
}
