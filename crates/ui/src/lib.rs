//! The Consentry prebuilt consent UI: Leptos (client-side rendering) components over
//! `consentry-core`.
//!
//! - [`identity_provider`]: the consent screen for the page at the product's `authorization_url`.
//!   It reads the OAuth request from the page URL, signs in with the Trusted Auth Token and starts
//!   in one round trip, then shows loading → consent → redirecting, or an error. It never
//!   redirects for a request whose client or redirect URI the server did not verify, and refuses
//!   to render in a frame unless told otherwise.
//! - [`connected_apps`]: the apps the user authorized, each revocable behind a confirmation.
//! - [`organization_connected_apps`], [`organization_policy`]: for an organization's admins, the
//!   apps its members connected (revocable for everyone) and the policy editor (which apps and
//!   scopes agents may get; saved with `If-Match`).
//!
//! This crate has no `#[wasm_bindgen]` exports: `consentry-wasm` mounts these views into the
//! page's elements and turns JS options into [`Look`], [`Hooks`] and the options structs. The
//! views are generic over [`Platform`], so they run against any transport.
//!
//! ## For Leptos apps (feature `leptos`)
//!
//! The same two screens as Leptos 0.8 `#[component]`s, `IdentityProvider` and `ConnectedApps`,
//! with props named after the npm package's options, over [`WebPlatform`] (the browser's
//! `fetch`). They drive the very controllers above: one implementation, two faces. The npm
//! builds never enable the feature, so their size does not depend on it.
//!
//! ```toml
//! consentry-ui = { version = "0.1", features = ["leptos"] }
//! ```
//!
//! ```ignore
//! view! {
//!     <IdentityProvider base_url="https://auth.example.com"
//!         trusted_auth_token=tat token_profile_id="default"/>
//! }
//! ```
//!
//! A complete app (its own login, a small axum backend minting TATs, the consent page and
//! connected apps in settings): `examples/leptos-app` in the repository.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod apps;
mod browser;
#[cfg(feature = "leptos")]
mod component;
mod dom;
mod idp;
mod mount;
mod org;
pub mod strings;
pub mod style;
#[cfg(feature = "leptos")]
mod web;

use std::cell::Cell;
use std::rc::Rc;

use consentry_core::TatLogin;

pub use apps::{ConnectedApps as ConnectedAppsController, ConnectedAppsOptions, connected_apps};
#[cfg(feature = "leptos")]
#[cfg_attr(docsrs, doc(cfg(feature = "leptos")))]
pub use component::{
    ConnectedApps, ConnectedAppsProps, IdentityProvider, IdentityProviderProps,
    OrganizationConnectedApps, OrganizationConnectedAppsProps, OrganizationPolicy,
    OrganizationPolicyProps,
};
pub use idp::{
    IdentityProvider as IdentityProviderController, IdentityProviderOptions, identity_provider,
};
pub use mount::{Mounted, mount_to, spawn_local};
pub use org::{
    OrganizationConnectedApps as OrganizationConnectedAppsController,
    OrganizationPolicy as OrganizationPolicyController, organization_connected_apps,
    organization_policy,
};
pub use strings::Strings;
pub use style::{ColorScheme, Theme};
#[cfg(feature = "leptos")]
#[cfg_attr(docsrs, doc(cfg(feature = "leptos")))]
pub use web::{WebJson, WebPlatform};

pub use consentry_core::{
    ConsentItem, ConsentScreen, ConsentSection, Platform, SdkError, SdkErrorCode,
};

/// What the page sees happen on the consent screen (`onEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiEvent {
    /// The consent screen is showing (the user has to choose).
    ConsentShown {
        /// The client asking.
        client_id: String,
    },
    /// The user allowed; the server issued the code.
    ConsentGranted {
        /// The client allowed.
        client_id: String,
    },
    /// The user denied; the client receives `access_denied`.
    ConsentDenied {
        /// The client denied.
        client_id: String,
    },
    /// The browser is about to leave for `location` (after a choice, when no consent was needed,
    /// or with an error the client must receive).
    Redirecting {
        /// Where the browser goes (the client's redirect URI with the code or the error).
        location: String,
    },
    /// ConnectedApps: access for `client_id` was revoked.
    AppRevoked {
        /// The client whose grants were revoked.
        client_id: String,
    },
    /// OrganizationConnectedApps: `client_id` was revoked for every member.
    OrgAppRevoked {
        /// The client revoked.
        client_id: String,
        /// Grants removed across the organization.
        revoked_grants: u32,
    },
    /// OrganizationPolicy: the policy was saved.
    PolicySaved {
        /// Its new version.
        version: i64,
        /// Grants the new policy revoked.
        revoked_grants: u32,
    },
}

