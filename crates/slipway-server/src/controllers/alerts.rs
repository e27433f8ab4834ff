//! An app's alert rules: `/v1/apps/{app}/alerts…`. Rules not set have their defaults (see
//! `AlertRule::default_threshold`); removing a rule turns it off, defaults included.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use slipway_store::App;
use slipway_types::alerts::{AlertRule, AlertRuleInfo, SetAlert};

use crate::alerts::thresholds;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AlertRuleInfo>>> {
    let app = state.app_for(&caller, &name).await?;
    Ok(Json(rules(&state, &app).await?))
}

pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, rule)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetAlert>,
) -> ApiResult<Json<AlertRuleInfo>> {
    let app = state.app_for(&caller, &name).await?;
    let rule = parse_rule(&rule)?;
    let threshold = rule
        .parse_threshold(&body.threshold)
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    state
        .store
        .set_alert_threshold(app.id, rule, Some(threshold))
        .await?;
    let detail = format!("{rule} {threshold}");
    state
        .audit(&caller, "alerts.set", app.name.as_str(), Some(&detail))
        .await;
    rules(&state, &app)
        .await?
        .into_iter()
        .find(|info| info.rule == rule)
        .map(Json)
        .ok_or_else(|| ApiError::internal("a rule just set is missing"))
}

/// Turns the rule off. An alert of it that is firing is cleared without a recovery event:
/// nothing recovered, the app stopped watching.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, rule)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = state.app_for(&caller, &name).await?;
    let rule = parse_rule(&rule)?;
    state.store.set_alert_threshold(app.id, rule, None).await?;
    if state.store.resolve_alert(app.id, rule).await? {
        state.logs.platform(
            &app.name,
            "alerts",
            format!("Alert {rule} cleared: the rule was turned off"),
        );
    }
    state
        .audit(
            &caller,
            "alerts.remove",
            app.name.as_str(),
            Some(rule.as_str()),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_rule(text: &str) -> ApiResult<AlertRule> {
    text.parse()
        .map_err(|error: slipway_types::alerts::AlertError| ApiError::not_found(error.to_string()))
}

/// Every rule of the app, in a fixed order, with the threshold in force and whether it fires.
async fn rules(state: &AppState, app: &App) -> ApiResult<Vec<AlertRuleInfo>> {
    let set = state.store.alert_thresholds(app.id).await?;
    let in_force = thresholds(&set);
    let firing = state.store.firing_alerts(app.id).await?;
    Ok(AlertRule::ALL
        .into_iter()
        .map(|rule| AlertRuleInfo {
            rule,
            threshold: in_force.get(&rule).map(ToString::to_string),
            custom: set.contains_key(&rule),
            firing: firing.iter().find(|alert| alert.rule == rule).cloned(),
        })
        .collect())
}
