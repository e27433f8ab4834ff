use axum::Json;
use slipway_types::api::WhoAmI;

use crate::auth::Caller;

pub async fn show(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        email: caller.user.email,
        role: caller.user.role.as_str().to_owned(),
    })
}
