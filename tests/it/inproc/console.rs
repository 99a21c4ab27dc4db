//! `/ui/`: the console's files are served without credentials (the page must load before the
//! login), each with its media type, a strict Content-Security-Policy and an ETag that a
//! revalidation answers with 304. The browser tests (`tests/ui/`, `scripts/ui-test.sh`)
//! exercise the console itself.

use reqwest::Method;

use crate::support::raw::Raw;
use crate::support::{deadline_in, Cluster};

/// The files `index.html` loads (`src="…"` and `href="…"`), relative to `/ui/`. A `data:` URL
/// (the empty favicon, which spares the browser a request for `/favicon.ico`) is not a file.
fn linked_files(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = page;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').expect("a closing quote");
            if !rest[..end].starts_with("data:") {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_its_security_headers_and_revalidates_by_etag() {
    let mut c = Cluster::in_process_single(&["--admin-token", "console-admin"]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let raw = Raw::new();

    let r = raw.send(Method::GET, &format!("{url}/ui"), None, &[]).await;
    assert_eq!((r.status, r.header("location")), (308, Some("/ui/")), "{r:?}");

    // No credential: a node with --admin-token still serves the page, which then asks for one.
    let page = raw.send(Method::GET, &format!("{url}/ui/"), None, &[]).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").expect("a CSP");
    for directive in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    let files = linked_files(&page.text);
    assert!(files.iter().any(|f| f.ends_with(".js")) && files.iter().any(|f| f.ends_with(".css")), "{files:?}");
    for file in &files {
        assert!(!file.contains("//"), "index.html loads {file} from elsewhere");
        let r = raw.send(Method::GET, &format!("{url}/ui/{file}"), None, &[]).await;
        assert_eq!(r.status, 200, "{file}: {r:?}");
        let media = r.header("content-type").unwrap_or_default();
        let want = if file.ends_with(".js") { "text/javascript" } else { "text/css" };
        assert!(media.starts_with(want), "{file} served as {media}");
        assert!(r.header("content-security-policy").is_some(), "{file}");

        let tag = r.header("etag").expect("an ETag").to_string();
        let again = raw.send(Method::GET, &format!("{url}/ui/{file}"), None, &[("if-none-match", &tag)]).await;
        assert_eq!(again.status, 304, "{file}: {again:?}");
        assert!(again.text.is_empty());
        let stale = raw.send(Method::GET, &format!("{url}/ui/{file}"), None, &[("if-none-match", "\"0\"")]).await;
        assert_eq!((stale.status, stale.text.len()), (200, r.text.len()), "{file}");
    }

    let r = raw.send(Method::GET, &format!("{url}/ui/secrets.txt"), None, &[]).await;
    r.assert_error(404, "no_route");
    let r = raw.send(Method::GET, &format!("{url}/ui/..%2FCargo.toml"), None, &[]).await;
    r.assert_error(404, "no_route");
    let r = raw.send(Method::POST, &format!("{url}/ui/"), Some(b"x"), &[]).await;
    r.assert_error(405, "method_not_allowed");
}