impl UiEvent {
    /// The `type` JavaScript sees.
    pub fn kind(&self) -> &'static str {
        match self {
            UiEvent::ConsentShown { .. } => "consent_shown",
            UiEvent::ConsentGranted { .. } => "consent_granted",
            UiEvent::ConsentDenied { .. } => "consent_denied",
            UiEvent::Redirecting { .. } => "redirecting",
            UiEvent::AppRevoked { .. } => "app_revoked",
            UiEvent::OrgAppRevoked { .. } => "org_app_revoked",
            UiEvent::PolicySaved { .. } => "policy_saved",
        }
    }
}

/// Called with what happens on the screen (`onEvent`).
pub type OnEvent = Rc<dyn Fn(&UiEvent)>;
/// Called with every error the screen shows or sends to the client (`onError`).
pub type OnError = Rc<dyn Fn(&SdkError)>;
/// Called with the location before navigating; returns `false` to navigate itself.
pub type OnBeforeRedirect = Rc<dyn Fn(&str) -> bool>;
/// The page's own wording for the requested scopes; `None` keeps the default.
pub type ConsentManifest = Rc<dyn Fn(&ConsentScreen) -> Option<Vec<ConsentSection>>>;

/// The page's callbacks. All optional; whatever they do, the UI goes on.
#[derive(Clone, Default)]
pub struct Hooks {
    /// What happens on the screen.
    pub on_event: Option<OnEvent>,
    /// Errors, with their stable code.
    pub on_error: Option<OnError>,
    /// The location, before the browser leaves; `false` keeps the page where it is.
    pub on_before_redirect: Option<OnBeforeRedirect>,
    /// Default: one section per resource, one line per scope.
    pub consent_manifest: Option<ConsentManifest>,
}

impl Hooks {
    fn event(&self, e: &UiEvent) {
        if let Some(f) = &self.on_event {
            f(e);
        }
    }

    fn error(&self, e: &SdkError) {
        if let Some(f) = &self.on_error {
            f(e);
        }
    }

    fn sections(&self, screen: &ConsentScreen) -> Vec<ConsentSection> {
        self.consent_manifest
            .as_ref()
            .and_then(|f| f(screen))
            .unwrap_or_else(|| screen.default_sections())
    }

    /// Announce the redirect, let the page take it over, else navigate. `alive` is read again
    /// after each callback: one that unmounted the component stops the rest.
    fn redirect(&self, location: &str, alive: &Cell<bool>) {
        self.event(&UiEvent::Redirecting {
            location: location.to_owned(),
        });
        if !alive.get() {
            return;
        }
        let navigate = self.on_before_redirect.as_ref().is_none_or(|f| f(location));
        if navigate && alive.get() {
            browser::navigate(location);
        }
    }
}

/// Words and colours: everything `update()` may change without restarting the flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// Every word, overridable by key.
    pub strings: Strings,
    /// Colours (CSS custom properties), colour scheme, logo.
    pub theme: Theme,
    /// The page's Content Security Policy nonce for the injected stylesheet (`nonce`), for a
    /// `style-src` without `'unsafe-inline'`. Read when the stylesheet is first added.
    pub nonce: Option<String>,
}

/// Who is signing in: the product's Trusted Auth Token and its token profile.
pub type Login = TatLogin;

/// An error as the screen shows it (plain data, so it can live in a signal).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shown {
    code: &'static str,
    description: String,
}

impl From<&SdkError> for Shown {
    fn from(e: &SdkError) -> Self {
        Shown {
            code: e.code.as_str(),
            description: e.description.clone(),
        }
    }
}
