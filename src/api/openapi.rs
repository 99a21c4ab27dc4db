//! `GET /openapi.json`: the OpenAPI 3.1 description of the native API, cluster, tokens,
//! backups, probes and the watch. It is generated from the `#[utoipa::path]` annotations on the
//! handlers and the wire shapes in `schema.rs`; `tests/it/inproc/openapi.rs` checks that every
//! route the router mounts is in it and that it matches the checked-in `docs/openapi.json`.
//!
//! The dialects are left out: each takes credentials and answers errors its own way, so each
//! has its own document (`dialects/openapi.rs`). The peer RPCs under `/raft/*` are not a
//! client API.

use std::sync::OnceLock;

use serde_json::{json, Value};

use axum::response::Response;
use utoipa::{Modify, OpenApi};

use super::describe::{add_token_schemes, for_each_operation, namespace_header, render, serve};
use super::{admin, batch, cluster, election, kv, lease, lock, observe, overview, schema, watch};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn",
        description = "A replicated JSON key/value store. Every node serves this API; a follower forwards writes to \
                       the leader. Reference: docs/api.md. Errors are `{\"error\": {\"code\", \"message\"}}`; \
                       branch on `code`. A node on loopback started without `--admin-token` also serves anonymous \
                       callers in the `default` namespace.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        kv::get_item, kv::put_item, kv::delete_item, kv::increment_item, kv::scan_items,
        batch::batch, watch::watch,
        lease::grant, lease::keepalive, lease::revoke, lease::show, lease::list,
        lock::acquire, lock::release, lock::show,
        election::campaign, election::proclaim, election::leader, election::observe, election::resign,
        admin::create, admin::list, admin::revoke, admin::snapshot,
        cluster::status, overview::nodes, cluster::add_member, cluster::remove_member, cluster::health,
        observe::ready, observe::metrics, openapi_json,
    ),
    // Schemas that parameters name but utoipa does not collect by itself.
    components(schemas(schema::Consistency, schema::Flag, schema::SseKind)),
    tags(
        (name = "items", description = "Keys: read, write, delete, increment, scan, batch"),
        (name = "watch", description = "Changes as Server-Sent Events, or a long poll"),
        (name = "leases", description = "Leases: keys that live only while their holder keeps the lease alive"),
        (name = "locks", description = "Fair locks with fencing tokens"),
        (name = "elections", description = "Leader election, in the shape of etcd's election API"),
        (name = "tokens", description = "Access tokens of a namespace"),
        (name = "cluster", description = "Status, membership and backups"),
        (name = "probes", description = "Liveness, readiness, metrics and this description; no credential needed"),
    ),
    modifiers(&Credentials),
)]
struct ApiDoc;

/// The four credential styles (docs/api.md, Credentials), required on every operation that does
/// not opt out with `security(())`, and the `X-Cairn-Namespace` header those operations take.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.security = Some(add_token_schemes(doc));
        // Operations marked `security(())` are the probes: no credential, no namespace.
        for_each_operation(doc, |op| {
            if op.security.is_none() {
                op.parameters.get_or_insert_with(Vec::new).push(namespace_header().into());
            }
        });
    }
}

/// The description as JSON text, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| render(ApiDoc::openapi(), tighten))
}

/// The rules the server enforces that utoipa's attributes cannot state, patched into the JSON.
/// Without them a description allows requests the server refuses (two conditions at once), and
/// a client generated from it, or a fuzzer, learns the wrong contract.
fn tighten(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    // At most one condition: `ifNotExists: true`, a non-null `ifVersion`, any `ifValue`, a
    // non-null `ifFence` (`parse.rs`, `condition`). `ifNotExists: false` and nulls are no condition.
    let absent = json!({"required": ["ifNotExists"], "properties": {"ifNotExists": {"const": true}}});
    let version = json!({"required": ["ifVersion"], "properties": {"ifVersion": {"not": {"type": "null"}}}});
    let value = json!({"required": ["ifValue"]});
    let fence = json!({"required": ["ifFence"], "properties": {"ifFence": {"not": {"type": "null"}}}});
    let pair = |a: &Value, b: &Value| json!({"allOf": [a, b]});
    let two_of = |conds: &[&Value]| {
        let mut pairs = Vec::new();
        for (i, a) in conds.iter().enumerate() {
            for b in &conds[i + 1..] {
                pairs.push(pair(a, b));
            }
        }
        json!({"anyOf": pairs})
    };
    let one_condition = two_of(&[&absent, &version, &value, &fence]);
    schemas["PutBody"]["not"] = one_condition.clone();
    // An integer delta must fit in 64 signed bits; a fraction may be any f64.
    let delta = json!({
        "type": ["number", "null"],
        "if": {"type": "integer"},
        "then": {"minimum": i64::MIN, "exclusiveMaximum": 9_223_372_036_854_775_808u64},
    });
    schemas["IncrementBody"]["properties"]["delta"] = delta.clone();
    if let Some(ops) = schemas["BatchOp"]["oneOf"].as_array_mut() {
        for op in ops {
            // Each kind takes only its own fields (`batch.rs` refuses the others by name).
            op["additionalProperties"] = json!(false);
            match op["properties"]["op"]["enum"][0].as_str() {
                Some("set") => op["not"] = one_condition.clone(),
                Some("delete") => op["not"] = two_of(&[&version, &value, &fence]),
                Some("increment") => op["properties"]["delta"] = delta.clone(),
                _ => {}
            }
        }
    }
    // A token expires by `expiresAt` or by `ttlSeconds`, not both (`admin.rs`).
    let given = |f: &str| json!({"required": [f], "properties": {f: {"not": {"type": "null"}}}});
    schemas["TokenRequest"]["not"] = pair(&given("expiresAt"), &given("ttlSeconds"));
    // An empty body is `{}`; `null` is not a body.
    let increment = &mut doc["paths"]["/kv/items/{key}/increment"]["post"]["requestBody"];
    increment["content"]["application/json"]["schema"] = json!({"$ref": "#/components/schemas/IncrementBody"});
    increment["required"] = json!(false);
}

#[utoipa::path(get, path = "/openapi.json", tag = "probes", operation_id = "openapi", security(()),
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object), schema::Errors))]
pub async fn openapi_json() -> Response {
    serve(document())
}
