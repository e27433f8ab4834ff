//! `releases`, `releases:info`.

use slipway_types::api::ReleaseInfo;
use slipway_types::version::display_version;

use crate::cli::Session;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let releases = session.client()?.list_releases(&app).await?;
    if session.global.json {
        return session.print_json(&releases);
    }
    session.print(&render(&releases))
}

/// The current release is marked with `*` in the first column, as `git branch` marks the
/// checked-out branch.
fn render(releases: &[ReleaseInfo]) -> String {
    let mut rows = Table::new(&["", "VERSION", "STATUS", "DESCRIPTION", "BY", "CREATED"]);
    for release in releases {
        rows.row(vec![
            if release.current { "*" } else { "" }.to_owned(),
            shown_version(release),
            release.status.to_string(),
            release.description.clone(),
            release.created_by.clone(),
            table::time(release.created_at),
        ]);
    }
    rows.render()
}

/// Prints "Rolling back hello to 1.0.0... done, v1.2.1" once the new release is live.
pub(crate) async fn rollback(
    session: &mut Session<'_>,
    version: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let target = version.map_or_else(
        || "the previous release".to_owned(),
        |v| format!("v{}", v.trim_start_matches('v')),
    );
    session.print(&format!("Rolling back {app} to {target}... "))?;
    let release = match client.rollback(&app, version).await {
        Ok(release) => release,
        Err(error) => {
            session.print("failed\n")?;
            return Err(error.into());
        }
    };
    if session.global.json {
        session.print("done\n")?;
        return session.print_json(&release);
    }
    session.print(&format!("done, {}\n", table::version(&release.version)))
}

/// `v1.2.0+gabc1234`: the commit is shown as build metadata, as versions are compared without it.
fn shown_version(release: &ReleaseInfo) -> String {
    format!(
        "v{}",
        display_version(&release.version, release.commit.as_deref())
    )
}

pub(crate) async fn info(session: &mut Session<'_>, version: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let version = version.strip_prefix('v').unwrap_or(version);
    let release = session.client()?.get_release(&app, version).await?;
    if session.global.json {
        return session.print_json(&release);
    }
    let status = match &release.status_reason {
        Some(reason) => format!("{} ({reason})", release.status),
        None => release.status.to_string(),
    };
    let pairs = [
        ("Description", release.description.clone()),
        ("Status", status),
        (
            "Current",
            if release.current { "yes" } else { "no" }.to_owned(),
        ),
        ("Commit", table::or_dash(release.commit.clone())),
        ("Image", release.image.clone()),
        ("By", release.created_by.clone()),
        ("Created", table::time(release.created_at)),
    ];
    session.print(&format!(
        "=== {app} {}\n{}",
        shown_version(&release),
        table::render_pairs(&pairs)
    ))
}

#[cfg(test)]
mod tests {
    use slipway_types::api::ReleaseStatus;
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn marks_the_current_release() {
        let release = |version: &str, current, status| ReleaseInfo {
            version: version.to_owned(),
            description: format!("Deploy {version}"),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            image: format!("slipway/myapp:{version}"),
            created_by: "admin".to_owned(),
            created_at: OffsetDateTime::from_unix_timestamp(1_793_613_845).unwrap(),
            status,
            status_reason: None,
            current,
        };
        let mut failed = release("1.0.2", false, ReleaseStatus::Failed);
        failed.commit = None;
        let rendered = render(&[
            failed,
            release("1.0.1", true, ReleaseStatus::Succeeded),
            release("1.0.0", false, ReleaseStatus::RolledBack),
        ]);
        assert_eq!(
            rendered,
            "   VERSION          STATUS       DESCRIPTION   BY     CREATED\n   \
             v1.0.2           failed       Deploy 1.0.2  admin  2026-11-02T10:04:05Z\n\
             *  v1.0.1+g0123456  succeeded    Deploy 1.0.1  admin  2026-11-02T10:04:05Z\n   \
             v1.0.0+g0123456  rolled back  Deploy 1.0.0  admin  2026-11-02T10:04:05Z\n"
        );
    }
}
