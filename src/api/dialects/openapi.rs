//! `GET /openapi/{saasignal,kvdb,echovalue}.json`: one OpenAPI 3.1 description per dialect,
//! generated like the native `/openapi.json` from the `#[utoipa::path]` annotations on the
//! dialect handlers and the wire shapes in `schema.rs`. Each dialect takes credentials and
//! answers errors its own way, so each gets its own document rather than a corner of the
//! native one; `tests/it/inproc/openapi.rs` checks every dialect route is in its document and
//! that each matches its checked-in copy in `docs/`.

use std::sync::OnceLock;

use axum::response::Response;
use serde_json::{json, Value};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::{Modify, OpenApi};

use super::saasignal::{batch as ss_batch, keys as ss_keys};
use super::{echovalue, kvdb, schema};
use crate::api::describe::{add_token_schemes, for_each_operation, namespace_header, render, serve};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn: the saasignal dialect",
        description = "saasignal's KV API (seed 003) under `/infra/kv`, over the same keys as the native API. \
                       Errors are `{\"code\", \"message\"}` (plus `index` for a batch op). Reference: docs/dialects.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(ss_keys::get_key, ss_keys::put_key, ss_keys::delete_key, ss_keys::increment, ss_keys::scan, ss_batch::batch, saasignal_json),
    components(schemas(schema::Consistency, schema::SsOpKind, schema::SsError)),
    modifiers(&TokenCredentials),
)]
struct SaasignalDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn: the echovalue dialect",
        description = "echovalue's KV API (seed 004) under `/echovalue/kv/{group}/{key}`: text values; `{group}/{key}` \
                       is the key of that name in the token's namespace. Errors are text led by the status's meaning. \
                       Reference: docs/dialects.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(echovalue::store, echovalue::read, echovalue::remove, echovalue_json),
    components(schemas(schema::Consistency)),
    modifiers(&TokenCredentials),
)]
struct EchovalueDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn: the KVdb dialect",
        description = "KVdb's API (seed 002) under `/kvdb`: buckets of text values and counters. Creating a bucket \
                       takes a Cairn token with `write`; inside a bucket only its own `secret_key` and `write_key` \
                       govern access, sent the same four ways (a Cairn admin token of the bucket's namespace acts as \
                       its secret key). Errors are text: the message and a newline. Reference: docs/dialects.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        kvdb::manage::create, kvdb::manage::update, kvdb::manage::delete, kvdb::list::list,
        kvdb::keys::get, kvdb::keys::set, kvdb::keys::patch, kvdb::keys::delete, kvdb_json,
    ),
    components(schemas(schema::Consistency, schema::KvFlag, schema::KvFormat)),
    modifiers(&BucketCredentials),
)]
struct KvdbDoc;

/// saasignal and echovalue take a Cairn token, sent any of the four ways, on every operation
/// (`auth::credentials_first` answers 401 before anything else), and an admin token may pick
/// the namespace with `X-Cairn-Namespace`. Operations marked `security(())` (the description
/// itself) take neither.
struct TokenCredentials;

impl Modify for TokenCredentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.security = Some(add_token_schemes(doc));
        for_each_operation(doc, |op| {
            if op.security.is_none() {
                op.parameters.get_or_insert_with(Vec::new).push(namespace_header().into());
            }
        });
    }
}

/// KVdb takes a key the same four ways (the seed's are the Basic user name and `?key=`).
/// Creating a bucket needs a Cairn token; inside a bucket a key is needed only where its
/// policy says (none to read a key, none at all in a bucket without keys), so there the
/// requirement is optional. Only creation takes `X-Cairn-Namespace` (where the new bucket
/// lives); after that a bucket's id says where it is.
struct BucketCredentials;

impl Modify for BucketCredentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let required = add_token_schemes(doc);
        let mut optional = required.clone();
        optional.push(SecurityRequirement::default());
        doc.security = Some(required);
        for_each_operation(doc, |op| {
            if op.operation_id.as_deref() == Some("createBucket") {
                op.parameters.get_or_insert_with(Vec::new).push(namespace_header().into());
            } else if op.security.is_none() {
                op.security = Some(optional.clone());
            }
        });
    }
}

/// Which codes saasignal answers with which status (`saasignal::common::code_of`).
const SS_CODES: &[(&str, &[&str])] = &[
    ("400", &["bad_request", "unknown_field"]),
    ("401", &["unauthorized"]),
    ("403", &["forbidden", "quota_exceeded"]),
    ("404", &["not_found"]),
    ("408", &["request_timeout"]),
    ("409", &["conflict"]),
    ("429", &["rate_limited"]),
    ("500", &["internal_error"]),
    ("502", &["leader_unreachable"]),
    (
        "503",
        &[
            "no_leader",
            "not_caught_up",
            "not_ready",
            "raft_stopped",
            "snapshot_timeout",
            "busy",
            "too_many_connections",
            "starting",
        ],
    ),
    ("504", &["unknown_outcome"]),
    ("507", &["insufficient_storage"]),
];

