//! `addons`, `addons:create`, `addons:info`, `addons:destroy`, and the Postgres commands
//! `pg:backups`, `pg:backups:capture`, `pg:backups:restore`, `pg:psql`.

use anyhow::bail;
use slipway_types::api::{AddonChanged, AddonInfo, BackupInfo, BackupStatus};

use crate::cli::Session;
use crate::client::Client;
use crate::commands::run;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let addons = session.client()?.list_addons(&app).await?;
    if session.global.json {
        return session.print_json(&addons);
    }
    if addons.is_empty() {
        return session.print(&format!(
            "{app} has no add-ons: create one with `slipway addons:create postgres`\n"
        ));
    }
    let mut rows = Table::new(&["NAME", "TYPE", "CONFIG VAR", "CREATED"]);
    for addon in addons {
        rows.row(vec![
            addon.name,
            addon.kind,
            addon.config_var,
            table::time(addon.created_at),
        ]);
    }
    session.print(&rows.render())
}

/// Prints "Creating postgres on hello... done, postgres-1 as DATABASE_URL, v1.0.1" once the
/// release that sets the var is live.
pub(crate) async fn create(
    session: &mut Session<'_>,
    kind: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let json = session.global.json;
    if !json {
        session.print(&format!("Creating {kind} on {app}... "))?;
    }
    let created = match client.create_addon(&app, kind, name).await {
        Ok(created) => created,
        Err(error) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(error.into());
        }
    };
    if json {
        return session.print_json(&created);
    }
    let done = format!(
        "done, {} as {}{}\n",
        created.addon.name,
        created.addon.config_var,
        released(&created)
    );
    session.print(&done)
}

pub(crate) async fn info(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let detail = session.client()?.get_addon(&app, name).await?;
    if session.global.json {
        return session.print_json(&detail);
    }
    let state = match (&detail.error, detail.running) {
        (Some(error), _) => format!("unknown ({error})"),
        (None, true) => "running".to_owned(),
        (None, false) => "stopped (slipway restarts it within seconds)".to_owned(),
    };
    let pairs = [
        ("Type", detail.addon.kind.clone()),
        ("Config var", detail.addon.config_var.clone()),
        ("State", state),
        ("Version", table::or_dash(detail.version.clone())),
        ("Size on disk", table::or_dash(detail.size_bytes.map(size))),
        (
            "Connections",
            table::or_dash(detail.connections.map(|n| n.to_string())),
        ),
        ("Created", table::time(detail.addon.created_at)),
    ];
    session.print(&format!(
        "=== {}\n{}",
        detail.addon.name,
        table::render_pairs(&pairs)
    ))
}

pub(crate) async fn destroy(
    session: &mut Session<'_>,
    name: &str,
    confirm: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    check_confirmation(name, confirm)?;
    let client = session.client()?;
    let json = session.global.json;
    if !json {
        session.print(&format!("Destroying {name} on {app}... "))?;
    }
    let destroyed = match client.destroy_addon(&app, name).await {
        Ok(destroyed) => destroyed,
        Err(error) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(error.into());
        }
    };
    if json {
        return session.print_json(&destroyed);
    }
    let mut done = format!(
        "done, {} removed{}\n",
        destroyed.addon.config_var,
        released(&destroyed)
    );
    if let Some(backup) = &destroyed.final_backup {
        done.push_str(&format!(
            "Final backup {} kept on the server ({})\n",
            backup.id,
            table::or_dash(backup.file.clone())
        ));
    }
    session.print(&done)
}

/// Destroying deletes the data, so the add-on's name must be typed out.
fn check_confirmation(name: &str, confirm: Option<&str>) -> anyhow::Result<()> {
    match confirm {
        Some(confirm) if confirm == name => Ok(()),
        Some(confirm) => bail!(
            "--confirm `{confirm}` does not match add-on `{name}`: pass --confirm {name} to destroy it"
        ),
        None => {
            bail!("this destroys add-on `{name}` and its data: pass --confirm {name} to go ahead")
        }
    }
}

