//! The document's own rules: a JSON object whose `client_id` is the URL exactly, no secret, a
//! public client; then the one client rule (`clients::validate`, document trust) for the rest.

use consentry_protocol::{ClientAuthMethod, split_uri};
use serde_json::Value;

use crate::clients::metadata::json_kind;
use crate::clients::{Client, ClientMetadata, ClientSource, Trust, truncate};

/// Whether `host` (as in a URL: lower-case, IPv6 in brackets) matches a `trusted_domains` entry:
/// exactly, or `*.suffix` for any subdomain of `suffix` (not `suffix` itself).
pub(crate) fn is_trusted(host: &str, trusted: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    trusted.iter().any(|t| {
        let t = t.trim().to_ascii_lowercase();
        match t.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == t,
        }
    })
}

/// Validate a fetched document; `Err` completes "client metadata document at URL …".
pub(crate) fn parse_document(
    url: &str,
    host: &str,
    body: &[u8],
    trusted: &[String],
) -> Result<Client, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("is not valid JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err(format!("is not a JSON object (found {})", json_kind(&doc)));
    };
    let client_id = match doc.get("client_id") {
        None => return Err("has no client_id; it must be the document's own URL".into()),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "has a client_id that is {}, not a string",
                json_kind(other)
            ));
        }
    };
    if client_id != url {
        return Err(format!(
            "has client_id '{}', which differs from the URL; it must be exactly '{}'",
            truncate(client_id),
            truncate(url)
        ));
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if doc.contains_key(secret) {
            return Err(format!(
                "carries {secret}; a client identified by a metadata document is a public client \
                 and cannot have a shared secret"
            ));
        }
    }
    match doc.get("token_endpoint_auth_method") {
        Some(Value::String(m)) if m != ClientAuthMethod::None.as_str() => {
            return Err(if m.starts_with("client_secret_") {
                format!(
                    "uses token_endpoint_auth_method '{}', a shared-secret method, which a \
                     metadata document must not use; use 'none'",
                    truncate(m)
                )
            } else {
                format!(
                    "uses token_endpoint_auth_method '{}', which this server does not support for \
                     metadata documents; use 'none'",
                    truncate(m)
                )
            });
        }
        _ => {}
    }
    // Presence, in the words of the draft (the validator would say the same less precisely).
    match doc.get("client_name") {
        None | Some(Value::Null) => {
            return Err("has no client_name; it is shown on the consent screen".into());
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err("has an empty client_name".into());
        }
        _ => {}
    }
    match doc.get("redirect_uris") {
        None | Some(Value::Null) => return Err("has no redirect_uris".into()),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err("has an empty redirect_uris array".into());
        }
        _ => {}
    }
    let invalid = |e: crate::clients::MetadataError| format!("has an invalid {e}");
    let md = ClientMetadata::from_document(&doc).map_err(invalid)?;
    let valid = crate::clients::validate(md, Trust::Document).map_err(invalid)?;
    // A document whose codes all go to loopback serves whatever program runs on the user's
    // machine (any of them can use its client_id): no host vouches for that.
    let all_loopback = valid.redirect_uris.iter().all(|u| {
        split_uri(u).is_some_and(|p| p.host.is_some_and(consentry_protocol::is_loopback_host))
    });
    let verified = is_trusted(host, trusted) && !all_loopback;
    Ok(valid.into_client(
        client_id.clone(),
        None,
        ClientSource::MetadataDocument,
        verified,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use consentry_protocol::GrantType;

    #[test]
    fn trusted_domain_matching() {
        let t = vec![
            "example.com".to_owned(),
            "*.apps.example.org".to_owned(),
            " Claude.AI ".to_owned(),
        ];
        assert!(is_trusted("example.com", &t));
        assert!(is_trusted("EXAMPLE.com", &t));
        assert!(is_trusted("claude.ai", &t));
        assert!(
            !is_trusted("www.example.com", &t),
            "exact entries are exact"
        );
        assert!(is_trusted("a.apps.example.org", &t));
        assert!(is_trusted("x.y.apps.example.org", &t));
        assert!(
            !is_trusted("apps.example.org", &t),
            "*. means subdomains only"
        );
        assert!(!is_trusted("evilapps.example.org", &t));
        assert!(!is_trusted("a.apps.example.org.evil.com", &t));
        assert!(!is_trusted("notexample.com", &t));
        assert!(!is_trusted(".apps.example.org", &t));
    }

    const URL: &str = "https://docs.example.com/client.json";

    fn doc(extra: &str) -> String {
        format!(
            r#"{{"client_id":"{URL}","client_name":"Docs Agent","redirect_uris":["https://docs.example.com/cb","http://127.0.0.1/callback"]{extra}}}"#
        )
    }

    #[test]
    fn document_rules() {
        let c = parse_document(URL, "docs.example.com", doc("").as_bytes(), &[]).unwrap();
        assert_eq!(c.client_id, URL);
        assert_eq!(c.client_name, "Docs Agent");
        assert_eq!(c.redirect_uris.len(), 2);
        assert_eq!(c.token_endpoint_auth_method, ClientAuthMethod::None);
        assert!(!c.verified);
        assert_eq!(c.source, ClientSource::MetadataDocument);
        assert!(c.secret_hash.is_none());
        assert_eq!(
            c.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert!(c.scope.is_none() && c.client_uri.is_none() && c.logo_uri.is_none());

        let c = parse_document(
            URL,
            "docs.example.com",
            doc(r#","token_endpoint_auth_method":"none","client_uri":"https://docs.example.com/","logo_uri":"https://docs.example.com/logo.png","scope":"notes:read  notes:write","grant_types":["authorization_code","urn:ietf:params:oauth:grant-type:device_code"],"software_id":"x"}"#.trim_end_matches('}')).as_bytes(),
            &["*.example.com".to_owned()],
        )
        .unwrap();
        assert!(c.verified);
        assert_eq!(c.client_uri.as_deref(), Some("https://docs.example.com/"));
        assert_eq!(
            c.logo_uri.as_deref(),
            Some("https://docs.example.com/logo.png")
        );
        assert_eq!(c.scope.unwrap(), ["notes:read", "notes:write"]);

        let bad: &[(String, &str)] = &[
            ("not json".into(), "is not valid JSON"),
            ("[1,2]".into(), "is not a JSON object (found an array)"),
            (
                r#"{"client_name":"A","redirect_uris":["https://a/cb"]}"#.into(),
                "has no client_id",
            ),
            (
                doc("").replace(URL, "https://docs.example.com/other.json"),
                "has client_id 'https://docs.example.com/other.json', which differs from the URL",
            ),
            (
                doc("").replace(URL, "https://docs.example.com/client.json/"),
                "differs from the URL",
            ),
            (
                r#"{"client_id":7,"client_name":"A","redirect_uris":["https://a/cb"]}"#.into(),
                "client_id that is a number",
            ),
            (doc(r#","client_secret":"s3cret""#), "carries client_secret"),
            (
                doc(r#","client_secret_expires_at":0"#),
                "carries client_secret_expires_at",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_basic""#),
                "'client_secret_basic', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_post""#),
                "'client_secret_post', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"client_secret_jwt""#),
                "'client_secret_jwt', a shared-secret method",
            ),
            (
                doc(r#","token_endpoint_auth_method":"private_key_jwt""#),
                "'private_key_jwt', which this server does not support",
            ),
            (
                doc("").replace(r#""client_name":"Docs Agent","#, ""),
                "has no client_name",
            ),
            (
                doc("").replace("Docs Agent", "  "),
                "has an empty client_name",
            ),
            (
                doc("").replace("Docs Agent", "Docs\\u202eAgent"),
                "bidirectional",
            ),
            (doc("").replace("Docs Agent", "Docs\\nAgent"), "control"),
            (
                doc("").replace("Docs Agent", &"a".repeat(201)),
                "at most 200 bytes",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A"}}"#),
                "has no redirect_uris",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":[]}}"#),
                "empty redirect_uris",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":"https://a/cb"}}"#
                ),
                "redirect_uris: is a string, not an array",
            ),
            (
                format!(r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":[5]}}"#),
                "redirect_uris[0]: is a number, not a string",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":["https://a/cb","https://a/cb#x"]}}"#
                ),
                "invalid redirect_uris[1]: redirect_uri 'https://a/cb#x' must not contain a fragment",
            ),
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":["/relative"]}}"#
                ),
                "invalid redirect_uris[0]",
            ),
            (
                doc(r#","logo_uri":"http://docs.example.com/logo.png""#),
                "logo_uri: 'http://docs.example.com/logo.png' must be an absolute https URL",
            ),
            (
                doc(r#","client_uri":"javascript:alert(1)""#),
                "client_uri: 'javascript:alert(1)'",
            ),
            (
                doc(r#","grant_types":["client_credentials"]"#),
                "client_credentials",
            ),
            (
                doc(r#","grant_types":["refresh_token"]"#),
                "does not list authorization_code",
            ),
            (
                doc(r#","grant_types":"authorization_code""#),
                "grant_types: is a string",
            ),
            (doc(r#","scope":["a"]"#), "scope: is an array"),
        ];
        for (body, expected) in bad {
            let err =
                parse_document(URL, "docs.example.com", body.as_bytes(), &[]).expect_err(body);
            assert!(
                err.contains(expected),
                "{body}\n  got: {err}\n  want: {expected}"
            );
        }
    }

    /// Where the document validator was laxer than registration's (issue 12 item 4), the
    /// stricter rule now holds: each of these was accepted.
    #[test]
    fn document_rules_are_registrations_where_they_differed() {
        let many: Vec<String> = (0..21)
            .map(|i| format!("\"https://a.example/cb{i}\""))
            .collect();
        let bad: &[(String, &str)] = &[
            // The scope grammar (RFC 6749 §3.3), as for DCR.
            (doc(r#","scope":"notes:read \"quoted\"""#), "scope"),
            // application_type is honoured: a web client has no private-use redirect URIs.
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","application_type":"web","redirect_uris":["com.example.app:/cb"]}}"#
                ),
                "redirect_uris[0]",
            ),
            (doc(r#","application_type":"ios""#), "application_type"),
            // At most 20 redirect URIs.
            (
                format!(
                    r#"{{"client_id":"{URL}","client_name":"A","redirect_uris":[{}]}}"#,
                    many.join(",")
                ),
                "20",
            ),
            // Only the code response type.
            (
                doc(r#","response_types":["code","token"]"#),
                "response_types",
            ),
            // client_name counted in bytes (200), as for DCR: 101 two-byte characters.
            (
                doc("").replace("Docs Agent", &"é".repeat(101)),
                "client_name",
            ),
            // U+061C is a bidi control like U+200E/U+200F.
            (
                doc("").replace("Docs Agent", "Docs\\u061cAgent"),
                "client_name",
            ),
        ];
        for (body, expected) in bad {
            let err =
                parse_document(URL, "docs.example.com", body.as_bytes(), &[]).expect_err(body);
            assert!(
                err.contains(expected),
                "{body}\n  got: {err}\n  want: {expected}"
            );
        }
        // Still accepted: 100 two-byte characters, a native client's private-use URI.
        let ok = [
            doc("").replace("Docs Agent", &"é".repeat(100)),
            format!(
                r#"{{"client_id":"{URL}","client_name":"A","application_type":"native","redirect_uris":["com.example.app:/cb"],"response_types":["code"]}}"#
            ),
        ];
        for body in ok {
            parse_document(URL, "docs.example.com", body.as_bytes(), &[]).expect(&body);
        }
    }
}
