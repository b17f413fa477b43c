//! The Leptos face (feature `leptos`): `#[component]`s over the very controllers the npm build
//! mounts ([`crate::identity_provider`], [`crate::connected_apps`]). The props are turned into
//! the same [`IdentityProviderOptions`], [`Hooks`] and [`Look`] that `consentry-wasm` builds from
//! JavaScript options; the state machine, the rules (no redirect for an unverified request, the
//! framing refusal, one submit per screen) and the markup are those of the npm package.

use std::cell::RefCell;
use std::rc::Rc;

use consentry_core::{Client, ConsentScreen, ConsentSection, SdkError, TatLogin, safe_image_url};
use leptos::prelude::*;
use reactive_graph::signal::ArcRwSignal;

use crate::web::WebPlatform;
use crate::{
    ConnectedAppsOptions, Hooks, IdentityProviderOptions, Look, Strings, Theme, UiEvent,
    connected_apps, identity_provider, organization_connected_apps, organization_policy,
};

/// The consent screen, for the page at the product's `authorization_url` (`/oauth/authorize`).
///
/// It reads the OAuth request from the page URL, signs the user in with the product's Trusted
/// Auth Token and starts in one request, then shows loading → consent → redirecting, or an error.
/// It never redirects for a request whose client or redirect URI the server did not verify,
/// refuses to render inside a frame unless `allow_framing`, and sends one answer per screen.
/// The same screen as `mountIdentityProvider` / `<IdentityProvider>` of the npm package `consentry`;
/// each prop is named after the JavaScript option it mirrors.
///
/// ```no_run
/// use consentry_ui::IdentityProvider;
/// use leptos::prelude::*;
///
/// #[component]
/// fn AuthorizePage(trusted_auth_token: String) -> impl IntoView {
///     view! {
///         <IdentityProvider
///             base_url="https://auth.example.com"
///             trusted_auth_token=trusted_auth_token
///             token_profile_id="default"
///             on_error=|e: consentry_ui::SdkError| leptos::logging::log!("{}", e.code.as_str())
///         />
///     }
/// }
/// # fn main() {}
/// ```
#[component]
pub fn IdentityProvider(
    /// The Consentry server (`baseUrl`), e.g. `https://auth.example.com`.
    #[prop(into)]
    base_url: String,
    /// The product's Trusted Auth Token for the signed-in user
    /// (`trustedAuthTokenParams.trustedAuthToken`). Without one the screen shows the
    /// `session_missing` error and sends nothing.
    #[prop(optional, into)]
    trusted_auth_token: Option<String>,
    /// The `[[token_profiles]] id` that verifies the token (`tokenProfileId`); `default` when not
    /// given (the profile `consentry dev` writes).
    #[prop(into, default = String::from("default"))]
    token_profile_id: String,
    /// How long the Consentry session may last, in minutes (`sessionDurationMinutes`; the server
    /// caps it).
    #[prop(optional, into)]
    session_duration_minutes: Option<u32>,
    /// Word overrides by key (`strings`; keys in [`crate::strings::DEFAULTS`]). Reactive: a
    /// change re-renders the words without restarting the flow.
    #[prop(optional, into)]
    strings: Signal<Strings>,
    /// Colours, colour scheme and logo (`theme`). Reactive, like `strings`.
    #[prop(optional, into)]
    theme: Signal<Theme>,
    /// The page's own wording for the requested scopes (`getConsentManifest`): called with the
    /// screen, returns the sections to show, or `None` for the default (one line per scope).
    #[prop(optional, into)]
    consent_manifest: Option<Callback<ConsentScreen, Option<Vec<ConsentSection>>>>,
    /// Called as things happen (`onEvent`): consent shown, granted, denied, redirecting.
    #[prop(optional, into)]
    on_event: Option<Callback<UiEvent>>,
    /// Called with every error the screen shows or sends to the client (`onError`); `code` is
    /// stable ([`consentry_core::SdkErrorCode`]).
    #[prop(optional, into)]
    on_error: Option<Callback<SdkError>>,
    /// Called with the location before the browser leaves (`onBeforeRedirect`); return `false`
    /// to navigate yourself.
    #[prop(optional, into)]
    on_before_redirect: Option<Callback<String, bool>>,
    /// Render even inside a frame (`allowFraming`). Off by default: a framed consent screen can
    /// be clickjacked.
    #[prop(optional)]
    allow_framing: bool,
    /// The authorization URL to read (`url`); the page's `location.href` when not given.
    #[prop(optional, into)]
    url: Option<String>,
    /// The page's Content Security Policy nonce for the injected stylesheet (`nonce`), for a
    /// `style-src` without `'unsafe-inline'`.
    #[prop(optional, into)]
    nonce: Option<String>,
) -> impl IntoView {
    let client = Rc::new(Client::new(WebPlatform, &base_url));
    let login = trusted_auth_token.map(|token| TatLogin {
        trusted_auth_token: token,
        profile_id: token_profile_id,
        session_duration_minutes,
    });
    let hooks = hooks(on_event, on_error, on_before_redirect, consent_manifest);
    let idp = Rc::new(identity_provider(
        client,
        IdentityProviderOptions {
            login,
            allow_framing,
            url,
        },
        Rc::new(RefCell::new(hooks)),
    ));
    let view = idp.view(look(strings, theme, nonce));
    stop_on_cleanup(move || idp.stop());
    view
}

