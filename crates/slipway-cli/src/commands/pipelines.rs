//! `pipelines`, `pipelines:create`, `pipelines:info`, `pipelines:destroy`, `pipelines:add`,
//! `pipelines:remove`, `pipelines:promote`.

use anyhow::anyhow;
use slipway_types::Stage;
use slipway_types::pipeline::{PipelineInfo, PromoteResult};

use crate::cli::Session;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let pipelines = session.client()?.list_pipelines().await?;
    if session.global.json {
        return session.print_json(&pipelines);
    }
    session.print(&render_list(&pipelines))
}

fn render_list(pipelines: &[PipelineInfo]) -> String {
    let mut rows = Table::new(&["NAME", "STAGING", "PRODUCTION", "OWNER"]);
    for pipeline in pipelines {
        let at = |stage: Stage| {
            let apps: Vec<&str> = pipeline
                .apps
                .iter()
                .filter(|app| app.stage == stage)
                .map(|app| app.app.as_str())
                .collect();
            if apps.is_empty() {
                "-".to_owned()
            } else {
                apps.join(", ")
            }
        };
        rows.row(vec![
            pipeline.name.clone(),
            at(Stage::Staging),
            at(Stage::Production),
            pipeline.owner.clone(),
        ]);
    }
    rows.render()
}

pub(crate) async fn create(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    let pipeline = session.client()?.create_pipeline(name).await?;
    if session.global.json {
        return session.print_json(&pipeline);
    }
    session.print(&format!(
        "Created pipeline {name}: add apps with `slipway pipelines:add APP --pipeline {name} --stage staging|production`\n"
    ))
}

pub(crate) async fn info(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    let pipeline = session.client()?.get_pipeline(name).await?;
    if session.global.json {
        return session.print_json(&pipeline);
    }
    session.print(&render_info(&pipeline))
}

fn render_info(pipeline: &PipelineInfo) -> String {
    let mut rows = Table::new(&["STAGE", "APP", "RELEASE"]);
    for app in &pipeline.apps {
        rows.row(vec![
            app.stage.to_string(),
            app.app.clone(),
            table::or_dash(app.current_release.as_deref().map(table::version)),
        ]);
    }
    let apps = if pipeline.apps.is_empty() {
        "no apps yet\n".to_owned()
    } else {
        rows.render()
    };
    format!(
        "=== {}\n{}\n{apps}",
        pipeline.name,
        table::render_pairs(&[
            ("Owner", pipeline.owner.clone()),
            ("Created", table::time(pipeline.created_at)),
        ])
    )
}

pub(crate) async fn destroy(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    session.client()?.destroy_pipeline(name).await?;
    session.print(&format!(
        "Destroyed pipeline {name}; its apps keep running\n"
    ))
}

/// The app is the argument, else `-a`, else the `platform` git remote's.
pub(crate) async fn add(
    session: &mut Session<'_>,
    app: Option<String>,
    pipeline: &str,
    stage: &str,
) -> anyhow::Result<()> {
    let app = match app {
        Some(app) => app,
        None => session.app().await?,
    };
    let info = session
        .client()?
        .add_pipeline_app(pipeline, &app, stage)
        .await?;
    if session.global.json {
        return session.print_json(&info);
    }
    session.print(&format!("Added {app} to {pipeline} as {stage}\n"))
}

/// Finds the app's pipeline among those the caller sees, then takes the app out of it.
pub(crate) async fn remove(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let pipeline = client
        .list_pipelines()
        .await?
        .into_iter()
        .find(|pipeline| pipeline.apps.iter().any(|member| member.app == app))
        .ok_or_else(|| anyhow!("app `{app}` is not in a pipeline"))?;
    client.remove_pipeline_app(&pipeline.name, &app).await?;
    session.print(&format!("Removed {app} from {}\n", pipeline.name))
}

/// Prints "Promoting shop-staging to production... done" and then each release it cut.
pub(crate) async fn promote(session: &mut Session<'_>, to: &[String]) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let json = session.global.json;
    if !json {
        let targets = if to.is_empty() {
            "production".to_owned()
        } else {
            to.join(", ")
        };
        session.print(&format!("Promoting {app} to {targets}... "))?;
    }
    let result = match client.promote(&app, to).await {
        Ok(result) => result,
        Err(error) => {
            if !json {
                session.print("failed\n")?;
            }
            return Err(error.into());
        }
    };
    if json {
        return session.print_json(&result);
    }
    session.print(&format!("done\n{}", render_promoted(&result)))
}

