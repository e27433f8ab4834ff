//! `tokens`, `tokens:create`, `tokens:revoke`, `access`, `access:add`, `access:remove`, and the
//! operators' `admin:*` commands.

use crate::cli::Session;
use crate::table::{self, Table};
use crate::token::Token;

pub(crate) async fn tokens(session: &mut Session<'_>) -> anyhow::Result<()> {
    let tokens = session.client()?.list_tokens().await?;
    if session.global.json {
        return session.print_json(&tokens);
    }
    let mut rows = Table::new(&["ID", "SCOPE", "CREATED", "EXPIRES", "REVOKED"]);
    for token in tokens {
        rows.row(vec![
            token.id.to_string(),
            token.scope,
            table::time(token.created_at),
            token
                .expires_at
                .map_or_else(|| "never".to_owned(), table::time),
            table::or_dash(token.revoked_at.map(table::time)),
        ]);
    }
    session.print(&rows.render())
}

/// Prints the token once, on its own line, so `$(slipway tokens:create)` captures it.
pub(crate) async fn create_token(
    session: &mut Session<'_>,
    scope: &str,
    expires_in: Option<&str>,
) -> anyhow::Result<()> {
    let issued = session.client()?.create_token(scope, expires_in).await?;
    if session.global.json {
        return session.print_json(&issued);
    }
    session.print(&format!("{}\n", issued.token))
}

pub(crate) async fn revoke_token(session: &mut Session<'_>, id: &str) -> anyhow::Result<()> {
    session.client()?.revoke_token(id).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "revoked": id }));
    }
    session.print(&format!("Revoked token {id}\n"))
}

pub(crate) async fn access(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let people = session.client()?.collaborators(&app).await?;
    if session.global.json {
        return session.print_json(&people);
    }
    let mut rows = Table::new(&["EMAIL", "ROLE"]);
    for person in people {
        rows.row(vec![person.email, person.role]);
    }
    session.print(&rows.render())
}

pub(crate) async fn access_add(session: &mut Session<'_>, email: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let added = session.client()?.add_collaborator(&app, email).await?;
    if session.global.json {
        return session.print_json(&added);
    }
    session.print(&format!(
        "Added {} to {app} as a collaborator\n",
        added.email
    ))
}

pub(crate) async fn access_remove(session: &mut Session<'_>, email: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.remove_collaborator(&app, email).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": email }));
    }
    session.print(&format!("Removed {email} from {app}\n"))
}

pub(crate) async fn admin_users(session: &mut Session<'_>) -> anyhow::Result<()> {
    let users = session.client()?.admin_users().await?;
    if session.global.json {
        return session.print_json(&users);
    }
    let mut rows = Table::new(&["EMAIL", "ROLE", "CREATED"]);
    for user in users {
        rows.row(vec![user.email, user.role, table::time(user.created_at)]);
    }
    session.print(&rows.render())
}

pub(crate) async fn admin_create_user(
    session: &mut Session<'_>,
    email: &str,
    role: &str,
    password: Option<Token>,
) -> anyhow::Result<()> {
    let created = session
        .client()?
        .admin_create_user(email, role, password.as_ref().map(Token::expose))
        .await?;
    if session.global.json {
        return session.print_json(&created);
    }
    let mut out = format!("Created {} ({})\n", created.user.email, created.user.role);
    if let Some(password) = &created.password {
        out.push_str(&format!(
            "Password (shown once): {password}\nThey sign in with `slipway login --email {} --password-stdin`\n",
            created.user.email
        ));
    }
    session.print(&out)
}

pub(crate) async fn admin_remove_user(
    session: &mut Session<'_>,
    email: &str,
) -> anyhow::Result<()> {
    session.client()?.admin_remove_user(email).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": email }));
    }
    session.print(&format!("Removed {email}\n"))
}

pub(crate) async fn admin_apps(session: &mut Session<'_>) -> anyhow::Result<()> {
    let apps = session.client()?.admin_apps().await?;
    if session.global.json {
        return session.print_json(&apps);
    }
    let mut rows = Table::new(&[
        "NAME",
        "OWNER",
        "RELEASE",
        "CONTAINERS",
        "MEMORY",
        "ADD-ONS",
        "DOMAINS",
    ]);
    for app in apps {
        rows.row(vec![
            app.name,
            app.owner,
            table::or_dash(app.current_release),
            app.containers.to_string(),
            slipway_types::api::format_memory(i64::try_from(app.memory_bytes).unwrap_or(i64::MAX)),
            app.addons.to_string(),
            app.domains.to_string(),
        ]);
    }
    session.print(&rows.render())
}

/// `-a/--app` filters by app; the app is not inferred from the git remote here, since the
/// whole log is what an operator usually wants.
pub(crate) async fn admin_audit(
    session: &mut Session<'_>,
    limit: i64,
    user: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.global.app.clone();
    let events = session
        .client()?
        .admin_audit(limit, app.as_deref(), user)
        .await?;
    if session.global.json {
        return session.print_json(&events);
    }
    let mut rows = Table::new(&[
        "WHEN", "WHO", "ACTION", "TARGET", "OUTCOME", "FROM", "DETAIL",
    ]);
    for event in events {
        rows.row(vec![
            table::time(event.at),
            event.actor,
            event.action,
            event.target,
            table::or_dash(event.outcome.map(|o| o.as_str().to_owned())),
            table::or_dash(event.source_ip),
            table::or_dash(event.detail),
        ]);
    }
    session.print(&rows.render())
}

pub(crate) async fn admin_status(session: &mut Session<'_>) -> anyhow::Result<()> {
    let status = session.client()?.admin_status().await?;
    if session.global.json {
        return session.print_json(&status);
    }
    let mb = |bytes: u64| format!("{} MB", bytes / 1_000_000);
    let pairs = [
        ("Version", status.version.clone()),
        ("Uptime", format!("{} s", status.uptime_seconds)),
        ("Docker", status.docker.clone()),
        ("Apps", status.apps.to_string()),
        ("Users", status.users.to_string()),
        ("Images", mb(status.disk.images_bytes)),
        (
            "Volumes",
            status
                .disk
                .volumes_bytes
                .map_or_else(|| "unknown".to_owned(), mb),
        ),
        ("Data dir", mb(status.disk.data_dir_bytes)),
    ];
    let mut out = table::render_pairs(&pairs);
    if !status.certificates.is_empty() {
        let mut rows = Table::new(&["CERTIFICATE", "STATUS", "EXPIRES"]);
        for cert in &status.certificates {
            rows.row(vec![
                cert.domain.clone(),
                cert.status.as_str().to_owned(),
                table::or_dash(cert.not_after.map(table::time)),
            ]);
        }
        out.push('\n');
        out.push_str(&rows.render());
    }
    out.push_str(&format!(
        "\nFailed releases in the last 24 h: {}\n",
        status.failed_releases.len()
    ));
    for failed in &status.failed_releases {
        out.push_str(&format!(
            "  {} {} {} ({})\n",
            failed.app,
            failed.version,
            failed.description,
            table::time(failed.at)
        ));
    }
    session.print(&out)
}
