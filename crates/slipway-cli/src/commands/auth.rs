//! `login`, `logout`, `whoami`.

use anyhow::{Context, anyhow};
use reqwest::Url;

use crate::cli::Session;
use crate::client::Client;
use crate::login_file::LoginFile;
use crate::netrc;

/// Checks the token against the server before storing anything, so a typo never replaces a
/// working login.
pub(crate) async fn login(session: &mut Session<'_>) -> anyhow::Result<()> {
    let url = session.server_url();
    let token = session
        .global
        .token
        .clone()
        .ok_or_else(|| anyhow!("pass --token: email login is not available yet"))?;
    let host = host_of(&url)?;
    let me = Client::new(&url, Some(token.expose().to_owned()))?
        .whoami()
        .await?;

    let env = session.env;
    if let Some(previous) = &session.login {
        let previous_host = host_of(&previous.url)?;
        if previous_host != host {
            netrc::forget(&env.netrc(), &previous_host)?;
        }
    }
    let login = LoginFile {
        url: url.clone(),
        token,
    };
    login.save(&env.login_file())?;
    netrc::store(&env.netrc(), &host, login.token.expose())?;
    session.login = Some(login);
    session.print(&format!("Logged in to {url} as {}\n", me.email))
}

pub(crate) fn logout(session: &mut Session<'_>) -> anyhow::Result<()> {
    let Some(login) = session.login.take() else {
        return session.print("Not logged in\n");
    };
    let env = session.env;
    netrc::forget(&env.netrc(), &host_of(&login.url)?)?;
    crate::files::remove_optional(&env.login_file())?;
    session.print(&format!("Logged out of {}\n", login.url))
}

pub(crate) async fn whoami(session: &mut Session<'_>) -> anyhow::Result<()> {
    let me = session.client()?.whoami().await?;
    if session.global.json {
        return session.print_json(&me);
    }
    session.print(&format!("{}\n", me.email))
}

/// The netrc machine name for a server: its host, without the port (curl matches on the host).
fn host_of(url: &str) -> anyhow::Result<String> {
    let parsed = Url::parse(url).with_context(|| format!("server url `{url}` is invalid"))?;
    parsed
        .host_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("server url `{url}` has no host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_hosts_drop_scheme_port_and_path() {
        assert_eq!(host_of("http://127.0.0.1:7070").unwrap(), "127.0.0.1");
        assert_eq!(
            host_of("https://paas.example.test/prefix").unwrap(),
            "paas.example.test"
        );
        assert!(host_of("nonsense").is_err());
    }
}
