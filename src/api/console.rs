//! `/ui/`: the web console. Its files (`src/console/`) are compiled into the binary, so every
//! node serves the same console with no network access and nothing to install.
//!
//! The console is a client of the public API like any other: it sends the user's token on
//! each call and holds no privilege of its own, so these routes need no credentials. What they
//! add is the browser's side of safety: a strict Content-Security-Policy (scripts and styles
//! only from these files: no inline script, no `eval`, no other origin), `nosniff`, no framing,
//! no referrer; and ETags, so a browser revalidates its cached copy instead of fetching again.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::code::Code;
use super::error::ApiError;

/// Every file of the console: its name under `/ui/`, its media type and its bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../console/index.html")),
    ("style.css", "text/css; charset=utf-8", include_str!("../console/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../console/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../console/api.js")),
    ("json.js", "text/javascript; charset=utf-8", include_str!("../console/json.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("../console/dom.js")),
    ("browse.js", "text/javascript; charset=utf-8", include_str!("../console/browse.js")),
    ("keyview.js", "text/javascript; charset=utf-8", include_str!("../console/keyview.js")),
    ("live.js", "text/javascript; charset=utf-8", include_str!("../console/live.js")),
    ("cluster.js", "text/javascript; charset=utf-8", include_str!("../console/cluster.js")),
    ("tokens.js", "text/javascript; charset=utf-8", include_str!("../console/tokens.js")),
];

/// Sent with every console file. `connect-src 'self'` keeps the page's calls on the node that
/// served it (the cluster panel asks that node, which asks its peers: `GET /cluster/nodes`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A file's ETag: a hash of its bytes, strong, computed once per process.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, body)| {
                // FNV-1a, 64 bits: a change of any byte changes the tag; nothing adversarial
                // is hashed here, so a cryptographic hash would buy nothing.
                let h =
                    body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
                format!("\"{h:016x}\"")
            })
            .collect()
    })
}

/// `GET /ui`: the console's pages resolve their files relative to `/ui/`.
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{file}`: one of the console's files.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return ApiError::new(Code::NoRoute, format!("the console has no file `{name}`")).into_response();
    };
    let (_, media, body) = FILES[i];
    // Working on the console: `CAIRN_CONSOLE_DIR=src/console` serves the files from disk, read
    // at each request, so a change shows on reload without a rebuild. Only the process's own
    // environment can set it; the names are still only those in `FILES`.
    if let Some(dir) = std::env::var_os("CAIRN_CONSOLE_DIR") {
        return match std::fs::read(std::path::Path::new(&dir).join(name)) {
            Ok(bytes) => with_headers(bytes.into_response(), media, "\"dev\""),
            Err(e) => ApiError::new(Code::NoRoute, format!("CAIRN_CONSOLE_DIR: {name}: {e}")).into_response(),
        };
    }
    let tag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    with_headers(resp, media, tag)
}

fn with_headers(mut resp: Response, media: &'static str, tag: &str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::ETAG, HeaderValue::from_str(tag).expect("a hex ETag is a valid header value"));
    // Always revalidate: a new binary may serve new files under the same names.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_own_tag_and_a_known_media_type() {
        let tags = etags();
        assert_eq!(tags.len(), FILES.len());
        for (i, (name, media, body)) in FILES.iter().enumerate() {
            assert!(!body.is_empty(), "{name} is empty");
            assert!(media.contains("charset=utf-8"), "{name}");
            assert!(tags[i].starts_with('"') && tags[i].len() == 18, "{}", tags[i]);
        }
        let mut unique = tags.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len());
    }

    #[test]
    fn the_page_loads_no_inline_script_and_nothing_from_elsewhere() {
        let page = FILES[0].2;
        assert!(!page.contains("<script>") && !page.contains("onclick="), "inline script in index.html");
        assert!(!page.contains("http://") && !page.contains("https://"), "a URL to another origin in index.html");
        for (name, _, body) in FILES {
            assert!(!body.contains("eval("), "{name} calls eval");
            assert!(!body.contains("innerHTML"), "{name} writes HTML from strings; build nodes and set textContent");
        }
    }
}
