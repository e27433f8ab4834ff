//! `logs`.

use futures_util::StreamExt;

use crate::cli::Session;
use crate::client::LogsQuery;

/// Prints each line as it arrives, flushed, so `slipway logs -t | grep …` sees lines at once.
pub(crate) async fn show(session: &mut Session<'_>, query: &LogsQuery) -> anyhow::Result<()> {
    let app = session.app().await?;
    let lines = session.client()?.logs(&app, query).await?;
    let mut lines = std::pin::pin!(lines);
    while let Some(line) = lines.next().await {
        let line = line?;
        let mut text = if session.global.json {
            serde_json::to_string(&line)?
        } else {
            line.render()
        };
        text.push('\n');
        session.print(&text)?;
    }
    Ok(())
}
