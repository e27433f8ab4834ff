//! The admin pages: the platform's status, users, every app and the audit log, read through
//! the admin API's own handlers (the route table keeps them to admins).

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{Layout, PageResult, Session, graphs, ok, when};
use crate::app::AppState;
use crate::controllers::{admin, metrics};

const TABS: [(&str, &str); 4] = [
    ("", "Status"),
    ("/users", "Users"),
    ("/apps", "Apps"),
    ("/audit", "Audit log"),
];

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    layout: Layout,
    tabs: &'static [(&'static str, &'static str)],
    tab: &'static str,
    facts: Vec<(&'static str, String)>,
    heading: Option<&'static str>,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    filter_app: String,
    filter_user: String,
    /// Inline SVG charts of the platform's last hour, on the status tab.
    graphs: Vec<String>,
}

impl AdminPage {
    fn new(session: &Session, tab: &'static str, title: &str) -> Self {
        Self {
            layout: session.layout(title),
            tabs: &TABS,
            tab,
            facts: Vec::new(),
            heading: None,
            columns: Vec::new(),
            rows: Vec::new(),
            filter_app: String::new(),
            filter_user: String::new(),
            graphs: Vec::new(),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

pub async fn status(State(state): State<AppState>, session: Session) -> PageResult {
    let Json(status) = admin::status(State(state.clone())).await?;
    let platform = metrics::platform_metrics(&state, metrics::DEFAULT_SINCE).await?;
    let mut page = AdminPage::new(&session, "", "Platform status");
    page.graphs = graphs::platform_charts(&platform)
        .iter()
        .map(graphs::Chart::svg)
        .collect();
    page.facts = vec![
        ("Version", status.version),
        ("Up for", format!("{} s", status.uptime_seconds)),
        ("Docker", status.docker),
        ("Apps", status.apps.to_string()),
        ("Users", status.users.to_string()),
        ("Images", mib(status.disk.images_bytes)),
        (
            "Volumes",
            status.disk.volumes_bytes.map(mib).unwrap_or_default(),
        ),
        ("Data dir", mib(status.disk.data_dir_bytes)),
        ("Builds running", platform.builds_running.to_string()),
        (
            "Disk free",
            platform.disk.map_or_else(String::new, |disk| {
                format!("{} of {}", mib(disk.available_bytes), mib(disk.total_bytes))
            }),
        ),
    ];
    page.heading = Some("Certificates and failed releases (24 h)");
    page.columns = vec!["What", "Name", "Status", "When"];
    page.rows = status
        .certificates
        .into_iter()
        .map(|cert| {
            vec![
                "certificate".to_owned(),
                cert.domain,
                cert.status.as_str().to_owned(),
                cert.not_after.map(when).unwrap_or_default(),
            ]
        })
        .chain(status.failed_releases.into_iter().map(|release| {
            vec![
                "failed release".to_owned(),
                format!("{} {}", release.app, release.version),
                release.description,
                when(release.at),
            ]
        }))
        .collect();
    ok(&page)
}

pub async fn users(State(state): State<AppState>, session: Session) -> PageResult {
    let Json(users) = admin::users(State(state)).await?;
    let mut page = AdminPage::new(&session, "/users", "Users");
    page.columns = vec!["Email", "Role", "Created"];
    page.rows = users
        .into_iter()
        .map(|user| vec![user.email, user.role, when(user.created_at)])
        .collect();
    ok(&page)
}

pub async fn apps(State(state): State<AppState>, session: Session) -> PageResult {
    let Json(apps) = admin::apps(State(state)).await?;
    let mut page = AdminPage::new(&session, "/apps", "Every app");
    page.columns = vec![
        "App",
        "Owner",
        "Release",
        "Containers",
        "Memory",
        "Add-ons",
        "Domains",
    ];
    page.rows = apps
        .into_iter()
        .map(|app| {
            vec![
                app.name,
                app.owner,
                app.current_release.unwrap_or_default(),
                app.containers.to_string(),
                mib(app.memory_bytes),
                app.addons.to_string(),
                app.domains.to_string(),
            ]
        })
        .collect();
    ok(&page)
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    app: String,
    #[serde(default)]
    user: String,
}

pub async fn audit(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<AuditFilter>,
) -> PageResult {
    let query: admin::AuditQuery = serde_json::from_value(serde_json::json!({
        "limit": 200,
        "app": Some(filter.app.trim()).filter(|a| !a.is_empty()),
        "user": Some(filter.user.trim()).filter(|u| !u.is_empty()),
    }))
    .map_err(crate::error::ApiError::internal)?;
    let Json(events) = admin::audit(State(state), Query(query)).await?;
    let mut page = AdminPage::new(&session, "/audit", "Audit log");
    page.columns = vec![
        "When", "Who", "Action", "Target", "From", "Detail", "Outcome",
    ];
    page.rows = events
        .into_iter()
        .map(|event| {
            vec![
                when(event.at),
                event.actor,
                event.action,
                event.target,
                event.source_ip.unwrap_or_default(),
                event.detail.unwrap_or_default(),
                event
                    .outcome
                    .map(|o| o.as_str().to_owned())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    page.filter_app = filter.app;
    page.filter_user = filter.user;
    ok(&page)
}
