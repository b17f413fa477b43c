//! The client_id URL: which client_ids are metadata-document URLs, in the one form fetched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use consentry_protocol::split_uri;
use reqwest::Url;

use crate::clients::truncate;

/// Longest client_id URL considered (the protocol crate's bound for URIs).
pub(crate) const MAX_URL_BYTES: usize = 2048;

/// Whether `id` is a client_id this server resolves as a metadata document: an `https` URL with
/// a path other than `/`, no fragment, no userinfo, no `.`/`..` segments, already in canonical
/// form. A query is allowed (the draft says MAY). [`CimdResolver::resolve`] says which rule an
/// id breaks.
pub fn is_cimd_client_id(id: &str) -> bool {
    check_url(id).is_ok()
}

/// The parsed URL, or why `id` is not a metadata document URL (completing "is not a valid client
/// metadata document URL: …").
pub(crate) fn check_url(id: &str) -> Result<Url, String> {
    if id.len() > MAX_URL_BYTES {
        return Err(format!("it is longer than {MAX_URL_BYTES} bytes"));
    }
    let Some(after_scheme) = id.strip_prefix("https://") else {
        return Err("it must start with 'https://'".into());
    };
    if !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err("it contains spaces, control or non-ASCII characters".into());
    }
    if id.contains('#') {
        return Err("it must not contain a fragment ('#')".into());
    }
    if id.contains('\\') {
        return Err("it must not contain a backslash".into());
    }
    let authority = &after_scheme[..after_scheme.find(['/', '?']).unwrap_or(after_scheme.len())];
    if authority.contains('@') {
        return Err("it must not contain a username or password ('user@host')".into());
    }
    let Some(parts) = split_uri(id) else {
        return Err("its host or port is malformed".into());
    };
    let path = &parts.rest[..parts.rest.find('?').unwrap_or(parts.rest.len())];
    if path.is_empty() || path == "/" {
        return Err(
            "it must have a path after the host (e.g. 'https://example.com/client.json')".into(),
        );
    }
    if path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    }) {
        return Err("it must not contain '.' or '..' path segments".into());
    }
    let url = Url::parse(id).map_err(|e| format!("it is not a valid URL ({e})"))?;
    if url.as_str() != id {
        return Err(format!(
            "it is not in canonical form (it would be fetched as '{}'); use that exact string",
            truncate(url.as_str())
        ));
    }
    Ok(url)
}

/// The host of a checked URL as an IP address, if it is an IP literal. (`Url` has already turned
/// every IPv4 spelling, `0x7f.1` and the like, into a dotted quad, and `check_url` refused any
/// URL it had to rewrite; reqwest connects to literals without asking the resolver.)
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_urls() {
        let ok = [
            "https://example.com/client.json",
            "https://example.com/c",
            "https://app.example.com/oauth/metadata.json",
            "https://example.com:8443/client",
            "https://example.com/client?v=2",
            "https://127.0.0.1:8443/client",
            "https://[::1]:8443/client",
            "https://example.com/a/b/",
        ];
        for id in ok {
            assert!(is_cimd_client_id(id), "{id}: {:?}", check_url(id));
        }
        let bad = [
            ("http://example.com/client", "https://"),
            ("HTTPS://example.com/client", "https://"),
            ("demo-agent", "https://"),
            ("https://example.com", "path"),
            ("https://example.com/", "path"),
            ("https://example.com?x=1", "path"),
            ("https://example.com/client#frag", "fragment"),
            ("https://example.com/client#", "fragment"),
            ("https://user@example.com/client", "username"),
            ("https://user:pw@example.com/client", "username"),
            ("https://example.com/a/../client", "'..'"),
            ("https://example.com/./client", "'.'"),
            ("https://example.com/a/%2e%2E/client", "'..'"),
            ("https://example.com/a/%2e", "'.'"),
            ("https://example.com/a b", "spaces"),
            ("https://exämple.com/a", "non-ASCII"),
            ("https://Example.com/client", "canonical"),
            ("https://example.com:443/client", "canonical"),
            ("https://2130706433/client", "malformed"),
            ("https://0x7f.1/client", "malformed"),
            ("https://example.com:/client", "canonical"),
            ("https://example.com\\client", "backslash"),
            ("https://example.com/a\\..\\client", "backslash"),
            ("https://example.com:99999/client", "malformed"),
            ("https:///client", "malformed"),
        ];
        for (id, why) in bad {
            assert!(!is_cimd_client_id(id), "{id} should be refused");
            let reason = check_url(id).unwrap_err();
            assert!(
                reason.contains(why),
                "{id}: '{reason}' should mention {why}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_url(&long).unwrap_err().contains("longer than 2048"));
    }
}