/// What saasignal's handlers enforce that the attributes cannot state.
fn tighten_saasignal(doc: &mut Value) {
    let paths = doc["paths"].as_object_mut().expect("paths");
    for item in paths.values_mut() {
        for op in item.as_object_mut().expect("a path item").values_mut() {
            let Some(responses) = op["responses"].as_object_mut() else { continue };
            for (status, codes) in SS_CODES {
                if let Some(r) = responses.get_mut(*status) {
                    r["content"]["application/json"]["schema"] = json!({
                        "allOf": [{"$ref": "#/components/schemas/SsError"}],
                        "properties": {"code": {"enum": codes}},
                    });
                }
            }
        }
    }
    // An increment's body may be left out (it is `{}` then); `null` is not a body.
    let increment = &mut paths["/infra/kv/{key}/increment"]["post"]["requestBody"];
    increment["content"]["application/json"]["schema"] = json!({"$ref": "#/components/schemas/SsIncrementBody"});
    increment["required"] = json!(false);
    // `/infra/kv/` is `/infra/kv` (both are mounted).
    let mut slash = paths["/infra/kv"].clone();
    for op in slash.as_object_mut().expect("a path item").values_mut() {
        let id = format!("{}Slash", op["operationId"].as_str().unwrap_or_default());
        op["operationId"] = json!(id);
    }
    paths.insert("/infra/kv/".into(), slash);
    // A get or delete op takes only `op` and `key` (`saasignal::batch::parse_op`).
    let op = &mut doc["components"]["schemas"]["SsOp"];
    let kind = |k: &[&str]| json!({"properties": {"op": {"enum": k}}});
    op["oneOf"] = json!([
        {"allOf": [kind(&["set"]), {"required": ["value"]}]},
        {"allOf": [kind(&["get", "delete"]), {"propertyNames": {"enum": ["op", "key"]}}]},
    ]);
}

/// Copies the operation at `path`/`method` to `to_path`/`to_method` (a second route to the
/// same handler), under the operation id `id`.
fn alias(doc: &mut Value, (path, method): (&str, &str), (to_path, to_method): (&str, &str), id: &str) {
    let mut op = doc["paths"][path][method].clone();
    op["operationId"] = json!(id);
    let paths = doc["paths"].as_object_mut().expect("paths");
    let item = paths.entry(to_path).or_insert_with(|| json!({}));
    item[to_method] = op;
}

fn tighten_kvdb(doc: &mut Value) {
    let bucket = "/kvdb/{bucket}";
    // A form may be left out or empty (`curl -d ''`: no fields, no change); it is never null.
    for (path, form) in [("/kvdb", "KvCreateForm"), (bucket, "KvUpdateForm")] {
        let body = &mut doc["paths"][path]["post"]["requestBody"];
        body["content"]["application/x-www-form-urlencoded"]["schema"] =
            json!({"$ref": format!("#/components/schemas/{form}")});
        body["required"] = json!(false);
    }
    alias(doc, (bucket, "post"), (bucket, "patch"), "updateBucketPatch");
    alias(doc, ("/kvdb/{bucket}/{key}", "put"), ("/kvdb/{bucket}/{key}", "post"), "setKeyPost");
    // `/kvdb/` and `/kvdb/{bucket}/` are the same routes as without the slash.
    alias(doc, ("/kvdb", "post"), ("/kvdb/", "post"), "createBucketSlash");
    for (method, id) in [("get", "listKeysSlash"), ("post", "updateBucketSlash"), ("delete", "deleteBucketSlash")] {
        alias(doc, (bucket, method), ("/kvdb/{bucket}/", method), id);
    }
    alias(doc, (bucket, "patch"), ("/kvdb/{bucket}/", "patch"), "updateBucketPatchSlash");
    for method in ["put", "post"] {
        let body = &mut doc["paths"]["/kvdb/{bucket}/{key}"][method]["requestBody"];
        body["required"] = json!(false);
        body["content"]["text/plain"]["schema"]["maxLength"] = json!(16384);
    }
    // A listing in JSON is an array of keys, or of `[key, value]` pairs with `values`.
    let pair = json!({"type": "array", "minItems": 2, "maxItems": 2, "description": "the key, then its value"});
    for path in [bucket, "/kvdb/{bucket}/"] {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({"type": "array", "items": {"anyOf": [{"type": "string"}, pair]}});
    }
    let key = &mut doc["paths"]["/kvdb/{bucket}/{key}"];
    // `+N` / `-N` (`keys::parse_delta`); N's range is checked by the server.
    key["patch"]["requestBody"]["content"]["text/plain"]["schema"]["pattern"] =
        json!("^\\s*[+-]([0-9]+|[0-9]*\\.[0-9]+|[0-9]+\\.[0-9]*)\\s*$");
}

fn tighten_echovalue(doc: &mut Value) {
    // The value may be empty, and may come with any content type (curl's `-d` sends a form).
    let body = &mut doc["paths"]["/echovalue/kv/{group}/{key}"]["post"]["requestBody"];
    body["required"] = json!(false);
    body["content"]["text/plain"]["schema"]["maxLength"] = json!(1000);
}

pub fn saasignal_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| render(SaasignalDoc::openapi(), tighten_saasignal))
}

pub fn echovalue_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| render(EchovalueDoc::openapi(), tighten_echovalue))
}

pub fn kvdb_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| render(KvdbDoc::openapi(), tighten_kvdb))
}

#[utoipa::path(get, path = "/openapi/kvdb.json", tag = "probes", operation_id = "openapi", security(()),
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object), schema::KvErrors))]
/// `GET /openapi/kvdb.json`; no credential needed.
pub async fn kvdb_json() -> Response {
    serve(kvdb_document())
}

/// `GET /openapi/saasignal.json`; no credential needed, like `/openapi.json`.
#[utoipa::path(get, path = "/openapi/saasignal.json", tag = "probes", operation_id = "openapi", security(()),
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object), schema::SsErrors))]
pub async fn saasignal_json() -> Response {
    serve(saasignal_document())
}

/// `GET /openapi/echovalue.json`; no credential needed.
#[utoipa::path(get, path = "/openapi/echovalue.json", tag = "probes", operation_id = "openapi", security(()),
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object), schema::EvErrors))]
pub async fn echovalue_json() -> Response {
    serve(echovalue_document())
}
