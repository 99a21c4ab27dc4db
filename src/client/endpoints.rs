//! Parsing of endpoint lists (`--endpoints`, `CAIRN_ENDPOINTS`) into base URLs.

use reqwest::Url;

use super::error::ClientError;

/// Parses a comma-separated endpoint list. Blank items (e.g. from a trailing comma) are skipped;
/// an empty result is an error because a client with nowhere to send requests is a usage mistake.
pub fn parse_endpoints(list: &str) -> Result<Vec<Url>, ClientError> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(ClientError::InvalidEndpoint {
            endpoint: list.to_string(),
            reason: "no endpoints given".to_string(),
        });
    }
    Ok(endpoints)
}

/// Parses one endpoint. `host:port` without a scheme means `http://host:port`, because that is
/// what people type and the peers list uses the same form. A path is kept as a prefix (for a
/// reverse proxy that mounts Cairn below `/cairn/`); query and fragment are rejected since they
/// would be silently dropped.
pub fn parse_endpoint(raw: &str) -> Result<Url, ClientError> {
    let raw = raw.trim();
    let invalid = |reason: &str| ClientError::InvalidEndpoint { endpoint: raw.to_string(), reason: reason.to_string() };
    if raw.is_empty() {
        return Err(invalid("empty endpoint"));
    }
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("http://{raw}") };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("an endpoint may not carry a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in endpoint URLs are not supported"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_separated_list_in_order() {
        let eps = parse_endpoints("http://127.0.0.1:7001,http://127.0.0.1:7002").unwrap();
        let got: Vec<&str> = eps.iter().map(Url::as_str).collect();
        assert_eq!(got, ["http://127.0.0.1:7001/", "http://127.0.0.1:7002/"]);
    }

    #[test]
    fn bare_host_port_defaults_to_http() {
        let eps = parse_endpoints("127.0.0.1:7003").unwrap();
        assert_eq!(eps[0].as_str(), "http://127.0.0.1:7003/");
        assert_eq!(eps[0].port(), Some(7003));
    }

    #[test]
    fn whitespace_and_blank_items_are_ignored() {
        let eps = parse_endpoints(" http://a:1 , ,localhost:2, ").unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[1].host_str(), Some("localhost"));
    }

    #[test]
    fn empty_list_is_rejected() {
        assert!(matches!(parse_endpoints(" , "), Err(ClientError::InvalidEndpoint { .. })));
        assert!(parse_endpoints("").is_err());
    }

    #[test]
    fn path_prefix_is_kept() {
        let url = parse_endpoint("http://proxy:8080/cairn/").unwrap();
        assert_eq!(url.path(), "/cairn/");
    }

    #[test]
    fn unsupported_forms_are_rejected() {
        for bad in [
            "ftp://host",
            "http://host:7001/?x=1",
            "http://host#frag",
            "http://user:pw@host",
            "http://",
            "not a url at all",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn https_endpoint_is_accepted() {
        assert_eq!(parse_endpoint("https://127.0.0.1:7001").unwrap().scheme(), "https");
    }

    #[test]
    fn ipv6_endpoint_is_accepted() {
        let url = parse_endpoint("[::1]:7001").unwrap();
        assert_eq!(url.port(), Some(7001));
    }
}
