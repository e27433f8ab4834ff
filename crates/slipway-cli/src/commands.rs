//! One module per resource; `dispatch` maps each subcommand to its function.

mod addons;
mod apps;
mod auth;
mod buildpacks;
mod builds;
mod canary;
mod config;
mod domains;
mod drains;
mod keys;
mod logs;
mod metrics;
mod nodes;
mod pipelines;
mod ps;
mod releases;
mod run;
mod users;
mod webhooks;

use crate::cli::{ClientCommand, Session};
use crate::client::LogsQuery;

pub(crate) async fn dispatch(
    session: &mut Session<'_>,
    command: ClientCommand,
) -> anyhow::Result<()> {
    match command {
        ClientCommand::Login {
            email, password, ..
        } => auth::login(session, email.zip(password)).await,
        ClientCommand::Logout => auth::logout(session).await,
        ClientCommand::Tokens => users::tokens(session).await,
        ClientCommand::TokensCreate { scope, expires_in } => {
            users::create_token(session, &scope, expires_in.as_deref()).await
        }
        ClientCommand::TokensRevoke { id } => users::revoke_token(session, &id).await,
        ClientCommand::Access => users::access(session).await,
        ClientCommand::AccessAdd { email } => users::access_add(session, &email).await,
        ClientCommand::AccessRemove { email } => users::access_remove(session, &email).await,
        ClientCommand::AdminUsers => users::admin_users(session).await,
        ClientCommand::AdminUsersCreate {
            email,
            role,
            password,
            ..
        } => users::admin_create_user(session, &email, &role, password).await,
        ClientCommand::AdminUsersRemove { email } => {
            users::admin_remove_user(session, &email).await
        }
        ClientCommand::AdminApps => users::admin_apps(session).await,
        ClientCommand::AdminAudit { num, user } => {
            users::admin_audit(session, num, user.as_deref()).await
        }
        ClientCommand::AdminStatus => users::admin_status(session).await,
        ClientCommand::AdminNodes => nodes::list(session).await,
        ClientCommand::AdminNodesDrain { node } => nodes::set(session, &node, "drain").await,
        ClientCommand::AdminNodesActivate { node } => nodes::set(session, &node, "activate").await,
        ClientCommand::Whoami => auth::whoami(session).await,
        ClientCommand::Keys => keys::list(session).await,
        ClientCommand::KeysAdd { file } => keys::add(session, file.as_deref()).await,
        ClientCommand::KeysRemove { key } => keys::remove(session, &key).await,
        ClientCommand::Apps => apps::list(session).await,
        ClientCommand::AppsCreate { name } => apps::create(session, &name).await,
        ClientCommand::AppsInfo => apps::info(session).await,
        ClientCommand::AppsDestroy { confirm } => apps::destroy(session, confirm.as_deref()).await,
        ClientCommand::GitRemote { remote } => apps::git_remote(session, &remote).await,
        ClientCommand::Config => config::show(session).await,
        ClientCommand::ConfigGet { key } => config::get(session, &key).await,
        ClientCommand::ConfigSet { vars } => config::set(session, &vars).await,
        ClientCommand::ConfigUnset { keys } => config::unset(session, &keys).await,
        ClientCommand::Releases => releases::list(session).await,
        ClientCommand::ReleasesInfo { version } => releases::info(session, &version).await,
        ClientCommand::Logs {
            tail,
            num,
            source,
            process,
        } => {
            let query = LogsQuery {
                lines: Some(num),
                tail,
                source,
                process,
            };
            logs::show(session, &query).await
        }
        ClientCommand::Run {
            detach,
            no_tty,
            command,
        } => run::run(session, &command, detach, no_tty).await,
        ClientCommand::Builds => builds::list(session).await,
        ClientCommand::BuildsOutput { id } => builds::output(session, &id).await,
        ClientCommand::BuildsCachePurge => buildpacks::purge_cache(session).await,
        ClientCommand::Buildpacks => buildpacks::list(session).await,
        ClientCommand::BuildpacksSet { urls } => buildpacks::set(session, &urls).await,
        ClientCommand::BuildpacksClear => buildpacks::clear(session).await,
        ClientCommand::ReleasesRollback { version } => {
            releases::rollback(session, version.as_deref()).await
        }
        ClientCommand::ReleasesCanary {
            percent,
            duration,
            max_error_rate,
            max_p99,
            sticky,
        } => {
            let args = canary::CanaryArgs {
                percent,
                duration: &duration,
                max_error_rate: &max_error_rate,
                max_p99,
                sticky,
            };
            canary::set(session, &args).await
        }
        ClientCommand::ReleasesCanaryStatus => canary::status(session).await,
        ClientCommand::ReleasesCanaryPromote => canary::settle(session, "promote").await,
        ClientCommand::ReleasesCanaryAbort => canary::settle(session, "abort").await,
        ClientCommand::ReleasesCanaryOff => canary::off(session).await,
        ClientCommand::Ratelimit => canary::rate_limit(session).await,
        ClientCommand::RatelimitSet { rate, burst } => {
            canary::set_rate_limit(session, &rate, burst).await
        }
        ClientCommand::RatelimitClear => canary::clear_rate_limit(session).await,
        ClientCommand::Ps => ps::show(session).await,
        ClientCommand::PsScale { changes } => ps::scale(session, &changes).await,
        ClientCommand::PsResize { changes } => ps::resize(session, &changes).await,
        ClientCommand::PsRestart { process } => ps::restart(session, process.as_deref()).await,
        ClientCommand::PsStop { process } => ps::stop(session, &process).await,
        ClientCommand::Domains => domains::list(session).await,
        ClientCommand::DomainsAdd { hostname } => domains::add(session, &hostname).await,
        ClientCommand::DomainsRemove { hostname } => domains::remove(session, &hostname).await,
        ClientCommand::DomainsWait { hostname, timeout } => {
            domains::wait(session, &hostname, std::time::Duration::from_secs(timeout)).await
        }
        ClientCommand::Certs => domains::certs(session).await,
        ClientCommand::CertsAutoEnable => domains::auto(session, true).await,
        ClientCommand::CertsAutoDisable => domains::auto(session, false).await,
        ClientCommand::CertsAdd { chain, key } => domains::add_cert(session, &chain, &key).await,
        ClientCommand::Drains => drains::list(session).await,
        ClientCommand::Metrics { since } => metrics::show(session, &since).await,
        ClientCommand::DrainsAdd { drain_url } => drains::add(session, &drain_url).await,
        ClientCommand::DrainsRemove { drain } => drains::remove(session, &drain).await,
        ClientCommand::Webhooks => webhooks::list(session).await,
        ClientCommand::WebhooksAdd { endpoint, events } => {
            webhooks::add(session, &endpoint, events.as_deref()).await
        }
        ClientCommand::WebhooksRemove { id } => webhooks::remove(session, &id).await,
        ClientCommand::Alerts => webhooks::alerts(session).await,
        ClientCommand::AlertsSet { rule, threshold } => {
            webhooks::set(session, &rule, &threshold).await
        }
        ClientCommand::AlertsRemove { rule } => webhooks::remove_alert(session, &rule).await,
        ClientCommand::Maintenance => apps::maintenance(session, None).await,
        ClientCommand::MaintenanceOn => apps::maintenance(session, Some(true)).await,
        ClientCommand::MaintenanceOff => apps::maintenance(session, Some(false)).await,
        ClientCommand::Addons => addons::list(session).await,
        ClientCommand::AddonsCreate { kind, name } => {
            addons::create(session, &kind, name.as_deref()).await
        }
        ClientCommand::AddonsInfo { name } => addons::info(session, &name).await,
        ClientCommand::AddonsDestroy { name, confirm } => {
            addons::destroy(session, &name, confirm.as_deref()).await
        }
        ClientCommand::PgBackups { database } => {
            addons::backups(session, database.as_deref()).await
        }
        ClientCommand::PgBackupsCapture { database } => {
            addons::capture(session, database.as_deref()).await
        }
        ClientCommand::PgBackupsRestore { id, database } => {
            addons::restore(session, id.as_deref(), database.as_deref()).await
        }
        ClientCommand::PgPsql {
            database,
            sql,
            no_tty,
        } => addons::psql(session, database.as_deref(), sql.as_deref(), no_tty).await,
        ClientCommand::Pipelines => pipelines::list(session).await,
        ClientCommand::PipelinesCreate { name } => pipelines::create(session, &name).await,
        ClientCommand::PipelinesInfo { name } => pipelines::info(session, &name).await,
        ClientCommand::PipelinesDestroy { name } => pipelines::destroy(session, &name).await,
        ClientCommand::PipelinesAdd {
            app_name,
            pipeline,
            stage,
        } => pipelines::add(session, app_name, &pipeline, &stage).await,
        ClientCommand::PipelinesRemove => pipelines::remove(session).await,
        ClientCommand::PipelinesPromote { to } => pipelines::promote(session, &to).await,
    }
}