fn render_promoted(result: &PromoteResult) -> String {
    let mut rows = Table::new(&["APP", "RELEASE", "DESCRIPTION"]);
    for promotion in &result.promoted {
        rows.row(vec![
            promotion.app.clone(),
            table::version(&promotion.version),
            promotion.description.clone(),
        ]);
    }
    rows.render()
}

#[cfg(test)]
mod tests {
    use slipway_types::pipeline::{PipelineApp, Promotion};
    use time::OffsetDateTime;

    use super::*;

    fn shop() -> PipelineInfo {
        let member = |app: &str, stage, release: Option<&str>| PipelineApp {
            app: app.to_owned(),
            stage,
            current_release: release.map(str::to_owned),
        };
        PipelineInfo {
            name: "shop".to_owned(),
            owner: "lead@example.com".to_owned(),
            created_at: OffsetDateTime::from_unix_timestamp(1_793_613_845).unwrap(),
            apps: vec![
                member("shop-staging", Stage::Staging, Some("1.2.0")),
                member("shop-eu", Stage::Production, Some("1.1.0")),
                member("shop-us", Stage::Production, None),
            ],
        }
    }

    #[test]
    fn add_takes_the_app_as_argument_or_with_a_and_promote_a_list() {
        use clap::Parser;

        use crate::cli::{Cli, ClientCommand};

        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("slipway").chain(args.iter().copied())).unwrap()
        };
        let cli = parse(&[
            "pipelines:add",
            "web-stg",
            "--pipeline",
            "shop",
            "--stage",
            "staging",
        ]);
        assert!(
            matches!(cli.command, ClientCommand::PipelinesAdd { app_name: Some(app), pipeline, stage }
            if app == "web-stg" && pipeline == "shop" && stage == "staging")
        );
        let cli = parse(&[
            "pipelines:add",
            "-a",
            "web",
            "-p",
            "shop",
            "-s",
            "production",
        ]);
        assert_eq!(cli.global.app.as_deref(), Some("web"));
        assert!(matches!(
            cli.command,
            ClientCommand::PipelinesAdd { app_name: None, .. }
        ));
        let cli = parse(&["pipelines:promote", "-a", "web-stg", "--to", "eu,us"]);
        assert!(
            matches!(cli.command, ClientCommand::PipelinesPromote { to } if to == ["eu", "us"])
        );
        let cli = parse(&["pipelines:promote", "-a", "web-stg"]);
        assert!(matches!(cli.command, ClientCommand::PipelinesPromote { to } if to.is_empty()));
    }

    #[test]
    fn lists_apps_by_stage() {
        let mut empty = shop();
        empty.name = "blog".to_owned();
        empty.apps.clear();
        assert_eq!(
            render_list(&[empty, shop()]),
            "NAME  STAGING       PRODUCTION        OWNER\n\
             blog  -             -                 lead@example.com\n\
             shop  shop-staging  shop-eu, shop-us  lead@example.com\n"
        );
    }

    #[test]
    fn info_shows_each_app_with_its_release() {
        assert_eq!(
            render_info(&shop()),
            "=== shop\nOwner:    lead@example.com\nCreated:  2026-11-02T10:04:05Z\n\n\
             STAGE       APP           RELEASE\n\
             staging     shop-staging  v1.2.0\n\
             production  shop-eu       v1.1.0\n\
             production  shop-us       -\n"
        );
    }

    #[test]
    fn a_promotion_lists_the_releases_it_cut() {
        let result = PromoteResult {
            pipeline: "shop".to_owned(),
            from: "shop-staging".to_owned(),
            version: "1.2.0".to_owned(),
            promoted: vec![Promotion {
                app: "shop-eu".to_owned(),
                version: "1.2.0".to_owned(),
                description: "Promoted from shop-staging 1.2.0".to_owned(),
                image: "slipway/shop-eu:1.2.0".to_owned(),
            }],
        };
        assert_eq!(
            render_promoted(&result),
            "APP      RELEASE  DESCRIPTION\n\
             shop-eu  v1.2.0   Promoted from shop-staging 1.2.0\n"
        );
    }
}
