//! Who is calling, and which namespace they may use. Credentials are accepted the ways the
//! hosted services' clients send them: `Authorization: Bearer`, HTTP Basic (token as user
//! name), `x-token`, or `?key=`. Tokens look like `cairn_<id>_<secret>`; only a SHA-256 of the
//! secret is stored (replicated in the state machine), and the id makes lookup O(1).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::code::Code;
use super::error::{ApiError, Render};
use super::state::AppState;
use crate::model::command::perm;

pub const DEFAULT_NAMESPACE: &str = "default";
pub const H_NAMESPACE: &str = "x-cairn-namespace";
const TOKEN_PREFIX: &str = "cairn_";

#[derive(Debug, Clone)]
pub enum Principal {
    /// The bootstrap `--admin-token`: every permission in every namespace.
    Admin,
    /// No credentials, on a node that serves an open default namespace.
    Anonymous,
    Token {
        /// The token's id (not secret): a token may revoke itself.
        id: String,
        namespace: String,
        perms: u8,
    },
}

/// The authenticated caller of a request, plus the namespace it asked for (if any).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    requested: Option<String>,
}

pub fn valid_namespace(ns: &str) -> bool {
    (1..=64).contains(&ns.len()) && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Forbidden, msg)
}

impl Caller {
    /// The namespace this request acts on, if the caller holds `need` there.
    pub fn namespace(&self, need: u8) -> Result<String, ApiError> {
        self.namespace_for(self.requested.as_deref(), need)
    }

    /// The namespace for a write whose answer could reveal stored state: a condition (its
    /// success or refusal tells the stored value, version or existence) or an increment (its
    /// answer is the stored value plus the delta) needs `read` as well as `write`, as etcd
    /// asks `read` for a transaction that compares. A plain set or delete needs `write` only.
    pub fn namespace_for_write(&self, reveals_state: bool) -> Result<String, ApiError> {
        self.namespace(if reveals_state { perm::READ | perm::WRITE } else { perm::WRITE })
    }

    /// Like [`Caller::namespace`] for an explicitly named namespace (admin routes).
    pub fn namespace_for(&self, wanted: Option<&str>, need: u8) -> Result<String, ApiError> {
        match &self.principal {
            Principal::Admin => Ok(wanted.unwrap_or(DEFAULT_NAMESPACE).to_string()),
            Principal::Anonymous => match wanted {
                None | Some(DEFAULT_NAMESPACE) => Ok(DEFAULT_NAMESPACE.to_string()),
                Some(other) => Err(forbidden(format!(
                    "anonymous callers may only use the `{DEFAULT_NAMESPACE}` namespace, not `{other}`"
                ))),
            },
            Principal::Token { namespace, perms, .. } => {
                if wanted.is_some_and(|w| w != namespace) {
                    return Err(forbidden(format!("this token is for namespace `{namespace}`")));
                }
                if perms & need != need {
                    return Err(forbidden(format!("this token lacks the `{}` permission", perm_names(need).join(","))));
                }
                Ok(namespace.clone())
            }
        }
    }
}

pub fn perm_names(bits: u8) -> Vec<&'static str> {
    [(perm::READ, "read"), (perm::WRITE, "write"), (perm::ADMIN, "admin")]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| n)
        .collect()
}

pub fn parse_perm(name: &str) -> Option<u8> {
    match name {
        "read" => Some(perm::READ),
        "write" => Some(perm::WRITE),
        "admin" => Some(perm::ADMIN),
        _ => None,
    }
}

/// Pulls the credential out of a request, in the seed services' styles.
pub fn credential(parts: &Parts) -> Option<String> {
    credential_from(&parts.headers, &parts.uri)
}

/// [`credential`] from the pieces, for code that holds no `Parts` (middleware).
pub fn credential_from(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    credential_any(headers, uri).filter(|c| !c.is_empty())
}

