//! The one authorization decision: whether a token may be issued, and for what.
//!
//! Every path that issues a token calls [`decide`]: the authorization screen (start and submit),
//! code redemption, refresh and `client_credentials`. Each rule is a function called from here,
//! so a new rule (an organization's policy, say) is written once and holds on every path. The
//! decision is pure: the flow loads what it needs (the client, the user's current roles, the
//! consent already given) and passes the time in.

use consentry_protocol::wire::NotGrantable;
use consentry_protocol::{
    AppMode, AuthorizeRequest, ErrorCode, GrantType, OrgPolicy, RegistrationMode,
};

use crate::clients::{Client, quoted_list, truncate};
use crate::config::{Config, ResourceConfig};
use crate::domain::{Denial, Refusal};

/// The grant a path issues under (RFC 6749 grant types; the screen issues codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `/authorize`: the consent screen's start and submit.
    Authorize,
    /// `grant_type=authorization_code`.
    CodeRedemption,
    /// `grant_type=refresh_token`.
    Refresh,
    /// `grant_type=client_credentials`.
    ClientCredentials,
}

impl Path {
    /// A stable name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Authorize => "authorize",
            Path::CodeRedemption => "authorization_code",
            Path::Refresh => "refresh_token",
            Path::ClientCredentials => "client_credentials",
        }
    }

    /// The client's registered grant type this path needs.
    pub fn grant_type(self) -> GrantType {
        match self {
            Path::Authorize | Path::CodeRedemption => GrantType::AuthorizationCode,
            Path::Refresh => GrantType::RefreshToken,
            Path::ClientCredentials => GrantType::ClientCredentials,
        }
    }
}

/// The user a token would act for, as known now (the roles of their latest attestation).
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub roles: &'a [String],
}

/// What is being asked, per path.
pub enum Ask<'a> {
    /// The consent screen. `consent` is `None` at start (what to show), `Some(answer)` at submit.
    Authorize {
        req: &'a AuthorizeRequest,
        /// The redirect URI resolved against the client's registration.
        redirect_uri: &'a str,
        /// When the session's Trusted Auth Token was attested.
        attested_at: i64,
        /// (resource, scope) pairs this user already granted this client here.
        granted: &'a [(String, String)],
        consent: Option<bool>,
    },
    /// A code's grant, as sealed at submit, and the resources the token request narrows to.
    Code {
        scopes: &'a [String],
        resources: &'a [String],
        requested_resources: &'a [String],
    },
    /// A refresh token's grant and what the request narrows it to.
    Refresh {
        /// When the grant began (consent): lifetime limits count from here.
        grant_created_at: i64,
        granted_scopes: &'a [String],
        resources: &'a [String],
        requested_scopes: Option<&'a [String]>,
        requested_resources: &'a [String],
    },
    /// A client acting for itself.
    ClientCredentials {
        requested_scopes: &'a [String],
        requested_resources: &'a [String],
    },
}

/// The organization a token would act in (the member's; for `client_credentials`, the
/// implicit one), with its policy as it is now.
#[derive(Clone, Copy, Debug)]
pub struct Org<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub policy: &'a OrgPolicy,
}

impl Org<'_> {
    /// How people know it: its name, else its id.
    pub fn display(&self) -> &str {
        self.name.unwrap_or(self.id)
    }
}

/// An app as an organization's policy sees it: first-party (`[[clients]]`, admin-created) or
/// third-party (registered itself, or known by a metadata document, with that document's host).
#[derive(Clone, Debug)]
pub struct App<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub first_party: bool,
    pub host: Option<String>,
}

impl<'a> App<'a> {
    pub fn of(client: &'a Client) -> App<'a> {
        App {
            client_id: &client.client_id,
            name: &client.client_name,
            first_party: client.is_first_party(),
            host: client.metadata_host(),
        }
    }
}

/// Everything a decision may look at besides the ask.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub client: &'a Client,
    /// The user (not for `client_credentials`).
    pub subject: Option<Subject<'a>>,
    pub org: Org<'a>,
    pub now: i64,
}

/// Lifetimes a grant is issued with: the server's, within the organization's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub access_token_ttl_seconds: i64,
    pub grant_max_lifetime_seconds: i64,
}

