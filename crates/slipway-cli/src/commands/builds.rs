//! `builds`, `builds:output`.

use crate::cli::Session;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let builds = session.client()?.list_builds(&app).await?;
    if session.global.json {
        return session.print_json(&builds);
    }
    let mut rows = Table::new(&["ID", "STATUS", "COMMIT", "RELEASE", "CREATED", "FINISHED"]);
    for build in builds {
        rows.row(vec![
            build.id.to_string(),
            build.status.to_string(),
            table::short_sha(&build.commit),
            table::or_dash(build.release.as_deref().map(table::version)),
            table::time(build.created_at),
            table::or_dash(build.finished_at.map(table::time)),
        ]);
    }
    session.print(&rows.render())
}

/// Prints the log as the builder wrote it, so it reads like the `git push` that ran it.
pub(crate) async fn output(session: &mut Session<'_>, id: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let build = session.client()?.build_output(&app, id).await?;
    if session.global.json {
        return session.print_json(&build);
    }
    let mut text = build.output;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    session.print(&text)
}