/// An `Authorization: Bearer` or `Basic` header is the request's credential even when its
/// token is empty (`Bearer ` trims to `Bearer`): it is never passed over for an `x-token` or
/// `?key=` sent beside it, so a request whose stated credential is blank is anonymous (401
/// where tokens are required) rather than served under another one.
fn credential_any(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme == "Bearer" || scheme == "bearer" {
            return Some(rest.trim().to_string());
        }
        if scheme == "Basic" || scheme == "basic" {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
            return Some(if user.is_empty() { pass } else { user }.to_string());
        }
    }
    if let Some(v) = headers.get("x-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    query_param(uri, "key")
}

/// One query parameter, percent-decoded. A query that holds neither the name as it is nor any
/// escape cannot name it, and is not decoded: every request asks for `key` (a credential), and
/// decoding a stale read's `?consistency=stale` into owned pairs showed in read profiles.
pub fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    if !q.contains(name) && !q.contains('%') {
        return None;
    }
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?.0;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares in time independent of where the bytes differ, so timing does not reveal how much
/// of a secret matched (only whether the lengths match, which every token format fixes anyway).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Splits `cairn_<id>_<secret>`.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Makes a new token: (id, full token text, secret hash).
pub fn mint_token() -> Result<(String, String, Vec<u8>), ApiError> {
    let mut raw = [0u8; 40];
    getrandom::getrandom(&mut raw).map_err(|e| ApiError::new(Code::NoEntropy, e.to_string()))?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let id = hex(&raw[..8]);
    let secret = hex(&raw[8..]);
    let hash = hash_secret(&secret);
    Ok((id.clone(), format!("{TOKEN_PREFIX}{id}_{secret}"), hash))
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(Code::Unauthorized, msg)
}

/// The outcome of [`authenticate`], kept in the request's extensions: the caller when its
/// credential held (the handler's `Caller` extractor then reuses it), `None` when it failed.
#[derive(Clone)]
pub struct Authenticated(pub Option<Caller>);

/// Authenticates a request once, before the rate limiter, which counts it against the caller
/// the credential proves (or, when it proves none, the client address). Handlers reuse the
/// result; a failed credential is refused by the handler as before.
pub async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = Caller::from_request_parts(&mut parts, &st).await.ok();
    parts.extensions.insert(Authenticated(caller));
    next.run(Request::from_parts(parts, body)).await
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(Some(caller))) = parts.extensions.get::<Authenticated>() {
            return Ok(caller.clone());
        }
        let requested = match parts.headers.get(H_NAMESPACE) {
            None => None,
            Some(v) => {
                let ns = v.to_str().map_err(|_| ApiError::new(Code::InvalidNamespace, "namespace is not text"))?;
                if !valid_namespace(ns) {
                    return Err(ApiError::new(Code::InvalidNamespace, "namespaces are 1-64 of A-Z a-z 0-9 - _ ."));
                }
                Some(ns.to_string())
            }
        };
        let sec = &st.node.config.security;
        let principal = match credential(parts) {
            None if sec.allow_anonymous => Principal::Anonymous,
            None => return Err(unauthorized("credentials required")),
            Some(cred) => {
                if sec.admin_token.as_deref().is_some_and(|a| same_secret(a.as_bytes(), cred.as_bytes())) {
                    Principal::Admin
                } else {
                    let (id, secret) = split_token(&cred).ok_or_else(|| unauthorized("unknown token"))?;
                    // An expired token reads as absent, so it gets this very answer: nothing
                    // tells a caller that it ever existed.
                    let rec = st.node.token(id)?.ok_or_else(|| unauthorized("unknown token"))?;
                    if !same_secret(&rec.hash, &hash_secret(secret)) {
                        return Err(unauthorized("unknown token"));
                    }
                    Principal::Token { id: id.to_string(), namespace: rec.namespace, perms: rec.perms }
                }
            }
        };
        Ok(Caller { principal, requested })
    }
}