/// The server's lifetimes, shortened by the organization's `limits`.
pub fn limits(cfg: &Config, org: Org<'_>) -> Limits {
    let l = &org.policy.limits;
    Limits {
        access_token_ttl_seconds: l
            .access_token_ttl_seconds
            .map_or(cfg.access_token_ttl_seconds, |v| {
                v.min(cfg.access_token_ttl_seconds)
            }),
        grant_max_lifetime_seconds: l
            .grant_max_lifetime_seconds
            .map_or(cfg.grant_max_lifetime_seconds, |v| {
                v.min(cfg.grant_max_lifetime_seconds)
            }),
    }
}

/// One requested (resource, scope) pair, as the consent screen shows it.
#[derive(Clone, Debug)]
pub struct ScopeLine {
    pub resource: String,
    pub scope: String,
    pub description: String,
    /// The user may grant it (holds one of its `required_roles`, if any, and the organization
    /// allows it).
    pub grantable: bool,
    /// Why not, when not grantable.
    pub reason: Option<NotGrantable>,
    /// The user granted it to this client before.
    pub already: bool,
}

/// What the consent screen is about: the resources and a line per (resource, scope).
#[derive(Clone, Debug)]
pub struct Screen {
    pub resources: Vec<ResourceConfig>,
    pub lines: Vec<ScopeLine>,
}

/// The token (or code) a decision allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Scopes, de-duplicated, in request order.
    pub scopes: Vec<String>,
    /// Resource URIs (the token's audience; for a code, what it may be redeemed for).
    pub audience: Vec<String>,
    /// (resource, scope) pairs the user consented to just now, to remember.
    pub new_consent: Vec<(String, String)>,
    /// Lifetimes, within the organization's limits.
    pub limits: Limits,
}

/// The outcome.
#[derive(Debug)]
pub enum Decision {
    /// Issue: at start the screen is still returned (nothing new to ask: the page may submit
    /// straight away).
    Issue {
        grant: Grant,
        screen: Option<Screen>,
    },
    /// The user must consent to what the screen shows (start only).
    NeedsConsent { screen: Screen },
    /// The user's answer was no, or left nothing to grant (submit only): unlike a denial, this
    /// always goes back to the client, whoever registered it — it is the user's decision.
    Declined(Denial),
    /// A rule refused.
    Deny(Denial),
}

/// Decide. The rules run in a fixed order; the first refusal is the answer.
pub fn decide(cx: &Context<'_>, ask: &Ask<'_>) -> Decision {
    match run(cx, ask) {
        Ok(d) => d,
        Err(denial) => Decision::Deny(denial),
    }
}

fn run(cx: &Context<'_>, ask: &Ask<'_>) -> Result<Decision, Denial> {
    match ask {
        Ask::Authorize {
            req,
            redirect_uri,
            attested_at,
            granted,
            consent,
        } => {
            client_may_use(cx.client, Path::Authorize)?;
            let subject = user(cx)?;
            org_allows_app(cx.org, &App::of(cx.client), Path::Authorize)?;
            prompt_login(cx, req, *attested_at)?;
            let resources = authorize_resources(cx.cfg, &req.resources)?;
            let scopes = requested_or_default_scopes(&req.scopes, &resources)?;
            let lines = scope_lines(cx.cfg, cx.org, &resources, &scopes, subject, granted)?;
            let screen = Screen { resources, lines };
            authorize_outcome(cx, req, redirect_uri, screen, *consent)
        }
        Ask::Code {
            scopes,
            resources,
            requested_resources,
        } => {
            client_may_use(cx.client, Path::CodeRedemption)?;
            let subject = user(cx)?;
            grant_stands(
                cx.org,
                &App::of(cx.client),
                scopes,
                Some(subject.roles),
                cx.now,
                cx.now,
                Path::CodeRedemption,
            )?;
            let scopes = role_gate(cx.cfg, cx.org, scopes.to_vec(), subject, "code")?;
            let audience = narrow_resources(requested_resources, resources)?;
            Ok(issue(scopes, audience, limits(cx.cfg, cx.org)))
        }
        Ask::Refresh {
            grant_created_at,
            granted_scopes,
            resources,
            requested_scopes,
            requested_resources,
        } => {
            client_may_use(cx.client, Path::Refresh)?;
            let subject = user(cx)?;
            grant_stands(
                cx.org,
                &App::of(cx.client),
                granted_scopes,
                Some(subject.roles),
                *grant_created_at,
                cx.now,
                Path::Refresh,
            )?;
            let scopes = narrow_scopes(granted_scopes, *requested_scopes)?;
            let scopes = role_gate(cx.cfg, cx.org, scopes, subject, "refresh_token")?;
            let audience = narrow_resources(requested_resources, resources)?;
            Ok(issue(scopes, audience, limits(cx.cfg, cx.org)))
        }
        Ask::ClientCredentials {
            requested_scopes,
            requested_resources,
        } => {
            client_may_use(cx.client, Path::ClientCredentials)?;
            client_may_act_for_itself(cx.cfg, cx.client)?;
            org_allows_app(cx.org, &App::of(cx.client), Path::ClientCredentials)?;
            let all: Vec<String> = cx.cfg.resources.iter().map(|r| r.uri.clone()).collect();
            let audience = if requested_resources.is_empty() {
                only_resource(&all)?
            } else {
                narrow_resources(requested_resources, &all)?
            };
            let scopes = client_scopes(cx.cfg, cx.client, &audience, requested_scopes)?;
            if let Some(sc) = scopes.iter().find(|sc| cx.org.policy.disallows(sc)) {
                return Err(deny(
                    ErrorCode::InvalidScope,
                    format!(
                        "scope '{}' is not allowed by the policy of organization '{}' (scopes.disallowed)",
                        truncate(sc),
                        cx.org.display()
                    ),
                ));
            }
            Ok(issue(scopes, audience, limits(cx.cfg, cx.org)))
        }
    }
}

