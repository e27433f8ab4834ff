//! `apps`, `apps:create`, `apps:info`, `apps:destroy`, `git:remote`.

use anyhow::bail;

use crate::cli::Session;
use crate::git::{self, RemoteChange};
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let apps = session.client()?.list_apps().await?;
    if session.global.json {
        return session.print_json(&apps);
    }
    let mut rows = Table::new(&["NAME", "RELEASE", "WEB URL", "CREATED"]);
    for app in apps {
        rows.row(vec![
            app.name,
            table::or_dash(app.current_release.as_deref().map(table::version)),
            app.web_url,
            table::time(app.created_at),
        ]);
    }
    session.print(&rows.render())
}

/// Inside a git repository without a `platform` remote, also adds one, as `heroku create`
/// does; an existing remote is left alone because it may point at another app on purpose.
pub(crate) async fn create(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    let client = session.client()?;
    let json = session.global.json;
    if !json {
        session.print(&format!("Creating {name}... "))?;
    }
    let app = match client.create_app(name).await {
        Ok(app) => app,
        Err(err) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(err.into());
        }
    };
    let push_url = git::push_url(client.base_url(), &app.name);
    if !json {
        session.print(&format!("done\n{} | {push_url}\n", app.web_url))?;
    }
    let note = add_remote_if_missing(session, &app.name, &push_url).await?;
    if json {
        return session.print_json(&app);
    }
    session.print(&note.unwrap_or_default())
}

/// What `apps:create` did about the git remote, as a line to print; `None` outside a repository.
async fn add_remote_if_missing(
    session: &Session<'_>,
    app: &str,
    push_url: &str,
) -> anyhow::Result<Option<String>> {
    let cwd = &session.env.cwd;
    let remote = git::DEFAULT_REMOTE;
    if !git::is_repository(cwd).await {
        return Ok(None);
    }
    if git::remote_url(cwd, remote).await.is_some() {
        return Ok(Some(format!(
            "Git remote {remote} already exists; `slipway git:remote -a {app}` points it at this app\n"
        )));
    }
    git::set_remote(cwd, remote, push_url).await?;
    Ok(Some(format!("Git remote {remote} added\n")))
}

pub(crate) async fn info(session: &mut Session<'_>) -> anyhow::Result<()> {
    let client = session.client()?;
    let app = client.get_app(&session.app().await?).await?;
    if session.global.json {
        return session.print_json(&app);
    }
    let pairs = [
        ("Web URL", app.web_url.clone()),
        ("Git URL", git::push_url(client.base_url(), &app.name)),
        (
            "Release",
            table::or_dash(app.current_release.as_deref().map(table::version)),
        ),
        ("Created", table::time(app.created_at)),
    ];
    session.print(&format!(
        "=== {}\n{}",
        app.name,
        table::render_pairs(&pairs)
    ))
}

pub(crate) async fn destroy(
    session: &mut Session<'_>,
    confirm: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    check_confirmation(&app, confirm)?;
    let client = session.client()?;
    session.print(&format!("Destroying {app} (including its add-ons)... "))?;
    if let Err(err) = client.destroy_app(&app).await {
        session.print("failed\n")?;
        return Err(err.into());
    }
    session.print("done\n")
}

/// Destroying is irreversible, so the name must be typed out even when `-a` or the git remote
/// already says which app.
fn check_confirmation(app: &str, confirm: Option<&str>) -> anyhow::Result<()> {
    match confirm {
        Some(confirm) if confirm == app => Ok(()),
        Some(confirm) => bail!(
            "--confirm `{confirm}` does not match app `{app}`: pass --confirm {app} to destroy it"
        ),
        None => bail!(
            "this destroys app `{app}` and everything it owns: pass --confirm {app} to go ahead"
        ),
    }
}

/// Checks the app exists first, so a typo does not leave a remote that cannot push.
pub(crate) async fn git_remote(session: &mut Session<'_>, remote: &str) -> anyhow::Result<()> {
    let client = session.client()?;
    let app = client.get_app(&session.app().await?).await?;
    let push_url = git::push_url(client.base_url(), &app.name);
    let change = git::set_remote(&session.env.cwd, remote, &push_url).await?;
    let verb = match change {
        RemoteChange::Added => "added",
        RemoteChange::Updated => "set",
    };
    session.print(&format!("{verb} git remote {remote} to {push_url}\n"))
}

/// Shows maintenance mode, or turns it on or off.
pub(crate) async fn maintenance(
    session: &mut Session<'_>,
    set: Option<bool>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let state = match set {
        Some(enabled) => client.set_maintenance(&app, enabled).await?,
        None => client.maintenance(&app).await?,
    };
    if session.global.json {
        return session.print_json(&state);
    }
    let text = match (set, state.enabled) {
        (None, true) => format!("{app} is in maintenance mode\n"),
        (None, false) => format!("{app} is not in maintenance mode\n"),
        (Some(_), true) => format!(
            "Maintenance mode is on for {app}: the router answers 503 with a maintenance page\n"
        ),
        (Some(_), false) => format!("Maintenance mode is off for {app}: it is served again\n"),
    };
    session.print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroy_needs_the_exact_name() {
        assert!(check_confirmation("myapp", Some("myapp")).is_ok());
        let err = check_confirmation("myapp", Some("other")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--confirm `other` does not match app `myapp`: pass --confirm myapp to destroy it"
        );
        let err = check_confirmation("myapp", None).unwrap_err();
        assert!(err.to_string().contains("pass --confirm myapp"), "{err}");
    }
}
