//! Conversions between the API's types and their stored form: ids as hyphenated text, times as
//! integer microseconds since the Unix epoch (UTC), versions as text plus ordering columns.

use std::fmt;

use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// The current time at the precision the store keeps, so a value returned by a write equals
/// the one read back later.
pub(crate) fn now() -> OffsetDateTime {
    stored(OffsetDateTime::now_utc())
}

/// A time as it reads back from the store: in UTC, to the microsecond.
pub(crate) fn stored(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    let us = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

fn from_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

/// A version's ordering columns. Build metadata is left out: it never distinguishes releases.
pub(crate) struct VersionKey {
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
    pub pre: String,
}

impl VersionKey {
    pub fn of(version: &Version) -> Result<Self> {
        let part = |n: u64| {
            i64::try_from(n).map_err(|_| {
                StoreError::Conflict(format!("version `{version}` is too large to store"))
            })
        };
        Ok(Self {
            major: part(version.major)?,
            minor: part(version.minor)?,
            patch: part(version.patch)?,
            pre: version.pre.to_string(),
        })
    }
}

pub(crate) fn to_json(value: &impl Serialize, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode {what} as JSON: {err}")))
}

/// Typed access to one row's columns, turning values this binary cannot read into
/// `StoreError::Corrupt` naming the table and column.
pub(crate) struct Cols<'r> {
    table: &'static str,
    row: &'r AnyRow,
}

impl<'r> Cols<'r> {
    pub fn new(table: &'static str, row: &'r AnyRow) -> Self {
        Self { table, row }
    }

    pub fn text(&self, col: &str) -> Result<String> {
        Ok(self.row.try_get(col)?)
    }

    pub fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.row.try_get(col)?)
    }

    pub fn int(&self, col: &str) -> Result<i64> {
        Ok(self.row.try_get(col)?)
    }

    pub fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.row.try_get(col)?)
    }

    pub fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        Ok(self.row.try_get(col)?)
    }

    pub fn parse<T>(&self, col: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
        let raw: String = self.row.try_get(col)?;
        parse(&raw).ok_or_else(|| self.corrupt(col, &raw))
    }

    pub fn opt_parse<T>(
        &self,
        col: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        let raw: Option<String> = self.row.try_get(col)?;
        raw.map(|raw| parse(&raw).ok_or_else(|| self.corrupt(col, &raw)))
            .transpose()
    }

    pub fn parse_int<T>(&self, col: &str, convert: impl FnOnce(i64) -> Option<T>) -> Result<T> {
        let raw = self.int(col)?;
        convert(raw).ok_or_else(|| self.corrupt(col, &raw))
    }

    pub fn uuid(&self, col: &str) -> Result<Uuid> {
        self.parse(col, |s| Uuid::parse_str(s).ok())
    }

    pub fn version(&self, col: &str) -> Result<Version> {
        self.parse(col, |s| Version::parse(s).ok())
    }

    pub fn time(&self, col: &str) -> Result<OffsetDateTime> {
        let us = self.int(col)?;
        from_micros(us).ok_or_else(|| self.corrupt(col, &us))
    }

    pub fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>> {
        self.opt_int(col)?
            .map(|us| from_micros(us).ok_or_else(|| self.corrupt(col, &us)))
            .transpose()
    }

    /// Reports the parse error, not the value: JSON columns hold config snapshots, whose
    /// values are secrets.
    pub fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T> {
        let raw: String = self.row.try_get(col)?;
        serde_json::from_str(&raw).map_err(|err| {
            StoreError::Corrupt(format!(
                "the store's `{}.{col}` is not the JSON expected: {err}",
                self.table
            ))
        })
    }

    fn corrupt(&self, col: &str, value: &dyn fmt::Display) -> StoreError {
        StoreError::Corrupt(format!(
            "the store's `{}.{col}` holds `{value}`, which this slipway cannot read",
            self.table
        ))
    }
}
