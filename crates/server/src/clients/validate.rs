//! The one client-metadata validator, for `[[clients]]`, Dynamic Client Registration and Client
//! ID Metadata Documents alike.
//!
//! Every rule holds for every source. Where the sources differ it is on purpose, by [`Trust`]:
//! the defaults RFC 7591 and the draft give each (auth method, grant types), who may hold a
//! secret or `client_credentials`, whether `client_name` is required, and whether scopes must be
//! offered by this server (a document serves many servers). See README "One client rule".

use consentry_protocol::authorize::validate_redirect_uri;
use consentry_protocol::{
    ApplicationType, ClientAuthMethod, GrantType, RegistrationMode, is_forbidden_redirect_scheme,
    is_loopback_host, parse_scope, split_uri,
};

use super::metadata::{ClientMetadata, ValidClientMetadata};
use super::truncate;

/// Who vouches for the metadata, which decides the few rules that differ by source.
#[derive(Clone, Copy)]
pub enum Trust<'a> {
    /// `[[clients]]`: the operator. Grant types are taken as listed (no refresh_token added),
    /// `client_credentials` is allowed to confidential clients.
    Operator,
    /// Dynamic Client Registration (self-asserted). `offered_scope` says whether this server
    /// offers a scope (a registered `scope` bounds `client_credentials`, so it must);
    /// `offered_list` names them for the error message.
    Registered {
        mode: RegistrationMode,
        offered_scope: &'a dyn Fn(&str) -> bool,
        offered_list: &'a str,
    },
    /// A Client ID Metadata Document: always a public client with the code grant.
    Document,
}

/// Which OAuth error a problem is, for the registration endpoint (RFC 7591 §3.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// `invalid_redirect_uri`
    RedirectUri,
    /// `invalid_client_metadata`
    Metadata,
}

/// A rule the metadata breaks: the field at fault (`redirect_uris[2]`, `client_name`) and what is
/// wrong with it. `Display` is "field: problem"; each caller prefixes its own context (the
/// `[[clients]]` key, "client metadata document at URL has an invalid …").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    pub field: String,
    pub problem: String,
    pub kind: ProblemKind,
}

impl MetadataError {
    pub fn metadata(field: impl Into<String>, problem: impl Into<String>) -> MetadataError {
        MetadataError {
            field: field.into(),
            problem: problem.into(),
            kind: ProblemKind::Metadata,
        }
    }