/// With a name, that add-on's backups (a destroyed one's too); without, those of every
/// Postgres add-on of the app. Failed backups are listed with why, below the table.
pub(crate) async fn backups(session: &mut Session<'_>, name: Option<&str>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let mut backups = Vec::new();
    match name {
        Some(name) => backups = client.list_backups(&app, name).await?,
        None => {
            for addon in postgres_addons(&client, &app).await? {
                backups.extend(client.list_backups(&app, &addon.name).await?);
            }
            backups.sort_by_key(|backup| std::cmp::Reverse(backup.started_at));
        }
    }
    if session.global.json {
        return session.print_json(&backups);
    }
    if backups.is_empty() {
        return session.print(&format!(
            "{app} has no backups yet: take one with `slipway pg:backups:capture`\n"
        ));
    }
    session.print(&render_backups(&backups))
}

fn render_backups(backups: &[BackupInfo]) -> String {
    let mut rows = Table::new(&[
        "ID", "ADD-ON", "TRIGGER", "STATUS", "SIZE", "STARTED", "FINISHED",
    ]);
    for backup in backups {
        rows.row(vec![
            backup.id.clone(),
            backup.addon.clone(),
            backup.trigger.to_string(),
            backup.status.to_string(),
            table::or_dash(backup.size_bytes.map(size)),
            table::time(backup.started_at),
            table::or_dash(backup.finished_at.map(table::time)),
        ]);
    }
    let mut out = rows.render();
    for backup in backups {
        if let (BackupStatus::Failed, Some(error)) = (backup.status, &backup.error) {
            out.push_str(&format!("{} failed: {error}\n", backup.id));
        }
    }
    out
}

pub(crate) async fn capture(session: &mut Session<'_>, name: Option<&str>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let addon = pick_postgres(&client, &app, name).await?;
    let json = session.global.json;
    if !json {
        session.print(&format!("Backing up {addon} on {app}... "))?;
    }
    let backup = match client.capture_backup(&app, &addon).await {
        Ok(backup) => backup,
        Err(error) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(error.into());
        }
    };
    if json {
        return session.print_json(&backup);
    }
    let done = format!(
        "done, {} ({})\n",
        backup.id,
        table::or_dash(backup.size_bytes.map(size))
    );
    session.print(&done)
}

pub(crate) async fn restore(
    session: &mut Session<'_>,
    id: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let addon = pick_postgres(&client, &app, name).await?;
    let json = session.global.json;
    let id = id.unwrap_or("latest");
    if !json {
        let what = if id == "latest" {
            "the latest backup"
        } else {
            id
        };
        session.print(&format!("Restoring {what} into {addon} on {app}... "))?;
    }
    let restored = match client.restore_backup(&app, &addon, id).await {
        Ok(restored) => restored,
        Err(error) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(error.into());
        }
    };
    if json {
        return session.print_json(&restored);
    }
    session.print(&format!("done, {} restored\n", restored.backup.id))
}

/// `psql` against the add-on, attached to this terminal; `sql` runs one command instead.
pub(crate) async fn psql(
    session: &mut Session<'_>,
    name: Option<&str>,
    sql: Option<&str>,
    no_tty: bool,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let addon = pick_postgres(&client, &app, name).await?;
    let mut command = vec!["psql".to_owned()];
    if let Some(sql) = sql {
        command.extend(["--command".to_owned(), sql.to_owned()]);
    }
    run::attached(session, &client, &app, &command, Some(&addon), no_tty).await
}

async fn postgres_addons(client: &Client, app: &str) -> anyhow::Result<Vec<AddonInfo>> {
    let mut addons = client.list_addons(app).await?;
    addons.retain(|addon| addon.kind == "postgres");
    Ok(addons)
}

/// The add-on a `pg:` command acts on: the one named (by name, or by its config var with or
/// without `_URL`), else the one behind `DATABASE_URL`, else the app's only one.
async fn pick_postgres(client: &Client, app: &str, name: Option<&str>) -> anyhow::Result<String> {
    let addons = postgres_addons(client, app).await?;
    Ok(choose(app, &addons, name)?.name.clone())
}

