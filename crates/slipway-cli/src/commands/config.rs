//! `config`, `config:get`, `config:set`, `config:unset`.

use anyhow::{anyhow, bail};
use slipway_types::ConfigKey;
use slipway_types::api::{ConfigChanged, ConfigPatch};

use crate::cli::Session;
use crate::table;

/// `KEY=value` lines, ready to paste into a `.env` file.
pub(crate) async fn show(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let config = session.client()?.get_config(&app).await?;
    if session.global.json {
        return session.print_json(&config);
    }
    let lines: String = config
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    session.print(&lines)
}

pub(crate) async fn get(session: &mut Session<'_>, key: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let mut config = session.client()?.get_config(&app).await?;
    let value = config
        .remove(key)
        .ok_or_else(|| anyhow!("config var `{key}` is not set for app `{app}`"))?;
    session.print(&format!("{value}\n"))
}

pub(crate) async fn set(session: &mut Session<'_>, vars: &[String]) -> anyhow::Result<()> {
    let mut changes = Vec::new();
    for var in vars {
        let (key, value) = parse_assignment(var)?;
        changes.push((key, Some(value)));
    }
    change(session, "Setting", changes).await
}

pub(crate) async fn unset(session: &mut Session<'_>, keys: &[String]) -> anyhow::Result<()> {
    let mut changes = Vec::new();
    for key in keys {
        changes.push((parse_key(key)?, None));
    }
    change(session, "Unsetting", changes).await
}

/// Sends the changes and waits for the release they cut, which can take a while: the progress
/// line, naming the keys in the order given, is printed first so the user sees what is being
/// waited for.
async fn change(
    session: &mut Session<'_>,
    verb: &str,
    changes: Vec<(String, Option<String>)>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let json = session.global.json;
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in &changes {
        if !keys.contains(&key.as_str()) {
            keys.push(key);
        }
    }
    if !json {
        let line = format!("{verb} {} and restarting {app}... ", keys.join(", "));
        session.print(&line)?;
    }
    let patch: ConfigPatch = changes.iter().cloned().collect();
    let changed = match client.patch_config(&app, &patch).await {
        Ok(changed) => changed,
        Err(err) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(err.into());
        }
    };
    if json {
        return session.print_json(&changed);
    }
    session.print(&outcome(&changed))
}

fn outcome(changed: &ConfigChanged) -> String {
    match &changed.release {
        Some(version) => format!("done, {}\n", table::version(version)),
        None => "done, nothing changed\n".to_owned(),
    }
}

/// `KEY=value`: the value is everything after the first `=`, so it may contain `=` itself.
fn parse_assignment(arg: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = arg.split_once('=') else {
        bail!("`{arg}` has no value: use {arg}=VALUE");
    };
    Ok((parse_key(key)?, value.to_owned()))
}

fn parse_key(key: &str) -> anyhow::Result<String> {
    Ok(key.parse::<ConfigKey>()?.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("DATABASE_URL=postgres://u:p@h/db?sslmode=require").unwrap(),
            (
                "DATABASE_URL".to_owned(),
                "postgres://u:p@h/db?sslmode=require".to_owned()
            )
        );
        assert_eq!(
            parse_assignment("EMPTY=").unwrap(),
            ("EMPTY".to_owned(), String::new())
        );
        assert_eq!(
            parse_assignment("B64=YQ==").unwrap(),
            ("B64".to_owned(), "YQ==".to_owned())
        );
    }

    #[test]
    fn a_key_without_a_value_is_named_in_the_error() {
        let err = parse_assignment("DEBUG").unwrap_err();
        assert_eq!(err.to_string(), "`DEBUG` has no value: use DEBUG=VALUE");
    }

    #[test]
    fn invalid_keys_are_refused_before_sending() {
        let err = parse_assignment("1BAD=x").unwrap_err();
        assert!(err.to_string().contains("config key `1BAD`"), "{err}");
        assert!(parse_key("GOOD_1").is_ok());
    }

    #[test]
    fn outcome_names_the_new_release() {
        let mut changed = ConfigChanged {
            config: Default::default(),
            release: Some("1.0.1".to_owned()),
        };
        assert_eq!(outcome(&changed), "done, v1.0.1\n");
        changed.release = None;
        assert_eq!(outcome(&changed), "done, nothing changed\n");
    }
}
