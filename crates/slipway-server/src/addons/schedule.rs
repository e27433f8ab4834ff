//! When daily backups are due and which ones retention removes. Pure functions of the
//! backups the store lists, so the policy is tested without a clock or a database.

use std::collections::BTreeSet;
use std::time::Duration;

use slipway_store::Backup;
use slipway_types::api::{BackupStatus, BackupTrigger};
use time::OffsetDateTime;

/// One scheduled backup per add-on per day.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);
/// A failed scheduled backup is tried again this much later, not a day later.
pub const RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Whether an add-on created at `created_at` with these backups (its own, newest first or
/// not) needs a scheduled backup now: a day after its last successful one (or after it was
/// created), and not while one runs or within an hour of a failed attempt.
pub fn due(created_at: OffsetDateTime, backups: &[Backup], now: OffsetDateTime) -> bool {
    let scheduled: Vec<&Backup> = backups
        .iter()
        .filter(|b| b.trigger == BackupTrigger::Scheduled)
        .collect();
    if scheduled.iter().any(|b| b.status == BackupStatus::Running) {
        return false;
    }
    let last_success = scheduled
        .iter()
        .filter(|b| b.status == BackupStatus::Succeeded)
        .map(|b| b.started_at)
        .max();
    let last_attempt = scheduled.iter().map(|b| b.started_at).max();
    let since = last_success.unwrap_or(created_at);
    now - since >= EVERY && last_attempt.is_none_or(|at| now - at >= RETRY_AFTER)
}

/// The scheduled backups older than `retention`, except each add-on's newest successful
/// one: a database whose backups keep failing still has its last good dump. Manual and
/// final backups are never expired; people asked for them.
pub fn expired(backups: &[Backup], retention: Duration, now: OffsetDateTime) -> Vec<&Backup> {
    let mut newest_good: Vec<&Backup> = Vec::new();
    for backup in backups
        .iter()
        .filter(|b| b.trigger == BackupTrigger::Scheduled && b.status == BackupStatus::Succeeded)
    {
        match newest_good
            .iter_mut()
            .find(|kept| kept.addon == backup.addon)
        {
            Some(kept) if kept.number < backup.number => *kept = backup,
            Some(_) => {}
            None => newest_good.push(backup),
        }
    }
    let keep: BTreeSet<u32> = newest_good.iter().map(|b| b.number).collect();
    backups
        .iter()
        .filter(|b| {
            b.trigger == BackupTrigger::Scheduled
                && b.status != BackupStatus::Running
                && now - b.started_at > retention
                && !keep.contains(&b.number)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use time::Duration as Span;
    use uuid::Uuid;

    use super::*;

    fn at(hours: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Span::days(20_000) + Span::hours(hours)
    }

    fn backup(
        number: u32,
        addon: &str,
        trigger: BackupTrigger,
        status: BackupStatus,
        hours: i64,
    ) -> Backup {
        Backup {
            id: Uuid::now_v7(),
            app_id: Uuid::nil(),
            addon: addon.to_owned(),
            number,
            trigger,
            status,
            file: None,
            size_bytes: None,
            error: None,
            started_at: at(hours),
            finished_at: None,
        }
    }

    use BackupStatus::{Failed, Running, Succeeded};
    use BackupTrigger::{Final, Manual, Scheduled};

    #[test]
    fn the_first_scheduled_backup_comes_a_day_after_creation() {
        assert!(!due(at(0), &[], at(23)));
        assert!(due(at(0), &[], at(24)));
        // Manual backups do not replace the daily one.
        let manual = [backup(1, "db", Manual, Succeeded, 20)];
        assert!(due(at(0), &manual, at(24)));
    }

    #[test]
    fn the_next_comes_a_day_after_the_last_success_and_failures_retry_hourly() {
        let ok = backup(1, "db", Scheduled, Succeeded, 24);
        assert!(!due(at(0), std::slice::from_ref(&ok), at(47)));
        assert!(due(at(0), std::slice::from_ref(&ok), at(48)));

        let failed = backup(2, "db", Scheduled, Failed, 48);
        let both = [failed, ok.clone()];
        assert!(!due(at(0), &both, at(48)));
        assert!(due(at(0), &both, at(49)));

        let running = [backup(2, "db", Scheduled, Running, 30), ok];
        assert!(!due(at(0), &running, at(72)));
    }

    #[test]
    fn retention_expires_old_scheduled_backups_but_keeps_the_last_good_one() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let backups = [
            backup(6, "db", Scheduled, Failed, 24 * 9),
            backup(5, "db", Manual, Succeeded, 0),
            backup(4, "db", Final, Succeeded, 0),
            backup(3, "db", Scheduled, Succeeded, 24),
            backup(2, "db", Scheduled, Succeeded, 0),
            backup(1, "other", Scheduled, Succeeded, 0),
        ];
        let now = at(24 * 10);
        let numbers: Vec<u32> = expired(&backups, week, now)
            .iter()
            .map(|b| b.number)
            .collect();
        // 6 is recent; 3 is db's newest good one and 1 is other's; manual and final stay.
        assert_eq!(numbers, [2]);

        let later = at(24 * 17);
        let numbers: Vec<u32> = expired(&backups, week, later)
            .iter()
            .map(|b| b.number)
            .collect();
        assert_eq!(numbers, [6, 2]);
    }
}