fn issue(scopes: Vec<String>, audience: Vec<String>, limits: Limits) -> Decision {
    Decision::Issue {
        grant: Grant {
            scopes,
            audience,
            new_consent: Vec::new(),
            limits,
        },
        screen: None,
    }
}

/// The organization's rule for this kind of app (`first_party` or `third_party`). The
/// description names the rule, never the allow-list. On the consent screen the refusal carries
/// the app's and the organization's names for the user; an agent receives `access_denied`.
pub fn org_allows_app(org: Org<'_>, app: &App<'_>, path: Path) -> Result<(), Denial> {
    let (kind, rule) = if app.first_party {
        ("first_party", &org.policy.first_party)
    } else {
        ("third_party", &org.policy.third_party)
    };
    let allowed = match rule.mode {
        AppMode::AllAllowed => true,
        AppMode::NotAllowed => false,
        AppMode::Restricted => {
            rule.allow_clients.iter().any(|c| c == app.client_id)
                || (!app.first_party
                    && app.host.as_deref().is_some_and(|h| {
                        rule.allow_hosts
                            .iter()
                            .any(|e| consentry_protocol::policy::host_matches(e, h))
                    }))
        }
    };
    if allowed {
        return Ok(());
    }
    let description = format!(
        "the policy of organization '{}' does not allow app '{}' ({kind}.mode = \"{}\")",
        truncate(org.display()),
        truncate(app.name),
        rule.mode.as_str()
    );
    Err(match path {
        Path::Authorize => Denial {
            code: ErrorCode::AppNotAllowedForOrg,
            description,
            refusal: Some(Refusal {
                client_name: app.name.to_owned(),
                organization_name: org.display().to_owned(),
            }),
        },
        Path::CodeRedemption | Path::Refresh => deny(
            ErrorCode::InvalidGrant,
            format!("{description}; the grant is no longer usable"),
        ),
        Path::ClientCredentials => deny(ErrorCode::UnauthorizedClient, description),
    })
}

/// Whether an existing grant still stands under its organization's policy: the app is allowed,
/// no granted scope is disallowed, every granted scope with an organization `required_roles`
/// entry is held by the member (`roles`: as last attested; `None`: the member is gone), and the
/// grant is within the organization's `grant_max_lifetime_seconds`. Code redemption and refresh
/// run it through [`decide`]; a policy change runs it on every live grant of the organization
/// and revokes those it refuses, so what a change revokes is exactly what a refresh would refuse.
pub fn grant_stands(
    org: Org<'_>,
    app: &App<'_>,
    scopes: &[String],
    roles: Option<&[String]>,
    created_at: i64,
    now: i64,
    path: Path,
) -> Result<(), Denial> {
    org_allows_app(org, app, path)?;
    let who = truncate(org.display());
    if let Some(sc) = scopes.iter().find(|sc| org.policy.disallows(sc)) {
        return Err(deny(
            ErrorCode::InvalidGrant,
            format!(
                "scope '{}' is not allowed by the policy of organization '{who}' (scopes.disallowed); the grant is no longer usable",
                truncate(sc)
            ),
        ));
    }
    for sc in scopes {
        if let Some(required) = org.policy.scopes.required_roles.get(sc)
            && !roles.is_some_and(|held| required.iter().any(|r| held.contains(r)))
        {
            return Err(deny(
                ErrorCode::InvalidGrant,
                format!(
                    "scope '{}' requires one of the roles {} in organization '{who}' (scopes.required_roles), which the user does not hold; the grant is no longer usable",
                    truncate(sc),
                    quoted_list(required)
                ),
            ));
        }
    }
    if let Some(max) = org.policy.limits.grant_max_lifetime_seconds
        && now.saturating_sub(created_at) >= max
    {
        return Err(deny(
            ErrorCode::InvalidGrant,
            format!(
                "the grant is older than organization '{who}' allows ({max} s, limits.grant_max_lifetime_seconds); authorize again"
            ),
        ));
    }
    Ok(())
}

