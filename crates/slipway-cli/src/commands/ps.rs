//! `ps`, `ps:scale`, `ps:resize`, `ps:restart`, `ps:stop`.

use anyhow::bail;
use slipway_types::api::{FormationPatch, FormationUpdate, FormationView, ProcessState};
use slipway_types::app_json::MAX_QUANTITY;
use slipway_types::{ProcessType, parse_memory};

use crate::cli::Session;
use crate::table::Table;

pub(crate) async fn show(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.formation(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&render(&view))
}

/// The formation, then one line per process; crashed ones say how often they restarted.
fn render(view: &FormationView) -> String {
    let mut formation = Table::new(&["TYPE", "QUANTITY", "SIZE", "COMMAND"]);
    for entry in &view.formation {
        formation.row(vec![
            entry.process.clone(),
            entry.quantity.to_string(),
            entry.size.clone(),
            entry.command.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let mut processes = Table::new(&["PROCESS", "STATE", "RELEASE", "SINCE", "RESTARTS"]);
    for process in &view.processes {
        let state = match (process.state, process.exit_code) {
            (ProcessState::Up, _) => "up".to_owned(),
            (ProcessState::Crashed, Some(code)) => format!("crashed (exit {code})"),
            (ProcessState::Crashed, None) => "crashed".to_owned(),
        };
        processes.row(vec![
            process.dyno.clone(),
            state,
            if process.canary {
                format!("v{} (canary)", process.release)
            } else {
                format!("v{}", process.release)
            },
            process.started_at.clone().unwrap_or_else(|| "-".to_owned()),
            process.restarts.to_string(),
        ]);
    }
    format!("{}\n{}", formation.render(), processes.render())
}

pub(crate) async fn scale(session: &mut Session<'_>, changes: &[String]) -> anyhow::Result<()> {
    let mut updates = Vec::new();
    for change in changes {
        let (process, quantity) = split(change, "TYPE=N, like web=2")?;
        let quantity: u32 = match quantity.parse() {
            Ok(n) if n <= MAX_QUANTITY => n,
            _ => bail!("`{change}`: the quantity must be a whole number from 0 to {MAX_QUANTITY}"),
        };
        updates.push(FormationUpdate {
            process,
            quantity: Some(quantity),
            size: None,
        });
    }
    apply(session, "Scaling", updates).await
}

pub(crate) async fn resize(session: &mut Session<'_>, changes: &[String]) -> anyhow::Result<()> {
    let mut updates = Vec::new();
    for change in changes {
        let (process, size) = split(change, "TYPE=SIZE, like web=1G")?;
        if let Err(message) = parse_memory(&size) {
            bail!("`{change}`: {message}");
        }
        updates.push(FormationUpdate {
            process,
            quantity: None,
            size: Some(size),
        });
    }
    apply(session, "Resizing", updates).await
}

pub(crate) async fn stop(session: &mut Session<'_>, process: &str) -> anyhow::Result<()> {
    let process = checked_type(process)?;
    let updates = vec![FormationUpdate {
        process,
        quantity: Some(0),
        size: None,
    }];
    apply(session, "Stopping", updates).await
}

pub(crate) async fn restart(
    session: &mut Session<'_>,
    process: Option<&str>,
) -> anyhow::Result<()> {
    let process = process.map(checked_type).transpose()?;
    let app = session.app().await?;
    let client = session.client()?;
    let what = process
        .clone()
        .unwrap_or_else(|| "all processes".to_owned());
    session.print(&format!("Restarting {what} of {app}... "))?;
    match client.restart(&app, process.as_deref()).await {
        Ok(view) => finish(session, &view),
        Err(error) => {
            session.print("failed\n")?;
            Err(error.into())
        }
    }
}

async fn apply(
    session: &mut Session<'_>,
    verb: &str,
    updates: Vec<FormationUpdate>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let what: Vec<String> = updates
        .iter()
        .map(|u| match (&u.quantity, &u.size) {
            (Some(quantity), _) => format!("{}={quantity}", u.process),
            (None, Some(size)) => format!("{}={size}", u.process),
            (None, None) => u.process.clone(),
        })
        .collect();
    session.print(&format!("{verb} {} of {app}... ", what.join(" ")))?;
    match client
        .update_formation(&app, &FormationPatch { updates })
        .await
    {
        Ok(view) => finish(session, &view),
        Err(error) => {
            session.print("failed\n")?;
            Err(error.into())
        }
    }
}

fn finish(session: &mut Session<'_>, view: &FormationView) -> anyhow::Result<()> {
    session.print("done\n")?;
    if session.global.json {
        return session.print_json(view);
    }
    session.print(&render(view))
}

fn split(change: &str, form: &str) -> anyhow::Result<(String, String)> {
    let Some((process, value)) = change.split_once('=') else {
        bail!("`{change}` is not {form}");
    };
    Ok((checked_type(process)?, value.trim().to_owned()))
}

fn checked_type(process: &str) -> anyhow::Result<String> {
    Ok(process.trim().parse::<ProcessType>()?.to_string())
}

#[cfg(test)]
mod tests {
    use slipway_types::api::{FormationInfo, ProcessInfo};

    use super::*;

    #[test]
    fn changes_name_what_is_wrong() {
        assert_eq!(
            split("web=3", "TYPE=N").unwrap(),
            ("web".to_owned(), "3".to_owned())
        );
        assert!(
            split("web", "TYPE=N")
                .unwrap_err()
                .to_string()
                .contains("`web`")
        );
        assert!(
            split("Web=1", "TYPE=N")
                .unwrap_err()
                .to_string()
                .contains("`Web`")
        );
    }

    #[test]
    fn renders_formation_and_processes() {
        let view = FormationView {
            formation: vec![FormationInfo {
                process: "web".into(),
                quantity: 2,
                size: "512M".into(),
                command: Some("gunicorn app:app".into()),
            }],
            processes: vec![
                ProcessInfo {
                    dyno: "web.1".into(),
                    release: "1.0.0".into(),
                    state: ProcessState::Up,
                    started_at: Some("2026-11-22T00:00:00Z".into()),
                    exit_code: None,
                    restarts: 0,
                    canary: false,
                },
                ProcessInfo {
                    dyno: "web.2".into(),
                    release: "1.0.0".into(),
                    state: ProcessState::Crashed,
                    started_at: None,
                    exit_code: Some(1),
                    restarts: 3,
                    canary: false,
                },
            ],
        };
        let text = render(&view);
        assert!(
            text.contains("web   2         512M  gunicorn app:app"),
            "{text}"
        );
        assert!(text.contains("web.2    crashed (exit 1)"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("web.2") && l.ends_with('3')),
            "{text}"
        );
    }
}