/// State of [`credentials_first`]: the node, and how the surface renders its errors.
#[derive(Clone)]
pub struct CredentialsFirst {
    pub state: AppState,
    pub render: Render,
}

/// Checks the request's credential from its headers before any handler reads the body, so a
/// caller without a valid credential is answered at once (in the surface's own style) instead
/// of being allowed to send, slowly, a body nobody will use. Handlers extract `Caller` again.
pub async fn credentials_first(State(c): State<CredentialsFirst>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(e) = Caller::from_request_parts(&mut parts, &c.state).await {
        return (c.render)(e);
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blank `Bearer` or `Basic` header is the credential (none), not a reason to look
    /// further: schemathesis found a valid `x-token` beside `Authorization: Bearer ` accepted.
    #[test]
    fn a_blank_authorization_header_hides_other_credentials() {
        let uri: Uri = "/echovalue/kv/g/k?key=from-query".parse().unwrap();
        for blank in ["Bearer ", "Bearer", "bearer  ", "Basic ", "Basic"] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, blank.parse().unwrap());
            h.insert("x-token", "from-header".parse().unwrap());
            assert_eq!(credential_from(&h, &uri), None, "{blank:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer t1".parse().unwrap());
        h.insert("x-token", "t2".parse().unwrap());
        assert_eq!(credential_from(&h, &uri).as_deref(), Some("t1"));
        // Another scheme is not Cairn's: the other styles still apply.
        h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert_eq!(credential_from(&h, &uri).as_deref(), Some("t2"));
    }

    /// The shortcut for queries that cannot hold the name must not miss an escaped one.
    #[test]
    fn query_params_are_found_however_they_are_written() {
        let q = |s: &str| query_param(&s.parse::<Uri>().unwrap(), "key");
        assert_eq!(q("/kv/items/a?key=k1").as_deref(), Some("k1"));
        assert_eq!(q("/kv/items/a?consistency=stale&key=k%201").as_deref(), Some("k 1"));
        assert_eq!(q("/kv/items/a?%6Bey=k2").as_deref(), Some("k2"));
        assert_eq!(q("/kv/items/a?k%65y=k3&x=1").as_deref(), Some("k3"));
        assert_eq!(q("/kv/items/a?consistency=stale"), None);
        assert_eq!(q("/kv/items/a?monkey=1"), None);
        assert_eq!(q("/kv/items/a"), None);
    }

    #[test]
    fn minted_tokens_split_and_verify() {
        let (id, token, hash) = mint_token().unwrap();
        let (i, secret) = split_token(&token).unwrap();
        assert_eq!(i, id);
        assert!(same_secret(&hash, &hash_secret(secret)));
        assert!(!same_secret(&hash, &hash_secret("other")));
        assert!(!same_secret(&hash, &hash[..16]), "a prefix is not the secret");
        assert!(split_token("nope").is_none());
    }

    #[test]
    fn namespaces_are_validated() {
        assert!(valid_namespace("team-a_1.prod"));
        assert!(!valid_namespace(""));
        assert!(!valid_namespace("a/b"));
        assert!(!valid_namespace(&"x".repeat(65)));
    }

    #[test]
    fn tokens_are_confined_to_their_namespace_and_permissions() {
        let c = Caller {
            principal: Principal::Token { id: "i".into(), namespace: "ns".into(), perms: perm::READ },
            requested: None,
        };
        assert_eq!(c.namespace(perm::READ).unwrap(), "ns");
        assert_eq!(c.namespace(perm::WRITE).unwrap_err().code, Code::Forbidden);
        assert_eq!(c.namespace_for(Some("other"), perm::READ).unwrap_err().code, Code::Forbidden);
        let anon = Caller { principal: Principal::Anonymous, requested: Some("x".into()) };
        assert_eq!(anon.namespace(perm::READ).unwrap_err().code, Code::Forbidden);
    }
}