fn deny(code: ErrorCode, description: impl Into<String>) -> Denial {
    Denial::new(code, description)
}

fn user<'a>(cx: &Context<'a>) -> Result<Subject<'a>, Denial> {
    cx.subject.ok_or_else(|| {
        deny(
            ErrorCode::InvalidGrant,
            "the grant belongs to a user who no longer exists; authorize again",
        )
    })
}

/// The client registered the grant type this path issues under (and, for `client_credentials`,
/// holds a secret).
pub fn client_may_use(client: &Client, path: Path) -> Result<(), Denial> {
    let grant = path.grant_type();
    if path == Path::ClientCredentials {
        if !client.is_confidential() || !client.allows_grant(grant) {
            return Err(deny(
                ErrorCode::UnauthorizedClient,
                format!(
                    "client '{}' may not use the client_credentials grant (it needs a secret and client_credentials in its grant_types)",
                    client.client_id
                ),
            ));
        }
        return Ok(());
    }
    if !client.allows_grant(grant) {
        let what = match path {
            Path::Refresh => format!(
                "client '{}' may not use the refresh_token grant (not in its grant_types)",
                client.client_id
            ),
            _ => format!(
                "client '{}' is not registered for the authorization_code grant",
                client.client_id
            ),
        };
        return Err(deny(ErrorCode::UnauthorizedClient, what));
    }
    Ok(())
}

/// A client acting for itself must be one the operator vouches for: from `[[clients]]`, or
/// registered while registration needed an initial access token.
fn client_may_act_for_itself(cfg: &Config, client: &Client) -> Result<(), Denial> {
    if !client.is_first_party() && cfg.registration.mode == RegistrationMode::Open {
        // Registered before the server opened its registration, or through an older release
        // that allowed it: anyone can register under open registration.
        return Err(deny(
            ErrorCode::UnauthorizedClient,
            format!(
                "client '{}' may not use the client_credentials grant: it registered itself and registration.mode is \"open\"; expected a client from [[clients]] or registration.mode = \"initial_access_token\"",
                client.client_id
            ),
        ));
    }
    Ok(())
}

/// `prompt=login` asks for a fresh sign-in. Consentry's sign-in is the attestation of a Trusted
/// Auth Token: the session must have been attested recently.
fn prompt_login(cx: &Context<'_>, req: &AuthorizeRequest, attested_at: i64) -> Result<(), Denial> {
    let max_age = cx.cfg.prompt_login_max_age_seconds;
    if req.prompt.login && cx.now - attested_at > max_age {
        return Err(deny(
            ErrorCode::LoginRequired,
            format!(
                "prompt=login needs a session attested within the last {max_age} s (prompt_login_max_age_seconds); attest a fresh trusted auth token"
            ),
        ));
    }
    Ok(())
}

fn resource_list(cfg: &Config) -> String {
    quoted_list(
        &cfg.resources
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
    )
}

/// The requested resources (RFC 8707), each served here; none requested means the only one.
fn authorize_resources(cfg: &Config, requested: &[String]) -> Result<Vec<ResourceConfig>, Denial> {
    if requested.is_empty() {
        return match cfg.resources.as_slice() {
            [only] => Ok(vec![only.clone()]),
            _ => Err(deny(
                ErrorCode::InvalidTarget,
                format!(
                    "resource is required; expected one of: {}",
                    resource_list(cfg)
                ),
            )),
        };
    }
    requested
        .iter()
        .map(|r| {
            cfg.resource(r).cloned().ok_or_else(|| {
                deny(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource '{}' is not served by this authorization server; expected one of: {}",
                        truncate(r),
                        resource_list(cfg)
                    ),
                )
            })
        })
        .collect()
}

