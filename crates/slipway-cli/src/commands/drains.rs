//! `drains`, `drains:add`, `drains:remove`: where the app's log lines are shipped. Drain URLs
//! may hold credentials; the server and this command only ever show them redacted.

use anyhow::bail;
use slipway_types::drains::{DrainInfo, DrainUrl};

use crate::cli::Session;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let drains = session.client()?.list_drains(&app).await?;
    if session.global.json {
        return session.print_json(&drains);
    }
    if drains.is_empty() {
        return session.print(&format!(
            "{app} has no log drains: add one with `slipway drains:add syslog+tls://logs.example.com:6514`\n"
        ));
    }
    let mut rows = Table::new(&[
        "ID",
        "URL",
        "DELIVERED",
        "DROPPED",
        "BUFFERED",
        "LAST ERROR",
    ]);
    for drain in drains {
        rows.row(vec![
            drain.id,
            drain.url,
            drain.delivered.to_string(),
            drain.dropped.to_string(),
            drain.buffered.to_string(),
            table::or_dash(drain.last_error),
        ]);
    }
    session.print(&rows.render())
}

pub(crate) async fn add(session: &mut Session<'_>, url: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let drain = session.client()?.add_drain(&app, url).await?;
    if session.global.json {
        return session.print_json(&drain);
    }
    session.print(&format!(
        "Added drain {} ({}) to {app}: every line of its log is shipped there from now on\n",
        drain.url, drain.id
    ))
}

/// `drain` is an id from `drains` or the URL as it was added.
pub(crate) async fn remove(session: &mut Session<'_>, drain: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let drains = client.list_drains(&app).await?;
    let found = find(&drains, drain)?;
    let (id, url) = (found.id.clone(), found.url.clone());
    client.remove_drain(&app, &id).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": id }));
    }
    session.print(&format!("Removed drain {url} ({id}) from {app}\n"))
}

/// The drain an id or a URL names. A URL is matched by its redacted form, so it never has to
/// travel to the server; when several drains share that form, the id must be used.
fn find<'a>(drains: &'a [DrainInfo], wanted: &str) -> anyhow::Result<&'a DrainInfo> {
    if let Some(drain) = drains.iter().find(|drain| drain.id == wanted) {
        return Ok(drain);
    }
    let shown = match DrainUrl::parse(wanted) {
        Ok(url) => url.redacted(),
        Err(_) if wanted.starts_with("d.") => {
            bail!("the app has no drain `{wanted}`: see `slipway drains`")
        }
        Err(error) => bail!("{error}"),
    };
    let matching: Vec<&DrainInfo> = drains.iter().filter(|drain| drain.url == shown).collect();
    match matching.as_slice() {
        [drain] => Ok(drain),
        [] => bail!("the app has no drain {shown}: see `slipway drains`"),
        _ => bail!("several drains look like {shown}: remove one by its id from `slipway drains`"),
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn drain(id: &str, url: &str) -> DrainInfo {
        DrainInfo {
            id: id.into(),
            url: DrainUrl::parse(url).unwrap().redacted(),
            kind: DrainUrl::parse(url).unwrap().kind(),
            delivered: 0,
            dropped: 0,
            buffered: 0,
            last_error: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_drain_url_is_not_taken_for_the_server_url() {
        use clap::Parser;

        let url = "https://user:pw@logs.example.com/in";
        let cli =
            crate::cli::Cli::try_parse_from(["slipway", "drains:add", url, "-a", "web"]).unwrap();
        assert_eq!(cli.global.url, None);
        assert!(matches!(
            cli.command,
            crate::cli::ClientCommand::DrainsAdd { drain_url } if drain_url == url
        ));
    }

    #[test]
    fn a_drain_is_found_by_id_or_by_its_url_without_showing_secrets() {
        let drains = [
            drain("d.1", "https://u:one@logs.example.com/in"),
            drain("d.2", "syslog+tls://logs.example.com:6514"),
            drain("d.3", "https://u:two@logs.example.com/in"),
        ];
        assert_eq!(find(&drains, "d.2").unwrap().id, "d.2");
        assert_eq!(
            find(&drains, "syslog+tls://logs.example.com:6514")
                .unwrap()
                .id,
            "d.2"
        );
        let error = find(&drains, "https://u:one@logs.example.com/in")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("several drains") && !error.contains("one@"),
            "{error}"
        );
        let error = find(&drains, "https://u:zzz@other.example.com/")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no drain") && !error.contains("zzz"),
            "{error}"
        );
        assert!(
            find(&drains, "d.9")
                .unwrap_err()
                .to_string()
                .contains("no drain `d.9`")
        );
    }
}
