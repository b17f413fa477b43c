//! What a Rust MCP server (or any axum/tower HTTP API) adds to accept access tokens issued by
//! Consentry.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use consentry_resource::{Caller, ProtectedResource};
//!
//! let notes = ProtectedResource::builder("https://mcp.example.com/mcp", "https://auth.example.com")
//!     .resource_name("Notes")
//!     .scopes_supported(["notes:read", "notes:write"])
//!     .required_scopes(["notes:read"])
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/mcp", get(|caller: Caller| async move { format!("hello {}", caller.subject) }))
//!     .layer(notes.layer())
//!     .merge(notes.metadata_router());
//! # let _: Router = app;
//! # Ok(()) }
//! ```
//!
//! * [`ProtectedResource::metadata_router`] serves RFC 9728 metadata at
//!   `/.well-known/oauth-protected-resource{path}` (and at the root, as a fallback).
//! * [`ProtectedResource::layer`] verifies `Authorization: Bearer` JWTs (RFC 9068) against the
//!   issuer's JWKS, answers `401` with a `WWW-Authenticate: Bearer resource_metadata=…` challenge
//!   otherwise, and hands handlers a [`Caller`].
//! * [`ProtectedResource::require_scopes`] (a per-route layer), [`Caller::require_scopes`] (in a
//!   handler) and [`mcp::ToolScopes`] (per MCP tool) answer `403 insufficient_scope` naming the
//!   scopes needed, so that MCP clients can step up.

#![warn(missing_docs)]

mod challenge;
mod error;
mod introspect;
mod jwks;
mod layer;
pub mod mcp;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Method, header};
use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Map, Value};

pub use challenge::Challenge;
pub use error::{AuthError, ConfigError, Rejection, extension_codes};
pub use layer::{BearerLayer, BearerService, ScopeLayer, ScopeService};
pub use verify::DEFAULT_ALGORITHMS;

use challenge::ChallengeInfo;
use introspect::Introspection;
use jwks::Jwks;
use verify::{Expect, shown};

/// The RFC 9728 path prefix.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 protected resource metadata.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The protected resource's identifier (the tokens' `aud`).
    pub resource: String,
    /// The authorization servers that issue tokens for it (Consentry's issuer).
    pub authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    /// The scopes it understands.
    pub scopes_supported: Vec<String>,
    /// How it accepts tokens: `header` (`Authorization: Bearer`).
    pub bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A human-readable name.
    pub resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Where its documentation lives.
    pub resource_documentation: Option<String>,
}

/// Who is calling: the verified access token, for handlers (an axum extractor; also in the
/// request extensions, where e.g. rmcp tool handlers find it through `http::request::Parts`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub`: the user's id (for `client_credentials` tokens, the client's own id).
    pub subject: String,
    /// `client_id`: the agent / MCP client the user authorized.
    pub client_id: String,
    /// `scope`, split.
    pub scopes: Vec<String>,
    /// `gid`: the grant (authorization) the token belongs to; `None` for client_credentials.
    pub grant_id: Option<String>,
    /// `org_id`: the organization the user acts in (the Trusted Auth Token's organization
    /// claim); `None` on a server without organizations and for client_credentials. Scope
    /// your data by it.
    pub organization_id: Option<String>,
    /// `jti`.
    pub token_id: String,
    /// `exp`, seconds since 1970.
    pub expires_at: i64,
    /// Every claim of the token, as verified.
    pub claims: Arc<Map<String, Value>>,
    info: Arc<ChallengeInfo>,
}

impl Caller {
    /// The user's id (`sub`).
    pub fn user_id(&self) -> &str {
        &self.subject
    }