fn only_resource(all: &[String]) -> Result<Vec<String>, Denial> {
    match all {
        [only] => Ok(vec![only.clone()]),
        _ => Err(deny(
            ErrorCode::InvalidTarget,
            format!(
                "resource is required; expected one of: {}",
                quoted_list(all)
            ),
        )),
    }
}

/// The requested scopes (`offline_access` left out: refresh tokens are always issued, so it adds
/// nothing to show), or the resources' `default_scopes` when none were requested.
fn requested_or_default_scopes(
    requested: &[String],
    resources: &[ResourceConfig],
) -> Result<Vec<String>, Denial> {
    let mut scopes: Vec<String> = requested
        .iter()
        .filter(|sc| sc.as_str() != "offline_access")
        .cloned()
        .collect();
    if scopes.is_empty() {
        for d in resources.iter().flat_map(|r| &r.default_scopes) {
            if !scopes.contains(d) {
                scopes.push(d.clone());
            }
        }
        if scopes.is_empty() {
            return Err(deny(
                ErrorCode::InvalidScope,
                "scope is empty and the requested resource has no default_scopes; request a scope explicitly",
            ));
        }
    }
    Ok(scopes)
}

/// The roles granting `scope` needs: the organization's `scopes.required_roles` entry, else the
/// server's `[scopes.X] required_roles` (empty: none).
fn required_roles<'a>(cfg: &'a Config, org: Org<'a>, scope: &str) -> &'a [String] {
    if let Some(roles) = org.policy.scopes.required_roles.get(scope) {
        return roles;
    }
    cfg.scopes
        .get(scope)
        .map_or(&[][..], |d| d.required_roles.as_slice())
}

/// Whether `subject` may grant `scope`: it needs no role, or the user holds one of them.
pub fn may_grant(cfg: &Config, org: Org<'_>, scope: &str, subject: Subject<'_>) -> bool {
    let required = required_roles(cfg, org, scope);
    required.is_empty() || required.iter().any(|r| subject.roles.contains(r))
}

/// A line per (resource, scope). A registered `scope` (DCR) is NOT a ceiling here: the user
/// consents to each scope on this screen, and MCP clients register with their first request's
/// scope only, then step up (403 insufficient_scope -> a new authorization request for more).
/// Scopes must exist on the requested resources; `client_credentials` — no user — keeps the
/// ceiling.
fn scope_lines(
    cfg: &Config,
    org: Org<'_>,
    resources: &[ResourceConfig],
    scopes: &[String],
    subject: Subject<'_>,
    granted: &[(String, String)],
) -> Result<Vec<ScopeLine>, Denial> {
    let already =
        |resource: &str, scope: &str| granted.iter().any(|(gr, gs)| gr == resource && gs == scope);
    let mut lines = Vec::new();
    for sc in scopes {
        // OpenID scopes are about this server's own userinfo: granted on the issuer.
        if let Some(description) = crate::domain::oidc_description(sc) {
            lines.push(ScopeLine {
                resource: cfg.issuer.clone(),
                scope: sc.clone(),
                description: description.to_owned(),
                grantable: true,
                reason: None,
                already: already(&cfg.issuer, sc),
            });
            continue;
        }
        let on: Vec<&ResourceConfig> = resources.iter().filter(|r| r.scopes.contains(sc)).collect();
        if on.is_empty() {
            let available: Vec<String> = resources.iter().flat_map(|r| r.scopes.clone()).collect();
            return Err(deny(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not available on {}; expected some of: {}",
                    truncate(sc),
                    quoted_list(&resources.iter().map(|r| r.uri.clone()).collect::<Vec<_>>()),
                    quoted_list(&available)
                ),
            ));
        }
        let description = cfg
            .scopes
            .get(sc)
            .map(|d| d.description.clone())
            .unwrap_or_default();
        let reason = if org.policy.disallows(sc) {
            Some(NotGrantable::ScopeNotAllowedForOrg)
        } else if !may_grant(cfg, org, sc, subject) {
            Some(NotGrantable::RoleRequired)
        } else {
            None
        };
        for r in on {
            lines.push(ScopeLine {
                resource: r.uri.clone(),
                scope: sc.clone(),
                description: description.clone(),
                grantable: reason.is_none(),
                reason,
                already: already(&r.uri, sc),
            });
        }
    }
    Ok(lines)
}

