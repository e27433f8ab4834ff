//! `login`, `logout`, `whoami`.

use anyhow::{Context, anyhow};
use reqwest::Url;

use crate::cli::Session;
use crate::client::Client;
use crate::login_file::LoginFile;
use crate::netrc;
use crate::token::Token;

/// Checks the token against the server before storing anything, so a typo never replaces a
/// working login.
pub(crate) async fn login(
    session: &mut Session<'_>,
    password_login: Option<(String, Token)>,
) -> anyhow::Result<()> {
    let url = session.server_url();
    let token = match password_login {
        Some((email, password)) => {
            let issued = Client::new(&url, None)?
                .login(&email, password.expose())
                .await?;
            Token::from(issued.token)
        }
        None => session.global.token.clone().ok_or_else(|| {
            anyhow!(
                "pass --token, or --email with --password-stdin and the password on standard input"
            )
        })?,
    };
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

/// Revokes the token on the server (a token that no longer works is fine), then forgets it.
pub(crate) async fn logout(session: &mut Session<'_>) -> anyhow::Result<()> {
    let Some(login) = session.login.take() else {
        return session.print("Not logged in\n");
    };
    let revoked = Client::new(&login.url, Some(login.token.expose().to_owned()))?
        .logout()
        .await;
    if let Err(error) = revoked
        && !error.is_unauthorized()
    {
        session.login = Some(login);
        return Err(error.into());
    }
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
