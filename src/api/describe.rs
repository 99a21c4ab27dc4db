//! What the OpenAPI descriptions share (`openapi.rs` for the native API, `dialects/openapi.rs`
//! for the dialects): the four ways a Cairn token is sent, the `X-Cairn-Namespace` header, a
//! walk over every operation, and rendering and serving the JSON. One place, so the documents
//! cannot come to describe the same credentials differently.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ObjectBuilder, Required, Type};

/// The four ways a Cairn token is sent (docs/api.md, Credentials).
pub fn add_token_schemes(doc: &mut utoipa::openapi::OpenApi) -> Vec<SecurityRequirement> {
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    components
        .add_security_scheme("basic", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()));
    components.add_security_scheme("xToken", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-token"))));
    components.add_security_scheme("queryKey", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))));
    ["bearer", "basic", "xToken", "queryKey"]
        .into_iter()
        .map(|name| SecurityRequirement::new(name, Vec::<String>::new()))
        .collect()
}

/// Calls `f` on every operation of the description.
pub fn for_each_operation(doc: &mut utoipa::openapi::OpenApi, mut f: impl FnMut(&mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        ops.into_iter().flatten().for_each(&mut f);
    }
}

/// `X-Cairn-Namespace`, which every operation that acts with a Cairn token takes.
pub fn namespace_header() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("X-Cairn-Namespace")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "the namespace to act in: a token's own (the header may be left out), any for the bootstrap admin \
             token, `default` for an anonymous caller",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9._-]{1,64}$"))))
        .build()
}

/// A description as JSON text, patched by `tighten` with the rules attributes cannot state.
pub fn render(doc: utoipa::openapi::OpenApi, tighten: fn(&mut Value)) -> String {
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI description serializes");
    tighten(&mut doc);
    serde_json::to_string_pretty(&doc).expect("JSON serializes")
}

/// Serves a description; no credential needed.
pub fn serve(doc: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}