/// The screen's outcome: prompt handling and consent (start), or the user's answer (submit).
fn authorize_outcome(
    cx: &Context<'_>,
    req: &AuthorizeRequest,
    redirect_uri: &str,
    screen: Screen,
    consent: Option<bool>,
) -> Result<Decision, Denial> {
    let lines = &screen.lines;
    let new_scopes = lines.iter().any(|l| l.grantable && !l.already);
    let none_grantable = !lines.iter().any(|l| l.grantable);
    // A local program can pose as a native public client: its consent is never silent.
    let always_ask =
        cx.client.is_native_public(redirect_uri) && !cx.cfg.remember_consent_for_native_clients;
    let consent_required = req.prompt.consent || always_ask || new_scopes || none_grantable;
    if req.prompt.none && consent_required {
        return Err(deny(
            ErrorCode::ConsentRequired,
            if always_ask && !new_scopes {
                "prompt=none was requested but the user confirms every authorization of a public client with a loopback or private-use redirect URI (any local program can use its client_id; remember_consent_for_native_clients)"
            } else {
                "prompt=none was requested but the user has not granted every requested scope"
            },
        ));
    }
    let limits = limits(cx.cfg, cx.org);
    match consent {
        None if consent_required => Ok(Decision::NeedsConsent { screen }),
        None => Ok(Decision::Issue {
            grant: screen_grant(&screen, limits),
            screen: Some(screen),
        }),
        Some(false) => Ok(Decision::Declined(deny(
            ErrorCode::AccessDenied,
            "the user denied the request",
        ))),
        Some(true) if none_grantable => Ok(Decision::Declined(deny(
            ErrorCode::AccessDenied,
            "the user may not grant any of the requested scopes",
        ))),
        Some(true) => Ok(Decision::Issue {
            grant: screen_grant(&screen, limits),
            screen: Some(screen),
        }),
    }
}

/// What the screen grants: every grantable line; the new ones are remembered.
fn screen_grant(screen: &Screen, limits: Limits) -> Grant {
    let mut scopes: Vec<String> = Vec::new();
    for l in screen.lines.iter().filter(|l| l.grantable) {
        if !scopes.contains(&l.scope) {
            scopes.push(l.scope.clone());
        }
    }
    Grant {
        scopes,
        audience: screen.resources.iter().map(|r| r.uri.clone()).collect(),
        new_consent: screen
            .lines
            .iter()
            .filter(|l| l.grantable && !l.already)
            .map(|l| (l.resource.clone(), l.scope.clone()))
            .collect(),
        limits,
    }
}

