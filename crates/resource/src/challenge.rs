//! `WWW-Authenticate: Bearer …` (RFC 6750 §3, RFC 9728 §5.1).

use std::fmt;

/// What every challenge of one protected resource points at.
#[derive(Debug)]
pub(crate) struct ChallengeInfo {
    /// The RFC 9728 metadata URL (`resource_metadata`).
    pub metadata_url: String,
    /// Scopes the bearer layer requires of every request: a `403 insufficient_scope` names
    /// them too, since the request needs them as well (MCP 2025-11-25 "Scope Challenge
    /// Handling": a client re-authorizes with exactly the challenged scope).
    pub required: Vec<String>,
}

/// One `Bearer` challenge. Values are reduced to the characters RFC 6750 allows inside its
/// quoted strings (no `"`, no `\`, printable ASCII only), so nothing a token carries can break
/// the header or inject parameters.
pub struct Challenge<'a> {
    /// The RFC 9728 metadata URL (`resource_metadata="…"`).
    pub resource_metadata: &'a str,
    /// Scopes the request needs; omitted when empty.
    pub scope: &'a [String],
    /// `invalid_request`, `invalid_token` or `insufficient_scope`; omitted when `None`.
    pub error: Option<&'a str>,
    /// A sentence for developers; omitted when `None`.
    pub error_description: Option<&'a str>,
}

/// RFC 6750 §3: error_description and scope values use %x20-21 / %x23-5B / %x5D-7E.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    out.extend(value.chars().map(|c| match c {
        '"' => '\'',
        '\\' => '/',
        ' '..='~' => c,
        _ => '?',
    }));
    out.push('"');
}

impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("Bearer resource_metadata=");
        push_quoted(&mut out, self.resource_metadata);
        // Scope tokens never contain spaces, quotes or backslashes (RFC 6749 §3.3); drop any
        // that would (they cannot be asked for anyway).
        let scopes: Vec<&str> = self
            .scope
            .iter()
            .map(String::as_str)
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| {
                        b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
                    })
            })
            .collect();
        if !scopes.is_empty() {
            out.push_str(", scope=");
            push_quoted(&mut out, &scopes.join(" "));
        }
        if let Some(e) = self.error {
            out.push_str(", error=");
            push_quoted(&mut out, e);
        }
        if let Some(d) = self.error_description {
            out.push_str(", error_description=");
            push_quoted(&mut out, d);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn missing_token_challenge_has_metadata_and_scope_but_no_error() {
        let scope = s(&["notes:read", "notes:write"]);
        let c = Challenge {
            resource_metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            scope: &scope,
            error: None,
            error_description: None,
        };
        assert_eq!(
            c.to_string(),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"notes:read notes:write\""
        );
    }

    #[test]
    fn invalid_token_challenge_carries_error_and_description() {
        let c = Challenge {
            resource_metadata: "http://127.0.0.1:8788/.well-known/oauth-protected-resource/mcp",
            scope: &[],
            error: Some("invalid_token"),
            error_description: Some("token expired 5s ago"),
        };
        assert_eq!(
            c.to_string(),
            "Bearer resource_metadata=\"http://127.0.0.1:8788/.well-known/oauth-protected-resource/mcp\", error=\"invalid_token\", error_description=\"token expired 5s ago\""
        );
    }

    #[test]
    fn quotes_backslashes_and_control_characters_cannot_break_out() {
        let scope = s(&["ok", "bad\"scope", "bad scope", "", "x\\y"]);
        let c = Challenge {
            resource_metadata: "http://r/\"x",
            scope: &scope,
            error: Some("invalid_token"),
            error_description: Some("aud \"evil\", error=\"none\" \\ \r\n é"),
        };
        let v = c.to_string();
        assert_eq!(
            v,
            "Bearer resource_metadata=\"http://r/'x\", scope=\"ok\", error=\"invalid_token\", error_description=\"aud 'evil', error='none' / ?? ?\""
        );
        assert!(http::HeaderValue::from_str(&v).is_ok());
    }
}