fn choose<'a>(
    app: &str,
    addons: &'a [AddonInfo],
    name: Option<&str>,
) -> anyhow::Result<&'a AddonInfo> {
    if let Some(name) = name {
        let by_var = |addon: &&AddonInfo| {
            let var = addon.config_var.to_ascii_uppercase();
            let wanted = name.to_ascii_uppercase();
            var == wanted || var.strip_suffix("_URL") == Some(wanted.as_str())
        };
        return addons
            .iter()
            .find(|addon| addon.name == name)
            .or_else(|| addons.iter().find(by_var))
            .ok_or_else(|| anyhow::anyhow!("app `{app}` has no postgres add-on `{name}`"));
    }
    if let Some(primary) = addons.iter().find(|a| a.config_var == "DATABASE_URL") {
        return Ok(primary);
    }
    match addons {
        [] => bail!(
            "app `{app}` has no postgres add-on: create one with `slipway addons:create postgres`"
        ),
        [only] => Ok(only),
        several => {
            let names: Vec<&str> = several.iter().map(|a| a.name.as_str()).collect();
            bail!(
                "app `{app}` has several postgres add-ons ({}): name one",
                names.join(", ")
            )
        }
    }
}

/// ", v1.0.1" when a release was cut; nothing when the app had none yet.
fn released(changed: &AddonChanged) -> String {
    changed
        .release
        .as_deref()
        .map(|version| format!(", {}", table::version(version)))
        .unwrap_or_default()
}

/// Bytes as people read them: `512 B`, `3.1 KiB`, `7.5 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use slipway_types::api::BackupTrigger;
    use time::OffsetDateTime;

    use super::*;

    fn addon(name: &str, var: &str) -> AddonInfo {
        AddonInfo {
            name: name.to_owned(),
            kind: "postgres".to_owned(),
            config_var: var.to_owned(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn destroy_needs_the_exact_name() {
        assert!(check_confirmation("postgres-1", Some("postgres-1")).is_ok());
        let err = check_confirmation("postgres-1", Some("hello")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--confirm `hello` does not match add-on `postgres-1`: pass --confirm postgres-1 to destroy it"
        );
        let err = check_confirmation("postgres-1", None).unwrap_err();
        assert!(
            err.to_string().contains("pass --confirm postgres-1"),
            "{err}"
        );
    }

    #[test]
    fn pg_commands_pick_the_named_the_primary_or_the_only_database() {
        let addons = [
            addon("postgres-2", "POSTGRES_2_URL"),
            addon("main", "DATABASE_URL"),
        ];
        assert_eq!(choose("a", &addons, None).unwrap().name, "main");
        assert_eq!(
            choose("a", &addons, Some("postgres-2")).unwrap().name,
            "postgres-2"
        );
        assert_eq!(choose("a", &addons, Some("DATABASE")).unwrap().name, "main");
        assert_eq!(
            choose("a", &addons, Some("postgres_2_url")).unwrap().name,
            "postgres-2"
        );
        let err = choose("a", &addons, Some("nope")).unwrap_err();
        assert_eq!(err.to_string(), "app `a` has no postgres add-on `nope`");

        let only = [addon("analytics", "ANALYTICS_URL")];
        assert_eq!(choose("a", &only, None).unwrap().name, "analytics");
        let err = choose("a", &[], None).unwrap_err();
        assert!(err.to_string().contains("addons:create postgres"), "{err}");
        let several = [addon("x", "X_URL"), addon("y", "Y_URL")];
        let err = choose("a", &several, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app `a` has several postgres add-ons (x, y): name one"
        );
    }

    #[test]
    fn backups_show_sizes_and_why_failed_ones_failed() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_309_323).unwrap();
        let backups = [
            BackupInfo {
                id: "a002".into(),
                addon: "postgres-1".into(),
                trigger: BackupTrigger::Scheduled,
                status: BackupStatus::Failed,
                file: None,
                size_bytes: None,
                started_at: at,
                finished_at: Some(at),
                error: Some("add-on `hello/postgres-1` is not running".into()),
            },
            BackupInfo {
                id: "b001".into(),
                addon: "postgres-1".into(),
                trigger: BackupTrigger::Manual,
                status: BackupStatus::Succeeded,
                file: Some("postgres-1-b001-20261122T010203Z.dump".into()),
                size_bytes: Some(3174),
                started_at: at,
                finished_at: None,
                error: None,
            },
        ];
        assert_eq!(
            render_backups(&backups),
            "\
ID    ADD-ON      TRIGGER    STATUS     SIZE     STARTED               FINISHED
a002  postgres-1  scheduled  failed     -        2026-11-22T01:02:03Z  2026-11-22T01:02:03Z
b001  postgres-1  manual     succeeded  3.1 KiB  2026-11-22T01:02:03Z  -
a002 failed: add-on `hello/postgres-1` is not running
"
        );
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(7 * 1024 * 1024 + 512 * 1024), "7.5 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}