/// The requested `resource` values must be a subset of what was authorized; none means all.
pub fn narrow_resources(
    requested: &[String],
    authorized: &[String],
) -> Result<Vec<String>, Denial> {
    if requested.is_empty() {
        return Ok(authorized.to_vec());
    }
    let mut out = Vec::new();
    for r in requested {
        if !authorized.contains(r) {
            return Err(deny(
                ErrorCode::InvalidTarget,
                format!(
                    "resource '{}' was not part of this authorization; expected one of: {}",
                    truncate(r),
                    quoted_list(authorized)
                ),
            ));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// A refresh may only narrow the granted scope; none requested (or empty) keeps it.
fn narrow_scopes(granted: &[String], requested: Option<&[String]>) -> Result<Vec<String>, Denial> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return Ok(granted.to_vec());
    };
    if let Some(extra) = requested.iter().find(|sc| !granted.contains(sc)) {
        return Err(deny(
            ErrorCode::InvalidScope,
            format!(
                "scope '{}' was not granted; a refresh may only narrow the scope to some of: {}",
                truncate(extra),
                quoted_list(granted)
            ),
        ));
    }
    Ok(requested.to_vec())
}

/// Only the scopes the user's current roles allow: the others are left out, and a grant left
/// with nothing is refused.
fn role_gate(
    cfg: &Config,
    org: Org<'_>,
    scopes: Vec<String>,
    subject: Subject<'_>,
    what: &str,
) -> Result<Vec<String>, Denial> {
    let (kept, dropped): (Vec<String>, Vec<String>) = scopes
        .into_iter()
        .partition(|sc| may_grant(cfg, org, sc, subject));
    if kept.is_empty() && !dropped.is_empty() {
        return Err(deny(
            ErrorCode::InvalidGrant,
            format!(
                "{what} grants nothing the user may still have: scope {} requires a role the user no longer holds ({}); authorize again",
                quoted_list(&dropped),
                quoted_list(
                    &dropped
                        .iter()
                        .flat_map(|sc| required_roles(cfg, org, sc).to_vec())
                        .collect::<Vec<_>>()
                )
            ),
        ));
    }
    Ok(kept)
}

/// `client_credentials` scopes: requested (or the audience's defaults the client registered),
/// each available on the audience, within the client's registered `scope`, and never a
/// role-gated scope for a self-registered client (a role is held by a user; a client has none).
fn client_scopes(
    cfg: &Config,
    client: &Client,
    audience: &[String],
    requested: &[String],
) -> Result<Vec<String>, Denial> {
    let on_audience = || audience.iter().filter_map(|a| cfg.resource(a));
    let available: Vec<String> = on_audience().flat_map(|r| r.scopes.clone()).collect();
    let scopes: Vec<String> = if requested.is_empty() {
        on_audience()
            .flat_map(|r| r.default_scopes.clone())
            .filter(|sc| {
                client
                    .scope
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(sc))
            })
            .collect()
    } else {
        requested.to_vec()
    };
    let self_registered = !client.is_first_party();
    for sc in &scopes {
        if !available.contains(sc) {
            return Err(deny(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not available on the requested resource; expected some of: {}",
                    truncate(sc),
                    quoted_list(&available)
                ),
            ));
        }
        if self_registered
            && let Some(def) = cfg.scopes.get(sc)
            && !def.required_roles.is_empty()
        {
            return Err(deny(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' needs a user with one of the roles {}: a self-registered client cannot get it with client_credentials",
                    truncate(sc),
                    quoted_list(&def.required_roles)
                ),
            ));
        }
        if let Some(allowed) = &client.scope
            && !allowed.contains(sc)
        {
            return Err(deny(
                ErrorCode::InvalidScope,
                format!(
                    "scope '{}' is not registered for client '{}'; registered: {}",
                    truncate(sc),
                    client.client_id,
                    quoted_list(allowed)
                ),
            ));
        }
    }
    Ok(scopes)
}

/// The decision as a pure function: no server, no database, no clock.
#[cfg(test)]
mod tests {
    use std::path::Path;

    use consentry_protocol::{AuthorizeParams, AuthorizeRequest, ErrorCode};

    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"
    issuer = "https://auth.example.com"
    authorization_url = "https://app.example.com/oauth/authorize"
    database_url = "sqlite://consentry.db"

    [[scopes]]
    name = "notes:read"
    description = "Read your notes"

    [[scopes]]
    name = "notes:admin"
    description = "Administer notes"
    required_roles = ["admin"]

    [[resources]]
    uri = "https://mcp.example.com/mcp"
    name = "Notes"
    scopes = ["notes:read", "notes:admin"]
    default_scopes = ["notes:read"]

    [[clients]]
    client_id = "web"
    client_name = "Web"
    redirect_uris = ["https://a.example/cb"]
    token_endpoint_auth_method = "client_secret_post"
    client_secret = "0123456789abcdef0123456789abcdef0123456789"

    [[clients]]
    client_id = "codes-only"
    client_name = "Codes only"
    redirect_uris = ["https://b.example/cb"]
    grant_types = ["authorization_code"]
    token_endpoint_auth_method = "client_secret_post"
    client_secret = "0123456789abcdef0123456789abcdef0123456789"
    "#;

    fn cfg() -> Config {
        Config::from_toml(CONFIG, Path::new("/tmp"), Vec::new()).unwrap()
    }