    /// The user's organization (`org_id`), when the server has organizations.
    pub fn org_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }

    /// Whether the token granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` when the token has every scope in `needed`; otherwise a `403 insufficient_scope`
    /// rejection (return it from a handler) naming every scope the request needs: those the
    /// layer requires of every request ([`Builder::required_scopes`]), then `needed`, each once.
    /// A client that re-authorizes with exactly that scope can make the request.
    pub fn require_scopes(&self, needed: &[&str]) -> Result<(), Rejection> {
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|s| !self.has_scope(s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut all: Vec<&str> = Vec::with_capacity(self.info.required.len() + needed.len());
        for s in self
            .info
            .required
            .iter()
            .map(String::as_str)
            .chain(needed.iter().copied())
        {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        let needed = &all[..];
        let quoted = |v: &[&str]| {
            v.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let has: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let description = format!(
            "this request needs scope {} but the token lacks {}; it has {}. Authorize again with the needed scope",
            quoted(needed),
            quoted(&missing),
            if has.is_empty() {
                "none".to_owned()
            } else {
                quoted(&has)
            }
        );
        Err(Rejection::new(
            AuthError::InsufficientScope {
                required: needed.iter().map(|s| (*s).to_owned()).collect(),
                description,
            },
            Some(self.info.clone()),
            Vec::new(),
        ))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(layer::layer_missing)
    }
}

struct Inner {
    issuer: String,
    resource: String,
    metadata: ResourceMetadata,
    metadata_path: String,
    info: Arc<ChallengeInfo>,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    required: Vec<String>,
    jwks: Jwks,
    introspection: Option<Introspection>,
}

/// One protected resource (e.g. an MCP endpoint) and the issuer it trusts. Cheap to clone.
#[derive(Clone)]
pub struct ProtectedResource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProtectedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedResource")
            .field("resource", &self.inner.resource)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// Configuration of a [`ProtectedResource`]; see [`ProtectedResource::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    resource: String,
    issuer: String,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    scopes_supported: Vec<String>,
    required: Vec<String>,
    jwks_uri: Option<String>,
    introspection_secret: Option<String>,
    introspection_endpoint: Option<String>,
    introspection_cache: Duration,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
    refetch_interval: Duration,
    jwks_max_age: Duration,
    http: Option<reqwest::Client>,
}

impl Builder {
    /// Shown to users by clients (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation` in the metadata.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Scopes this resource understands (`scopes_supported`; `offline_access` is left out, as
    /// MCP asks).
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(mut self, s: I) -> Self {
        self.scopes_supported = s.into_iter().map(Into::into).collect();
        self
    }

    /// Scopes every request through [`ProtectedResource::layer`] needs (named in the 401
    /// challenge, so clients ask for them up front). Default: none.
    pub fn required_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, s: I) -> Self {
        self.required = s.into_iter().map(Into::into).collect();
        self
    }

    /// Where the issuer's keys are. Default: `{issuer}/.well-known/jwks.json` (Consentry's).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Check every token with the issuer's introspection endpoint (revocation takes effect at
    /// once, at the cost of a request per token and cache period), authenticating with this
    /// resource's `introspection_secret` from the Consentry config.
    pub fn introspection(mut self, secret: impl Into<String>) -> Self {
        self.introspection_secret = Some(secret.into());
        self
    }

    /// Default: `{issuer}/oauth2/introspect` (Consentry's).
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.introspection_endpoint = Some(url.into());
        self
    }

    /// How long an "active" answer is trusted (default 10 s; zero asks every time; at most an
    /// hour). A revoked token is accepted for at most this long after revocation.
    pub fn introspection_cache(mut self, ttl: Duration) -> Self {
        self.introspection_cache = ttl;
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 10 s, at most 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Signature algorithms accepted (default [`DEFAULT_ALGORITHMS`]). `HS*` are refused.
    pub fn algorithms<I: IntoIterator<Item = Algorithm>>(mut self, algs: I) -> Self {
        self.algorithms = algs.into_iter().collect();
        self
    }

    /// Least time between two JWKS fetches caused by an unknown `kid` (default 30 s; at most a
    /// day; zero lifts the limit, which lets forged `kid`s cause a fetch each: tests only).
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long fetched keys are used before they are fetched again (default 5 minutes; at most
    /// a day).
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.jwks_max_age = age;
        self
    }

    /// The HTTP client for JWKS and introspection (default: rustls, no redirects, 3 s connect
    /// and 10 s overall timeouts).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Check the settings and build (`ConfigError` names what is wrong).
    pub fn build(self) -> Result<ProtectedResource, ConfigError> {
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        install_crypto_providers();
        let resource_url = absolute_http_url("resource", &self.resource)?;
        if resource_url.query().is_some() {
            return Err(ConfigError(format!(
                "resource: '{}' must not contain a query",
                self.resource
            )));
        }
        absolute_http_url("issuer", &self.issuer)?;
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        let jwks_uri = self
            .jwks_uri
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        absolute_http_url("jwks_uri", &jwks_uri)?;
        if self.algorithms.is_empty() {
            return Err(ConfigError("algorithms: list at least one".into()));
        }
        if let Some(a) = self.algorithms.iter().find(|a| !verify::is_asymmetric(**a)) {
            return Err(ConfigError(format!(
                "algorithms: {a:?} is refused: an HMAC key would have to be shared with the issuer, and a public key must never double as an HMAC secret"
            )));
        }
        for s in self.required.iter().chain(&self.scopes_supported) {
            let valid = !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(ConfigError(format!(
                    "scope '{}' is not a valid scope token (RFC 6749 §3.3)",
                    shown(s)
                )));
            }
        }
        // Upper bounds keep every deadline computed from them (`Instant + d`) in range.
        for (what, value, max) in [
            ("jwks_refetch_interval", self.refetch_interval, DAY),
            ("jwks_max_age", self.jwks_max_age, DAY),
            ("introspection_cache", self.introspection_cache, HOUR),
        ] {
            if value > max {
                return Err(ConfigError(format!(
                    "{what}: {}s is too long; expected at most {}s",
                    value.as_secs(),
                    max.as_secs()
                )));
            }
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError(
                "leeway: at most 300 seconds of clock skew are tolerated".into(),
            ));
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| ConfigError(format!("cannot build the HTTP client: {e}")))?,
        };
        let introspection = match self.introspection_secret {
            None => None,
            Some(secret) => {
                if secret.len() < 32 {
                    return Err(ConfigError(
                        "introspection secret: at least 32 characters (as the issuer requires)"
                            .into(),
                    ));
                }
                let url = self
                    .introspection_endpoint
                    .unwrap_or_else(|| format!("{issuer}/oauth2/introspect"));
                absolute_http_url("introspection_endpoint", &url)?;
                Some(Introspection::new(
                    url,
                    secret,
                    http.clone(),
                    self.introspection_cache,
                ))
            }
        };
        let path = resource_url.path().trim_end_matches('/');
        let metadata_path = format!("{METADATA_PREFIX}{path}");
        let metadata_url = format!(
            "{}{metadata_path}",
            resource_url.origin().ascii_serialization()
        );
        let metadata = ResourceMetadata {
            resource: self.resource.clone(),
            authorization_servers: vec![issuer.clone()],
            scopes_supported: self
                .scopes_supported
                .into_iter()
                .filter(|s| s != "offline_access")
                .collect(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: self.resource_name,
            resource_documentation: self.resource_documentation,
        };
        Ok(ProtectedResource {
            inner: Arc::new(Inner {
                issuer,
                resource: self.resource,
                metadata,
                metadata_path,
                info: Arc::new(ChallengeInfo {
                    metadata_url,
                    required: self.required.clone(),
                }),
                algorithms: self.algorithms,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(300),
                required: self.required,
                jwks: Jwks::new(jwks_uri, http, self.refetch_interval, self.jwks_max_age),
                introspection,
            }),
        })
    }
}