    pub fn redirect(field: impl Into<String>, problem: impl Into<String>) -> MetadataError {
        MetadataError {
            field: field.into(),
            problem: problem.into(),
            kind: ProblemKind::RedirectUri,
        }
    }
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for MetadataError {}

/// Most redirect URIs a client may list.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest `client_name`, in bytes (UTF-8), after trimming.
pub const MAX_CLIENT_NAME_BYTES: usize = 200;
/// Longest client_uri, logo_uri, policy_uri, tos_uri.
const MAX_URL_BYTES: usize = 2048;

/// Check `md` under the rules of `trust` and fill the defaults. Nothing is stored or changed on
/// an error; the first rule broken is reported.
pub fn validate(
    md: ClientMetadata,
    trust: Trust<'_>,
) -> Result<ValidClientMetadata, MetadataError> {
    let application_type = md
        .application_type
        .unwrap_or_else(|| default_application_type(&md.redirect_uris));
    let auth = md.token_endpoint_auth_method.unwrap_or(match trust {
        // RFC 7591 §2: client_secret_basic when omitted.
        Trust::Registered { .. } => ClientAuthMethod::ClientSecretBasic,
        Trust::Operator | Trust::Document => ClientAuthMethod::None,
    });
    if matches!(trust, Trust::Document) && auth.is_confidential() {
        return Err(MetadataError::metadata(
            "token_endpoint_auth_method",
            format!(
                "'{auth}' is a shared-secret method, which a metadata document must not use; expected none"
            ),
        ));
    }
    let grant_types = grant_types(md.grant_types, auth, trust)?;
    let response_types = match md.response_types {
        None => vec!["code".to_owned()],
        Some(r) if r.is_empty() => vec!["code".to_owned()],
        Some(r) => r,
    };
    if let Some(bad) = response_types.iter().find(|r| *r != "code") {
        return Err(MetadataError::metadata(
            "response_types",
            format!("'{}' is not supported; expected 'code'", truncate(bad)),
        ));
    }
    let uses_code = grant_types.contains(&GrantType::AuthorizationCode);
    if uses_code && md.redirect_uris.is_empty() {
        return Err(MetadataError::redirect(
            "redirect_uris",
            "is required for the authorization_code grant",
        ));
    }
    if md.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(MetadataError::redirect(
            "redirect_uris",
            format!("may list at most {MAX_REDIRECT_URIS} URIs"),
        ));
    }
    for (i, uri) in md.redirect_uris.iter().enumerate() {
        if let Some(problem) = redirect_uri_problem(uri, application_type) {
            return Err(MetadataError::redirect(
                format!("redirect_uris[{i}]"),
                problem,
            ));
        }
    }
    let client_name = match (md.client_name, trust) {
        (Some(name), _) => Some(text("client_name", &name, MAX_CLIENT_NAME_BYTES)?),
        // RFC 7591 makes it optional: a registered client is then shown by its id.
        (None, Trust::Registered { .. }) => None,
        (None, _) => {
            return Err(MetadataError::metadata(
                "client_name",
                "is required; it is shown on the consent screen",
            ));
        }
    };
    let software_id = md
        .software_id
        .map(|v| text("software_id", &v, 200))
        .transpose()?;
    let software_version = md
        .software_version
        .map(|v| text("software_version", &v, 100))
        .transpose()?;
    for (field, value) in [
        ("client_uri", &md.client_uri),
        ("logo_uri", &md.logo_uri),
        ("policy_uri", &md.policy_uri),
        ("tos_uri", &md.tos_uri),
    ] {
        if let Some(v) = value {
            shown_url(field, v)?;
        }
    }
    if md.contacts.len() > 10 || md.contacts.iter().any(|c| c.is_empty() || c.len() > 320) {
        return Err(MetadataError::metadata(
            "contacts",
            "must list at most 10 non-empty addresses",
        ));
    }
    let scope = match &md.scope {
        None => None,
        Some(scope) => {
            let scopes = parse_scope(Some(scope))
                .map_err(|e| MetadataError::metadata("scope", e.to_string()))?;
            if let Trust::Registered {
                offered_scope,
                offered_list,
                ..
            } = trust
                && let Some(unknown) = scopes.iter().find(|s| !offered_scope(s))
            {
                return Err(MetadataError::metadata(
                    "scope",
                    format!(
                        "'{}' is not offered by this server; offered: {offered_list}",
                        truncate(unknown)
                    ),
                ));
            }
            (!scopes.is_empty()).then(|| scopes.join(" "))
        }
    };
    Ok(ValidClientMetadata {
        client_name,
        redirect_uris: md.redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: auth,
        application_type,
        client_uri: md.client_uri,
        logo_uri: md.logo_uri,
        scope,
        contacts: md.contacts,
        policy_uri: md.policy_uri,
        tos_uri: md.tos_uri,
        software_id,
        software_version,
    })
}

fn grant_types(
    listed: Option<Vec<GrantType>>,
    auth: ClientAuthMethod,
    trust: Trust<'_>,
) -> Result<Vec<GrantType>, MetadataError> {
    use GrantType::{AuthorizationCode, ClientCredentials, RefreshToken};
    let mut grants = match (listed, trust) {
        // RFC 7591 §2: authorization_code when omitted (an empty list reads the same).
        (None, Trust::Registered { .. }) => vec![AuthorizationCode],
        (Some(g), Trust::Registered { .. }) if g.is_empty() => vec![AuthorizationCode],
        (None, _) => vec![AuthorizationCode, RefreshToken],
        (Some(g), _) => g,
    };
    if grants.contains(&ClientCredentials) {
        if !auth.is_confidential() {
            return Err(MetadataError::metadata(
                "grant_types",
                "client_credentials needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)",
            ));
        }
        // Open registration lets anyone register: a client_credentials client would get tokens
        // with no user and no consent behind them.
        if let Trust::Registered {
            mode: RegistrationMode::Open,
            ..
        } = trust
        {
            return Err(MetadataError::metadata(
                "grant_types",
                "client_credentials is not available through open registration (registration.mode = \"open\"); expected authorization_code and refresh_token, or register with an initial access token (registration.mode = \"initial_access_token\")",
            ));
        }
    }
    match trust {
        Trust::Operator if grants.is_empty() => {
            return Err(MetadataError::metadata(
                "grant_types",
                "must list at least one of authorization_code, refresh_token, client_credentials",
            ));
        }
        // Grants this server does not implement were skipped from the document's list.
        Trust::Document if !grants.contains(&AuthorizationCode) => {
            return Err(MetadataError::metadata(
                "grant_types",
                "does not list authorization_code, the only grant a metadata-document client can use here",
            ));
        }
        _ => {}
    }
    let has_code = grants.contains(&AuthorizationCode);
    if grants.contains(&RefreshToken) && !has_code {
        return Err(MetadataError::metadata(
            "grant_types",
            "refresh_token without authorization_code: only codes lead to refresh tokens here; add authorization_code or remove refresh_token",
        ));
    }
    // A client that can get codes may refresh: every MCP client expects refresh tokens. The
    // operator's list is taken as written.
    if has_code && !grants.contains(&RefreshToken) && !matches!(trust, Trust::Operator) {
        grants.push(RefreshToken);
    }
    Ok(grants)
}