/// The apps the signed-in user authorized, each revocable behind a confirmation (the npm
/// package's `mountConnectedApps` / `<ConnectedApps>`), for the product's settings page.
///
/// ```no_run
/// use consentry_ui::ConnectedApps;
/// use leptos::prelude::*;
///
/// #[component]
/// fn Settings(trusted_auth_token: String) -> impl IntoView {
///     view! {
///         <ConnectedApps base_url="https://auth.example.com" trusted_auth_token=trusted_auth_token/>
///     }
/// }
/// # fn main() {}
/// ```
#[component]
pub fn ConnectedApps(
    /// The Consentry server (`baseUrl`).
    #[prop(into)]
    base_url: String,
    /// The product's Trusted Auth Token for the signed-in user
    /// (`trustedAuthTokenParams.trustedAuthToken`); without one the list shows
    /// `session_missing`.
    #[prop(optional, into)]
    trusted_auth_token: Option<String>,
    /// The token profile that verifies it (`tokenProfileId`); `default` when not given.
    #[prop(into, default = String::from("default"))]
    token_profile_id: String,
    /// Session length in minutes (`sessionDurationMinutes`).
    #[prop(optional, into)]
    session_duration_minutes: Option<u32>,
    /// Word overrides by key (`strings`), reactive.
    #[prop(optional, into)]
    strings: Signal<Strings>,
    /// Colours, colour scheme and logo (`theme`), reactive.
    #[prop(optional, into)]
    theme: Signal<Theme>,
    /// Called when an app's access was revoked (`onEvent`, [`UiEvent::AppRevoked`]).
    #[prop(optional, into)]
    on_event: Option<Callback<UiEvent>>,
    /// Called with every error the list shows (`onError`).
    #[prop(optional, into)]
    on_error: Option<Callback<SdkError>>,
    /// The page's Content Security Policy nonce for the injected stylesheet (`nonce`), for a
    /// `style-src` without `'unsafe-inline'`.
    #[prop(optional, into)]
    nonce: Option<String>,
) -> impl IntoView {
    let client = Rc::new(Client::new(WebPlatform, &base_url));
    let login = trusted_auth_token.map(|token| TatLogin {
        trusted_auth_token: token,
        profile_id: token_profile_id,
        session_duration_minutes,
    });
    let apps = Rc::new(connected_apps(
        client,
        ConnectedAppsOptions { login },
        Rc::new(RefCell::new(hooks(on_event, on_error, None, None))),
        look(strings, theme, nonce),
    ));
    let view = apps.view();
    stop_on_cleanup(move || apps.stop());
    view
}

/// For an organization's admins: the apps its members connected and who connected them, each
/// revocable for everyone behind a confirmation (the npm package's
/// `mountOrganizationConnectedApps` / `<OrganizationConnectedApps>`). Non-admins see `forbidden`.
#[component]
pub fn OrganizationConnectedApps(
    /// The Consentry server (`baseUrl`).
    #[prop(into)]
    base_url: String,
    /// The admin's Trusted Auth Token (`trustedAuthTokenParams.trustedAuthToken`).
    #[prop(optional, into)]
    trusted_auth_token: Option<String>,
    /// The token profile that verifies it (`tokenProfileId`); `default` when not given.
    #[prop(into, default = String::from("default"))]
    token_profile_id: String,
    /// Word overrides by key (`strings`), reactive.
    #[prop(optional, into)]
    strings: Signal<Strings>,
    /// Colours, colour scheme and logo (`theme`), reactive.
    #[prop(optional, into)]
    theme: Signal<Theme>,
    /// Called when an app was revoked for everyone ([`UiEvent::OrgAppRevoked`]).
    #[prop(optional, into)]
    on_event: Option<Callback<UiEvent>>,
    /// Called with every error the list shows (`onError`).
    #[prop(optional, into)]
    on_error: Option<Callback<SdkError>>,
    /// The page's Content Security Policy nonce for the injected stylesheet (`nonce`), for a
    /// `style-src` without `'unsafe-inline'`.
    #[prop(optional, into)]
    nonce: Option<String>,
) -> impl IntoView {
    let client = Rc::new(Client::new(WebPlatform, &base_url));
    let apps = Rc::new(organization_connected_apps(
        client,
        org_options(trusted_auth_token, token_profile_id),
        Rc::new(RefCell::new(hooks(on_event, on_error, None, None))),
        look(strings, theme, nonce),
    ));
    let view = apps.view();
    stop_on_cleanup(move || apps.stop());
    view
}