    fn open_org() -> Org<'static> {
        org_with(OrgPolicy::default())
    }

    fn org_with(policy: OrgPolicy) -> Org<'static> {
        Org {
            id: "acme",
            name: Some("Acme Corp"),
            policy: Box::leak(Box::new(policy)),
        }
    }

    fn request(scope: &str) -> AuthorizeRequest {
        AuthorizeRequest::parse(&AuthorizeParams {
            client_id: Some("web".into()),
            scope: Some(scope.into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            ..AuthorizeParams::default()
        })
        .unwrap()
    }

    fn authorize(cfg: &Config, roles: &[String], scope: &str, consent: Option<bool>) -> Decision {
        let client = &cfg.clients["web"];
        let req = request(scope);
        let cx = Context {
            cfg,
            client,
            subject: Some(Subject {
                user_id: "u",
                roles,
            }),
            org: open_org(),
            now: 1_000,
        };
        decide(
            &cx,
            &Ask::Authorize {
                req: &req,
                redirect_uri: "https://a.example/cb",
                attested_at: 1_000,
                granted: &[],
                consent,
            },
        )
    }

    #[test]
    fn the_screen_shows_what_the_user_may_grant_and_asks() {
        let cfg = cfg();
        let Decision::NeedsConsent { screen } =
            authorize(&cfg, &[], "notes:read notes:admin", None)
        else {
            panic!("new scopes need consent");
        };
        let lines: Vec<(&str, bool)> = screen
            .lines
            .iter()
            .map(|l| (l.scope.as_str(), l.grantable))
            .collect();
        assert_eq!(lines, [("notes:read", true), ("notes:admin", false)]);
    }

    #[test]
    fn the_users_no_is_declined_not_denied() {
        // A declined request goes back to the client whoever registered it; a denial by a rule
        // does not (open redirector, RFC 9700 §4.11.2). The two must never be confused.
        let cfg = cfg();
        match authorize(&cfg, &[], "notes:read", Some(false)) {
            Decision::Declined(d) => assert_eq!(d.code, ErrorCode::AccessDenied),
            other => panic!("expected Declined, got {other:?}"),
        }
        match authorize(&cfg, &[], "notes:admin", Some(true)) {
            Decision::Declined(d) => assert!(d.description.contains("may not grant")),
            other => panic!("nothing grantable is the user's dead end: {other:?}"),
        }
        match authorize(&cfg, &[], "notes:write", Some(true)) {
            Decision::Deny(d) => assert_eq!(d.code, ErrorCode::InvalidScope),
            other => panic!("an unknown scope is a rule's refusal: {other:?}"),
        }
    }

    #[test]
    fn a_yes_grants_the_grantable_scopes_and_remembers_the_new_ones() {
        let cfg = cfg();
        let Decision::Issue { grant, .. } =
            authorize(&cfg, &[], "notes:read notes:admin", Some(true))
        else {
            panic!("consented");
        };
        assert_eq!(grant.scopes, ["notes:read"]);
        assert_eq!(grant.audience, ["https://mcp.example.com/mcp"]);
        assert_eq!(
            grant.new_consent,
            [(
                "https://mcp.example.com/mcp".to_owned(),
                "notes:read".to_owned()
            )]
        );
    }

    #[test]
    fn every_token_path_applies_the_client_and_role_rules() {
        let cfg = cfg();
        let scopes = ["notes:read".to_owned(), "notes:admin".to_owned()];
        let resources = ["https://mcp.example.com/mcp".to_owned()];
        let admin = ["admin".to_owned()];
        let cx = |client: &'static str, roles: &'static [String]| Context {
            cfg: Box::leak(Box::new(cfg.clone())),
            client: Box::leak(Box::new(cfg.clients[client].clone())),
            subject: Some(Subject {
                user_id: "u",
                roles,
            }),
            org: open_org(),
            now: 1_000,
        };
        let code = Ask::Code {
            scopes: &scopes,
            resources: &resources,
            requested_resources: &[],
        };
        let refresh = Ask::Refresh {
            grant_created_at: 900,
            granted_scopes: &scopes,
            resources: &resources,
            requested_scopes: None,
            requested_resources: &[],
        };
        for ask in [&code, &refresh] {
            // an admin keeps both scopes; a demoted user keeps what they may still grant
            let Decision::Issue { grant, .. } =
                decide(&cx("web", Box::leak(Box::new(admin.clone()))), ask)
            else {
                panic!("admin");
            };
            assert_eq!(grant.scopes, scopes);
            let Decision::Issue { grant, .. } = decide(&cx("web", &[]), ask) else {
                panic!("demoted");
            };
            assert_eq!(grant.scopes, ["notes:read"]);
        }
        // a client without the refresh_token grant is refused on that path only
        assert!(matches!(
            decide(&cx("codes-only", &[]), &code),
            Decision::Issue { .. }
        ));
        match decide(&cx("codes-only", &[]), &refresh) {
            Decision::Deny(d) => assert_eq!(d.code, ErrorCode::UnauthorizedClient),
            other => panic!("{other:?}"),
        }
        // no user: nothing for a user's grant
        let mut nobody = cx("web", &[]);
        nobody.subject = None;
        match decide(&nobody, &code) {
            Decision::Deny(d) => assert_eq!(d.code, ErrorCode::InvalidGrant),
            other => panic!("{other:?}"),
        }
    }
}
