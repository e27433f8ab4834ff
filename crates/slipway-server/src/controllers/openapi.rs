//! `GET /v1/openapi.json`: the API as OpenAPI 3.1, generated from the route table, so every
//! route is in it with who may call it (`x-slipway-access`) and the token scope it needs.

use axum::Json;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::router::{Access, routes};

pub async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let path = route.path.replace("{*", "{");
        let parameters: Vec<Value> = path_parameters(&path)
            .map(|name| {
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": { "type": "string" }
                })
            })
            .collect();
        let security = match route.access {
            Access::Public => json!([]),
            Access::Git => json!([{ "basic": [] }]),
            _ if route.page => json!([{ "session": [] }]),
            _ => json!([{ "bearer": [] }]),
        };
        let mut operation = json!({
            "summary": route.summary,
            "operationId": operation_id(&route.method, &path),
            "parameters": parameters,
            "security": security,
            "x-slipway-access": route.access.as_str(),
            "x-slipway-scope": route.scope.as_str(),
            "responses": responses(route.access),
        });
        if matches!(route.method, Method::POST | Method::PUT | Method::PATCH)
            && route.access != Access::Git
        {
            let kind = if route.page {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            operation["requestBody"] = json!({
                "required": false,
                "content": { kind: { "schema": { "type": "object" } } }
            });
        }
        if route.page {
            // A dashboard page: HTML, refused with a redirect to sign in or an error page.
            operation["x-slipway-page"] = json!(true);
            operation["responses"] = json!({
                "2XX": { "description": "a page", "content": { "text/html": {} } },
                "303": { "description": "not signed in: to the sign-in page" },
                "default": { "description": "an error page", "content": { "text/html": {} } }
            });
        }
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Slipway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of a Slipway server. Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "basic": { "type": "http", "scheme": "basic" },
                "session": { "type": "apiKey", "in": "cookie", "name": "slipway_session" }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// `get_v1_apps_app_config`: unique per method and path.
fn operation_id(method: &Method, path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect();
    format!(
        "{}_{}",
        method.as_str().to_ascii_lowercase(),
        words.join("_")
    )
}

fn responses(access: Access) -> Value {
    let error = json!({
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    let mut responses = json!({
        "default": { "description": "an error", "content": error["content"] },
    });
    responses["2XX"] = json!({ "description": "success" });
    if access != Access::Public {
        responses["401"] = json!({ "description": "no, a bad, an expired or a revoked token", "content": error["content"] });
        responses["403"] = json!({ "description": "the token's scope or the caller's role is not enough", "content": error["content"] });
    }
    responses
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document is kept in `openapi.json` beside this crate so changes show in review;
    /// `UPDATE_SNAPSHOTS=1 cargo test -p slipway-server openapi` rewrites it.
    #[test]
    fn the_document_matches_its_snapshot() {
        let snapshot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = serde_json::to_string_pretty(&build()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&snapshot, &generated).unwrap();
        }
        let kept = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert!(
            kept == generated,
            "openapi.json is out of date: run `UPDATE_SNAPSHOTS=1 cargo test -p slipway-server openapi` and review the diff"
        );
    }

    #[test]
    fn every_route_is_documented_once_with_its_access_rule() {
        let document = build();
        let mut operations = 0;
        for route in routes() {
            let path = route.path.replace("{*", "{");
            let operation = &document["paths"][&path][route.method.as_str().to_ascii_lowercase()];
            assert_eq!(
                operation["x-slipway-access"],
                route.access.as_str(),
                "{path}"
            );
            operations += 1;
        }
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|methods| methods.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, operations);
    }
}