/// Unicode's Bidi_Control characters (embeddings, overrides, isolates and the LRM, RLM and ALM
/// marks): they reorder the text around them, so a client_name could render on the consent
/// screen as something other than its characters.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Text shown to the user: no control or bidi-control characters anywhere, then trimmed,
/// non-empty, at most `max` bytes. Returns the trimmed text.
fn text(field: &str, value: &str, max: usize) -> Result<String, MetadataError> {
    let trimmed = value.trim();
    if trimmed.is_empty()
        || trimmed.len() > max
        || value.chars().any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(MetadataError::metadata(
            field,
            format!(
                "must be non-empty text of at most {max} bytes without control or bidirectional formatting characters"
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// client_uri, logo_uri, policy_uri, tos_uri: shown as a link or an image on the consent
/// screen, so https with a host, the URI grammar of redirect URIs, no fragment.
fn shown_url(field: &str, v: &str) -> Result<(), MetadataError> {
    let ok = v.len() <= MAX_URL_BYTES
        && validate_redirect_uri(v).is_ok()
        && split_uri(v)
            .is_some_and(|p| p.scheme == "https" && p.host.is_some_and(|h| !h.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(MetadataError::metadata(
            field,
            format!(
                "'{}' must be an absolute https URL without a fragment",
                truncate(v)
            ),
        ))
    }
}

/// What is wrong with `uri` as a redirect URI of a client of `application_type`, or `None`.
/// One rule for every client, the operator's included.
pub fn redirect_uri_problem(uri: &str, application_type: ApplicationType) -> Option<String> {
    if let Err(e) = validate_redirect_uri(uri) {
        return Some(e.to_string());
    }
    let Some(parts) = split_uri(uri) else {
        return Some(format!("'{}' is not an absolute URI", truncate(uri)));
    };
    let scheme = parts.scheme.to_ascii_lowercase();
    if is_forbidden_redirect_scheme(&scheme) {
        return Some(format!(
            "scheme '{scheme}' of '{}' is never a redirect target; expected https, loopback http or a private-use scheme",
            truncate(uri)
        ));
    }
    let loopback = parts.host.is_some_and(is_loopback_host);
    let ok = match application_type {
        ApplicationType::Web => scheme == "https" || (scheme == "http" && loopback),
        // RFC 8252: loopback http (§7.3, any port at authorization time), a private-use scheme
        // (§7.1) or a claimed https URI (§7.2). VS Code registers as native with
        // https://vscode.dev/redirect next to its loopback URIs.
        ApplicationType::Native => scheme != "http" || loopback,
    };
    if !ok {
        let expected = match application_type {
            ApplicationType::Web => {
                "https, or http on a loopback host (127.0.0.1, [::1], localhost)"
            }
            ApplicationType::Native => {
                "https, http on a loopback host, or a private-use scheme such as com.example.app:/callback"
            }
        };
        return Some(format!(
            "'{}' is not allowed for application_type '{application_type}'; expected {expected}",
            truncate(uri)
        ));
    }
    if parts.host.is_none() && scheme.contains("http") {
        return Some(format!("'{}' has no host", truncate(uri)));
    }
    None
}

/// The application type of a client that did not say: native when a redirect URI uses a
/// private-use scheme, else web. (RFC 7591 has no application_type and OpenID Connect
/// Registration defaults it to web, but Cursor registers
/// cursor://anysphere.cursor-mcp/oauth/callback without one: web would refuse every such client.)
pub fn default_application_type(redirect_uris: &[String]) -> ApplicationType {
    let private_use = redirect_uris.iter().any(|u| {
        split_uri(u).is_some_and(|p| {
            !p.scheme.eq_ignore_ascii_case("http") && !p.scheme.eq_ignore_ascii_case("https")
        })
    });
    if private_use {
        ApplicationType::Native
    } else {
        ApplicationType::Web
    }
}

/// The scheme of `uri` when it is one that is never a redirect target (checked again when a
/// code or an error is about to be sent, whatever registered the client and whenever).
pub fn forbidden_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    is_forbidden_redirect_scheme(scheme).then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(uris: &[&str]) -> ClientMetadata {
        ClientMetadata {
            client_name: Some("App".into()),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            ..ClientMetadata::default()
        }
    }

    const ANY: &dyn Fn(&str) -> bool = &|_| true;

    fn registered() -> Trust<'static> {
        Trust::Registered {
            mode: RegistrationMode::InitialAccessToken,
            offered_scope: ANY,
            offered_list: "",
        }
    }

    #[test]
    fn defaults_differ_by_source_as_their_specs_say() {
        let v = validate(md(&["https://a.example/cb"]), registered()).unwrap();
        assert_eq!(
            v.token_endpoint_auth_method,
            ClientAuthMethod::ClientSecretBasic
        );
        assert_eq!(
            v.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(v.application_type, ApplicationType::Web);
        for trust in [Trust::Operator, Trust::Document] {
            let v = validate(md(&["com.example.app:/cb"]), trust).unwrap();
            assert_eq!(v.token_endpoint_auth_method, ClientAuthMethod::None);
            assert_eq!(v.application_type, ApplicationType::Native);
            assert_eq!(
                v.grant_types,
                [GrantType::AuthorizationCode, GrantType::RefreshToken]
            );
        }
        // The operator's list is taken as written; a registration's gets refresh_token.
        let mut only_code = md(&["https://a.example/cb"]);
        only_code.grant_types = Some(vec![GrantType::AuthorizationCode]);
        assert_eq!(
            validate(only_code.clone(), Trust::Operator)
                .unwrap()
                .grant_types,
            [GrantType::AuthorizationCode]
        );
        assert_eq!(
            validate(only_code, registered()).unwrap().grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
    }

    #[test]
    fn client_name_is_required_except_for_registrations() {
        let mut m = md(&["https://a.example/cb"]);
        m.client_name = None;
        assert!(
            validate(m.clone(), registered())
                .unwrap()
                .client_name
                .is_none()
        );
        for trust in [Trust::Operator, Trust::Document] {
            assert_eq!(validate(m.clone(), trust).unwrap_err().field, "client_name");
        }
    }

    #[test]
    fn client_name_rules_are_one() {
        for trust in [Trust::Operator, registered(), Trust::Document] {
            for bad in [
                "",
                "  ",
                "A\u{0}",
                "A\nB",
                "A\u{202e}B",
                "A\u{200e}B",
                "A\u{200f}B",
                "A\u{61c}B",
                "A\u{2066}B",
                &"é".repeat(101),
                &"n".repeat(201),
            ] {
                let mut m = md(&["https://a.example/cb"]);
                m.client_name = Some(bad.to_owned());
                let e = validate(m, trust).unwrap_err();
                assert_eq!(e.field, "client_name", "{bad:?}");
            }
            let mut m = md(&["https://a.example/cb"]);
            m.client_name = Some(format!(" {} ", "é".repeat(100)));
            assert_eq!(
                validate(m, trust).unwrap().client_name.unwrap(),
                "é".repeat(100)
            );
        }
    }

    #[test]
    fn shown_urls_are_https_only_for_everyone() {
        for trust in [Trust::Operator, registered(), Trust::Document] {
            for bad in [
                "http://127.0.0.1/logo.png",
                "http://a.example/logo.png",
                "https://a.example/logo.png#x",
                "javascript:alert(1)",
                "https://a.example\\@evil.example/",
                "/logo.png",
                "https:///logo.png",
            ] {
                let mut m = md(&["https://a.example/cb"]);
                m.logo_uri = Some(bad.into());
                assert_eq!(validate(m, trust).unwrap_err().field, "logo_uri", "{bad}");
            }
        }
    }

    #[test]
    fn grants_are_checked_alike() {
        let with = |grants: Vec<GrantType>, auth: ClientAuthMethod| {
            let mut m = md(&["https://a.example/cb"]);
            m.grant_types = Some(grants);
            m.token_endpoint_auth_method = Some(auth);
            m
        };
        use ClientAuthMethod::{ClientSecretBasic, None as Public};
        use GrantType::*;
        for trust in [Trust::Operator, registered(), Trust::Document] {
            let e = validate(with(vec![RefreshToken], Public), trust).unwrap_err();
            assert_eq!(e.field, "grant_types");
            let e = validate(with(vec![ClientCredentials], Public), trust).unwrap_err();
            assert_eq!(e.field, "grant_types");
        }
        assert!(
            validate(
                with(vec![ClientCredentials], ClientSecretBasic),
                Trust::Operator
            )
            .is_ok()
        );
        assert!(
            validate(
                with(vec![ClientCredentials], ClientSecretBasic),
                registered()
            )
            .is_ok()
        );
        let open = Trust::Registered {
            mode: RegistrationMode::Open,
            offered_scope: ANY,
            offered_list: "",
        };
        let e = validate(with(vec![ClientCredentials], ClientSecretBasic), open).unwrap_err();
        assert!(e.problem.contains("open registration"), "{e}");
        let e = validate(
            with(vec![AuthorizationCode], ClientSecretBasic),
            Trust::Document,
        )
        .unwrap_err();
        assert_eq!(e.field, "token_endpoint_auth_method");
        let e = validate(with(vec![], Public), Trust::Operator).unwrap_err();
        assert_eq!(e.field, "grant_types");
    }

    #[test]
    fn redirect_uris_are_checked_alike() {
        for trust in [Trust::Operator, registered(), Trust::Document] {
            for (uris, field) in [
                (vec!["http://a.example/cb"], "redirect_uris[0]"),
                (
                    vec!["https://a.example/cb", "javascript:alert(1)//"],
                    "redirect_uris[1]",
                ),
                (vec!["https://a.example/cb#f"], "redirect_uris[0]"),
                (vec![], "redirect_uris"),
            ] {
                let e = validate(md(&uris), trust).unwrap_err();
                assert_eq!(
                    (e.field.as_str(), e.kind),
                    (field, ProblemKind::RedirectUri)
                );
            }
            let many: Vec<String> = (0..21).map(|i| format!("https://a.example/{i}")).collect();
            let many: Vec<&str> = many.iter().map(String::as_str).collect();
            assert_eq!(
                validate(md(&many), trust).unwrap_err().field,
                "redirect_uris"
            );
            let mut web = md(&["com.example.app:/cb"]);
            web.application_type = Some(ApplicationType::Web);
            assert_eq!(validate(web, trust).unwrap_err().field, "redirect_uris[0]");
        }
    }

    #[test]
    fn scope_grammar_for_all_offered_for_registrations() {
        let with = |s: &str| {
            let mut m = md(&["https://a.example/cb"]);
            m.scope = Some(s.into());
            m
        };
        for trust in [Trust::Operator, registered(), Trust::Document] {
            assert_eq!(validate(with("a \"b\""), trust).unwrap_err().field, "scope");
        }
        let offered = |s: &str| s == "notes:read";
        let reg = Trust::Registered {
            mode: RegistrationMode::Open,
            offered_scope: &offered,
            offered_list: "notes:read",
        };
        assert!(validate(with("notes:delete"), reg).is_err());
        assert_eq!(
            validate(with(" notes:read  "), reg)
                .unwrap()
                .scope
                .as_deref(),
            Some("notes:read")
        );
        // A document serves many servers: scopes of others are not an error.
        assert!(validate(with("other:scope"), Trust::Document).is_ok());
        assert!(validate(with(""), reg).unwrap().scope.is_none());
    }
}