fn absolute_http_url(key: &str, value: &str) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    let Some(u) = parsed else {
        return Err(ConfigError(format!(
            "{key}: '{}' must be an absolute http(s) URL",
            shown(value)
        )));
    };
    if u.fragment().is_some() {
        return Err(ConfigError(format!(
            "{key}: '{value}' must not contain a fragment"
        )));
    }
    Ok(u)
}

/// aws-lc for jsonwebtoken and rustls (as the Consentry server uses); a provider installed
/// before by the application is kept.
fn install_crypto_providers() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ProtectedResource {
    /// `resource`: this server's canonical URI, exactly as clients send it as `resource` and as
    /// Consentry's `[[resources]] uri` (the tokens' `aud`). `issuer`: Consentry's `issuer`.
    pub fn builder(resource: impl Into<String>, issuer: impl Into<String>) -> Builder {
        Builder {
            resource: resource.into(),
            issuer: issuer.into(),
            resource_name: None,
            resource_documentation: None,
            scopes_supported: Vec::new(),
            required: Vec::new(),
            jwks_uri: None,
            introspection_secret: None,
            introspection_endpoint: None,
            introspection_cache: Duration::from_secs(10),
            leeway: Duration::from_secs(10),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            refetch_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            http: None,
        }
    }

    /// The resource identifier (the tokens' `aud`).
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The RFC 9728 metadata this resource serves.
    pub fn metadata(&self) -> &ResourceMetadata {
        &self.inner.metadata
    }

    /// `/.well-known/oauth-protected-resource{path of the resource}`.
    pub fn metadata_path(&self) -> &str {
        &self.inner.metadata_path
    }

    /// The absolute metadata URL that challenges point at (`resource_metadata`).
    pub fn metadata_url(&self) -> &str {
        &self.inner.info.metadata_url
    }

    /// Scopes every request needs ([`Builder::required_scopes`]).
    pub fn required_scopes(&self) -> &[String] {
        &self.inner.required
    }

    /// How many times the JWKS was fetched (for metrics; refetches are rate-limited).
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks.fetches()
    }

    /// Routes serving the metadata at [`metadata_path`](Self::metadata_path) and at the bare
    /// `/.well-known/oauth-protected-resource` (clients fall back to it), with CORS for browser
    /// clients. Merge them outside the bearer layer: metadata is public.
    pub fn metadata_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let body = match serde_json::to_vec(&self.inner.metadata) {
            Ok(b) => axum::body::Bytes::from(b),
            Err(_) => axum::body::Bytes::from_static(b"{}"),
        };
        let serve = move || {
            let body = body.clone();
            async move {
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        ),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        ),
                    ],
                    body,
                )
                    .into_response()
            }
        };
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::Any)
            .allow_methods([Method::GET, Method::OPTIONS])
            .allow_headers(tower_http::cors::Any);
        let mut router = Router::new().route(&self.inner.metadata_path, get(serve.clone()));
        if self.inner.metadata_path != METADATA_PREFIX {
            router = router.route(METADATA_PREFIX, get(serve));
        }
        router.layer(cors)
    }

    /// The layer that requires a valid bearer token (and the [`Builder::required_scopes`]) on
    /// every request it wraps, and puts the [`Caller`] into the request extensions.
    pub fn layer(&self) -> BearerLayer {
        BearerLayer::new(self.clone())
    }

    /// A per-route layer (`route_layer`, inside [`layer`](Self::layer)) answering `403
    /// insufficient_scope` unless the caller has every scope in `scopes`.
    pub fn require_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        scopes: I,
    ) -> ScopeLayer {
        ScopeLayer::new(scopes.into_iter().map(Into::into).collect())
    }

    /// Turn an error into the HTTP answer this resource gives (with its challenge).
    pub fn reject(&self, error: AuthError) -> Rejection {
        Rejection::new(
            error,
            Some(self.inner.info.clone()),
            self.inner.required.clone(),
        )
    }

    /// The bearer token of a request (RFC 6750 §2.1: exactly one `Authorization: Bearer`).
    pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthError::MissingToken(
                "no access token: send Authorization: Bearer <access token>".into(),
            ));
        };
        if values.next().is_some() {
            return Err(AuthError::MalformedRequest(
                "more than one Authorization header; send exactly one".into(),
            ));
        }
        let value = value.to_str().map_err(|_| {
            AuthError::MalformedRequest("the Authorization header is not printable ASCII".into())
        })?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::MissingToken(format!(
                "the Authorization header uses the '{}' scheme; this resource accepts only Bearer access tokens",
                shown(scheme)
            )));
        }
        let token = rest.trim_matches(' ');
        if token.is_empty() {
            return Err(AuthError::MalformedRequest(
                "the Authorization header says Bearer but carries no token".into(),
            ));
        }
        // RFC 6750 §2.1 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "="s.
        let body = token.trim_end_matches('=');
        let valid = body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if !valid || body.is_empty() {
            return Err(AuthError::MalformedRequest(
                "the bearer token contains characters a token cannot have (RFC 6750 b64token); send it unquoted, alone after 'Bearer '".into(),
            ));
        }
        Ok(token)
    }

    /// Verify a request's bearer token and the required scopes; the answer to give otherwise.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Rejection> {
        let token = Self::bearer_token(headers).map_err(|e| self.reject(e))?;
        let caller = self.verify(token).await.map_err(|e| self.reject(e))?;
        let needed: Vec<&str> = self.inner.required.iter().map(String::as_str).collect();
        caller.require_scopes(&needed)?;
        Ok(caller)
    }

    /// Verify an access token: RFC 9068 `typ`, an allowed asymmetric `alg` matching the key,
    /// the signature against the issuer's JWKS, `iss`, `aud` (this resource), `exp`/`nbf`/`iat`
    /// within the leeway, the claims a caller is made of and, when configured, that the issuer
    /// has not revoked it.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let inner = &*self.inner;
        let (header, unverified) = verify::split(token)?;
        let header = verify::check_header(&header, &inner.algorithms)?;
        let expect = Expect {
            issuer: &inner.issuer,
            audience: &inner.resource,
            leeway: inner.leeway,
            now: now(),
        };
        // Foreign tokens are refused before any key is fetched for them.
        verify::check_iss_aud(&unverified, &expect)?;
        let key = inner.jwks.key(header.kid.as_deref()).await?;
        if !key.algs.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!(
                "alg {:?} does not match the issuer's key '{}', which is for {:?}",
                header.alg,
                shown(header.kid.as_deref().unwrap_or("")),
                key.algs
            )));
        }
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature(
                    "the signature does not verify with the issuer's key".into(),
                ),
                _ => AuthError::BadSignature(format!(
                    "the token cannot be verified with the issuer's key: {e}"
                )),
            })?;
        let claims = data.claims;
        verify::check_iss_aud(&claims, &expect)?;
        verify::check_times(&claims, &expect)?;
        let c = verify::caller_claims(&claims)?;
        if let Some(intro) = &inner.introspection {
            intro
                .check(token, &c.token_id, c.expires_at.saturating_sub(expect.now))
                .await?;
        }
        Ok(Caller {
            subject: c.subject,
            client_id: c.client_id,
            scopes: c.scopes,
            grant_id: c.grant_id,
            organization_id: claims
                .get("org_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            token_id: c.token_id,
            expires_at: c.expires_at,
            claims: Arc::new(claims),
            info: inner.info.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Layer;

    fn build(resource: &str) -> ProtectedResource {
        ProtectedResource::builder(resource, "https://auth.example.com/")
            .resource_name("Notes")
            .scopes_supported(["notes:read", "notes:write", "offline_access"])
            .required_scopes(["notes:read"])
            .build()
            .unwrap()
    }

    #[test]
    fn metadata_follows_rfc_9728() {
        let r = build("https://mcp.example.com/mcp");
        assert_eq!(
            r.metadata_path(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            r.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let v = serde_json::to_value(r.metadata()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://auth.example.com"],
                "scopes_supported": ["notes:read", "notes:write"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Notes",
            })
        );
    }

    #[test]
    fn metadata_path_of_a_root_resource_and_a_port() {
        let r = build("http://127.0.0.1:8788/");
        assert_eq!(r.metadata_path(), METADATA_PREFIX);
        assert_eq!(
            r.metadata_url(),
            "http://127.0.0.1:8788/.well-known/oauth-protected-resource"
        );
        let r = build("http://127.0.0.1:8788/a/b/");
        assert_eq!(
            r.metadata_path(),
            "/.well-known/oauth-protected-resource/a/b"
        );
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_key() {
        let b = || {
            ProtectedResource::builder("https://mcp.example.com/mcp", "https://auth.example.com")
        };
        let e = |r: Result<ProtectedResource, ConfigError>| r.unwrap_err().0;
        // Durations past their bounds (every deadline computed from them must stay in range).
        assert!(
            e(b().jwks_refetch_interval(Duration::MAX).build())
                .starts_with("jwks_refetch_interval:")
        );
        assert!(
            e(b().jwks_max_age(Duration::from_secs(86_401)).build()).starts_with("jwks_max_age:")
        );
        assert!(
            e(b().introspection_cache(Duration::from_secs(3601)).build())
                .starts_with("introspection_cache:")
        );
        assert!(
            b().jwks_refetch_interval(Duration::from_secs(86_400))
                .introspection_cache(Duration::from_secs(3600))
                .build()
                .is_ok()
        );
        assert!(e(ProtectedResource::builder("mcp", "https://a").build()).starts_with("resource:"));
        assert!(
            e(ProtectedResource::builder("https://m/x?q=1", "https://a").build()).contains("query")
        );
        assert!(
            e(ProtectedResource::builder("https://m/x", "ftp://a").build()).starts_with("issuer:")
        );
        assert!(e(b().algorithms([Algorithm::HS256]).build()).contains("HS256"));
        assert!(e(b().algorithms([]).build()).contains("algorithms"));
        assert!(e(b().introspection("short").build()).contains("32"));
        assert!(e(b().required_scopes(["a b"]).build()).contains("scope"));
        assert!(e(b().leeway(Duration::from_secs(3600)).build()).contains("leeway"));
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_parsing() {
        let t = |v: &[&[u8]]| {
            ProtectedResource::bearer_token(&headers(v))
                .map(str::to_owned)
                .map_err(|e| e.code())
        };
        assert_eq!(
            t(&[b"Bearer abc.def-_~+/=="]),
            Ok("abc.def-_~+/==".to_owned())
        );
        assert_eq!(t(&[b"bearer  abc "]), Ok("abc".to_owned()));
        assert_eq!(t(&[]), Err("missing_token"));
        assert_eq!(t(&[b"Basic dXNlcjpwYXNz"]), Err("missing_token"));
        assert_eq!(t(&[b"Bearer"]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer "]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer a b"]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer \"abc\""]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer ==="]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer \xff\xfe"]), Err("invalid_request"));
        assert_eq!(t(&[b"Bearer a", b"Bearer b"]), Err("invalid_request"));
    }

    #[test]
    fn rejections_carry_the_challenge() {
        let r = build("https://mcp.example.com/mcp");
        let missing = r.reject(AuthError::MissingToken("x".into()));
        assert_eq!(
            missing.www_authenticate().unwrap(),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"notes:read\""
        );
        let bad = r.reject(AuthError::Expired("expired 3s ago".into()));
        assert_eq!(
            bad.www_authenticate().unwrap(),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"notes:read\", error=\"invalid_token\", error_description=\"expired 3s ago\""
        );
        let resp = bad.into_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let down = r
            .reject(AuthError::Unavailable(
                "cannot fetch http://10.0.0.7:8080/internal/jwks: connection refused".into(),
            ))
            .into_response();
        assert_eq!(down.status(), 503);
        assert!(down.headers().get("www-authenticate").is_none());
        assert_eq!(down.headers()["retry-after"], "5");
        // The cause (internal URLs, client errors) goes to the log, not into the body.
        let body = futures_body(down);
        assert!(body.contains("temporarily_unavailable"), "{body}");
        assert!(
            !body.contains("10.0.0.7") && !body.contains("refused"),
            "{body}"
        );
    }

    /// The body of a response built in memory.
    fn futures_body(resp: axum::response::Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_caller_without_the_bearer_layer_is_a_500_never_a_pass() {
        use tower::ServiceExt;
        let r = build("https://mcp.example.com/mcp");
        let app = Router::new()
            .route("/who", get(|c: Caller| async move { c.subject }))
            .route(
                "/scoped",
                get(|| async { "ok" }).route_layer(r.require_scopes(["notes:write"])),
            )
            .route_service(
                "/mcp",
                mcp::ToolScopes::new()
                    .tool("add_note", ["notes:write"])
                    .layer(get(|| async { "ok" }).post(|| async { "ok" })),
            );
        for (method, path) in [("GET", "/who"), ("GET", "/scoped"), ("POST", "/mcp")] {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 500, "{path}");
            let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], "layer_missing", "{path}");
        }
    }

    #[test]
    fn insufficient_scope_names_every_needed_scope() {
        let r = build("https://mcp.example.com/mcp");
        let caller = Caller {
            subject: "u".into(),
            client_id: "c".into(),
            scopes: vec!["notes:read".into()],
            grant_id: None,
            organization_id: None,
            token_id: "j".into(),
            expires_at: 0,
            claims: Arc::default(),
            info: r.inner.info.clone(),
        };
        assert!(caller.require_scopes(&["notes:read"]).is_ok());
        let rej = caller
            .require_scopes(&["notes:read", "notes:write"])
            .unwrap_err();
        assert_eq!(rej.error.code(), "insufficient_scope");
        assert!(
            rej.error.description().contains("lacks 'notes:write'"),
            "{rej}"
        );
        assert_eq!(
            rej.www_authenticate().unwrap(),
            format!(
                "Bearer resource_metadata=\"{}\", scope=\"notes:read notes:write\", error=\"insufficient_scope\", error_description=\"{}\"",
                r.metadata_url(),
                rej.error.description()
            )
        );
        assert_eq!(rej.into_response().status(), 403);
    }
}
