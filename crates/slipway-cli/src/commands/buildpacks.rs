//! `buildpacks`, `buildpacks:set`, `buildpacks:clear`, `builds:cache:purge`.

use crate::cli::Session;

/// One buildpack a line, numbered in the order they run.
fn listing(app: &str, buildpacks: &[String]) -> String {
    if buildpacks.is_empty() {
        return format!(
            "{app} has no buildpacks set: a push uses BUILDPACK_URL, .buildpacks, the Dockerfile or detection\n"
        );
    }
    let mut text = format!("=== {app} buildpacks\n");
    for (index, buildpack) in buildpacks.iter().enumerate() {
        text.push_str(&format!("{}. {buildpack}\n", index + 1));
    }
    text
}

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let buildpacks = session.client()?.get_buildpacks(&app).await?;
    if session.global.json {
        return session.print_json(&buildpacks);
    }
    session.print(&listing(&app, &buildpacks.buildpacks))
}

pub(crate) async fn set(session: &mut Session<'_>, urls: &[String]) -> anyhow::Result<()> {
    let app = session.app().await?;
    let buildpacks = session.client()?.set_buildpacks(&app, urls).await?;
    if session.global.json {
        return session.print_json(&buildpacks);
    }
    let mut text = listing(&app, &buildpacks.buildpacks);
    text.push_str("The next push builds with them.\n");
    session.print(&text)
}

pub(crate) async fn clear(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.clear_buildpacks(&app).await?;
    session.print(&format!(
        "Cleared the buildpacks of {app}: the next push detects them again.\n"
    ))
}

pub(crate) async fn purge_cache(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.purge_build_cache(&app).await?;
    session.print(&format!(
        "Purged the build cache of {app}: the next push builds from scratch.\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_number_the_buildpacks_or_say_there_are_none() {
        assert_eq!(
            listing(
                "web",
                &["nodejs".to_owned(), "https://e.com/bp.git#v1".to_owned()]
            ),
            "=== web buildpacks\n1. nodejs\n2. https://e.com/bp.git#v1\n"
        );
        assert!(listing("web", &[]).starts_with("web has no buildpacks set"));
    }
}