/// For an organization's admins: the policy editor — first- and third-party apps (all / only
/// these / none, with an allow-list picker), the scopes agents may get, lifetime limits — saved
/// with `If-Match` (the npm package's `mountOrganizationPolicy` / `<OrganizationPolicy>`).
#[component]
pub fn OrganizationPolicy(
    /// The Consentry server (`baseUrl`).
    #[prop(into)]
    base_url: String,
    /// The admin's Trusted Auth Token (`trustedAuthTokenParams.trustedAuthToken`).
    #[prop(optional, into)]
    trusted_auth_token: Option<String>,
    /// The token profile that verifies it (`tokenProfileId`); `default` when not given.
    #[prop(into, default = String::from("default"))]
    token_profile_id: String,
    /// Word overrides by key (`strings`), reactive.
    #[prop(optional, into)]
    strings: Signal<Strings>,
    /// Colours, colour scheme and logo (`theme`), reactive.
    #[prop(optional, into)]
    theme: Signal<Theme>,
    /// Called when the policy was saved ([`UiEvent::PolicySaved`]).
    #[prop(optional, into)]
    on_event: Option<Callback<UiEvent>>,
    /// Called with every error the editor shows (`onError`).
    #[prop(optional, into)]
    on_error: Option<Callback<SdkError>>,
    /// The page's Content Security Policy nonce for the injected stylesheet (`nonce`), for a
    /// `style-src` without `'unsafe-inline'`.
    #[prop(optional, into)]
    nonce: Option<String>,
) -> impl IntoView {
    let client = Rc::new(Client::new(WebPlatform, &base_url));
    let policy = Rc::new(organization_policy(
        client,
        org_options(trusted_auth_token, token_profile_id),
        Rc::new(RefCell::new(hooks(on_event, on_error, None, None))),
        look(strings, theme, nonce),
    ));
    let view = policy.view();
    stop_on_cleanup(move || policy.stop());
    view
}

fn org_options(token: Option<String>, profile_id: String) -> ConnectedAppsOptions {
    ConnectedAppsOptions {
        login: token.map(|trusted_auth_token| TatLogin {
            trusted_auth_token,
            profile_id,
            session_duration_minutes: None,
        }),
    }
}

/// The callbacks as the controllers take them. A callback whose owner is gone is skipped
/// (`try_run`), never a panic; `on_before_redirect` then lets the screen navigate.
fn hooks(
    on_event: Option<Callback<UiEvent>>,
    on_error: Option<Callback<SdkError>>,
    on_before_redirect: Option<Callback<String, bool>>,
    consent_manifest: Option<Callback<ConsentScreen, Option<Vec<ConsentSection>>>>,
) -> Hooks {
    Hooks {
        on_event: on_event.map(|f| {
            Rc::new(move |e: &UiEvent| {
                let _ = f.try_run(e.clone());
            }) as crate::OnEvent
        }),
        on_error: on_error.map(|f| {
            Rc::new(move |e: &SdkError| {
                let _ = f.try_run(e.clone());
            }) as crate::OnError
        }),
        on_before_redirect: on_before_redirect.map(|f| {
            Rc::new(move |location: &str| f.try_run(location.to_owned()).unwrap_or(true))
                as crate::OnBeforeRedirect
        }),
        consent_manifest: consent_manifest.map(|f| {
            Rc::new(move |screen: &ConsentScreen| f.try_run(screen.clone()).flatten())
                as crate::ConsentManifest
        }),
    }
}

/// The look signal the controllers render with, following the `strings` and `theme` props.
fn look(
    strings: Signal<Strings>,
    theme: Signal<Theme>,
    nonce: Option<String>,
) -> ArcRwSignal<Look> {
    let current = move || Look {
        strings: strings.get(),
        theme: safe_theme(theme.get()),
        nonce: nonce.clone(),
    };
    let look = ArcRwSignal::new(untrack(current.clone()));
    let target = look.clone();
    // Runs after the first render, then whenever a prop signal changes; an equal look does not
    // re-render (focus and selection stay where the user put them).
    Effect::new(move |_| {
        let next = current();
        target.maybe_update(|old| {
            let changed = *old != next;
            if changed {
                *old = next;
            }
            changed
        });
    });
    look
}

/// The theme with its logo kept only when it is an `https:` (or loopback `http:`) image, as the
/// npm build does with `theme.logoUrl`.
fn safe_theme(mut theme: Theme) -> Theme {
    theme.logo_url = theme.logo_url.filter(|u| safe_image_url(u));
    theme
}

/// Stop the controller when the component's owner is cleaned up (the component leaves the
/// view): a flow still in flight then neither updates nor navigates. The controller is not
/// `Send`, so it waits in a local stored value, which the owner disposes of after its cleanups.
fn stop_on_cleanup(stop: impl Fn() + 'static) {
    let stored = StoredValue::new_local(Rc::new(stop) as Rc<dyn Fn()>);
    on_cleanup(move || {
        if let Some(stop) = stored.try_get_value() {
            stop();
        }
    });
}
