//! The committed OpenAPI document: parses, declares OpenAPI 3.x, lists every route of the table
//! with its method, and equals what the generator makes from the table (so it cannot drift).
//!
//! Regenerate after changing a route: `HEARTH_BLESS_OPENAPI=1 cargo test -p engine --test
//! rest_openapi`.

use engine::rest::{Auth, OPENAPI_JSON, ROUTES, openapi_document};
use serde_json::Value;

fn committed() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json parses")
}

#[test]
fn committed_document_matches_the_generator() {
    let generated = openapi_document();
    if std::env::var_os("HEARTH_BLESS_OPENAPI").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let mut text = serde_json::to_string_pretty(&generated).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
        return;
    }
    assert!(
        committed() == generated,
        "engine/openapi.json is stale: run HEARTH_BLESS_OPENAPI=1 cargo test -p engine --test rest_openapi"
    );
}

#[test]
fn document_declares_openapi_3() {
    let doc = committed();
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string());
    assert_eq!(doc["servers"][0]["url"], "/api/v10");
}

#[test]
fn every_route_is_documented_with_its_method() {
    let doc = committed();
    let paths = doc["paths"].as_object().unwrap();
    for spec in ROUTES {
        let item = paths
            .get(spec.template)
            .unwrap_or_else(|| panic!("{} missing", spec.template));
        let op = &item[spec.method.to_ascii_lowercase()];
        assert_eq!(
            op["operationId"], spec.name,
            "{} {}",
            spec.method, spec.template
        );
        assert!(op["responses"].is_object());
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in spec
            .template
            .split('/')
            .filter_map(|t| t.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        {
            assert!(params.contains(&name), "{} lacks {name}", spec.template);
        }
        if spec.auth == Auth::Control {
            assert_eq!(item["servers"][0]["url"], "/");
        }
    }
    // Nothing documented that the router does not serve.
    let ops: usize = paths
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "servers")
                .count()
        })
        .sum();
    assert_eq!(ops, ROUTES.len());
}

#[test]
fn every_schema_reference_resolves() {
    let doc = committed();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "User",
        "Guild",
        "Channel",
        "Role",
        "Member",
        "Message",
        "Invite",
        "Error",
        "RateLimitError",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let ptr = r.strip_prefix('#').unwrap();
                    assert!(doc.pointer(ptr).is_some(), "dangling {r}");
                }
                m.values().for_each(|x| walk(x, doc));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}
