//! `IdentityProvider`: the consent screen.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use consentry_core::{
    AuthorizeParams, Client, ConsentScreen, ConsentSection, ErrorCode, SdkError, SdkErrorCode,
    parse_authorize_params,
};
use leptos::html::H1;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::{Hooks, Login, Look, Platform, Shown, UiEvent, browser, style};

/// What the consent screen is started with (changing any of it means a new mount).
#[derive(Clone, Debug, Default)]
pub struct IdentityProviderOptions {
    /// The product's Trusted Auth Token for the signed-in user: attest and start in one request.
    pub login: Option<Login>,
    /// Render even inside a frame. Off by default: a framed consent screen can be clickjacked.
    pub allow_framing: bool,
    /// The authorization URL to read; the page's `location.href` when `None`.
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Loading,
    Consent {
        screen: Box<ConsentScreen>,
        sections: Vec<ConsentSection>,
        submitting: bool,
    },
    Redirecting {
        host: String,
    },
    Failed(Shown),
}

struct Ctl<P: Platform> {
    client: Rc<Client<P>>,
    hooks: Rc<RefCell<Hooks>>,
    options: IdentityProviderOptions,
    params: RefCell<Option<AuthorizeParams>>,
    state: ArcRwSignal<State>,
    /// Cleared on unmount: a flow still in flight then neither updates nor navigates.
    alive: Cell<bool>,
}

/// A mounted consent screen's controller; the view comes from [`IdentityProvider::view`].
pub struct IdentityProvider<P: Platform + 'static> {
    ctl: Rc<Ctl<P>>,
}

/// Build the consent screen. Call [`IdentityProvider::view`] inside the mount.
pub fn identity_provider<P: Platform + 'static>(
    client: Rc<Client<P>>,
    options: IdentityProviderOptions,
    hooks: Rc<RefCell<Hooks>>,
) -> IdentityProvider<P> {
    IdentityProvider {
        ctl: Rc::new(Ctl {
            client,
            hooks,
            options,
            params: RefCell::new(None),
            state: ArcRwSignal::new(State::Loading),
            alive: Cell::new(true),
        }),
    }
}

impl<P: Platform + 'static> IdentityProvider<P> {
    /// The view; starts the flow on the next tick.
    pub fn view(&self, look: ArcRwSignal<Look>) -> impl IntoView + use<P> {
        crate::browser::inject_css(style::STYLE_ID, style::CSS);
        let ctl = Rc::clone(&self.ctl);
        spawn_local(run(Rc::clone(&ctl)));
        let stored = StoredValue::new_local(ctl);
        let state = RwSignal::from(self.ctl.state.clone());
        let heading = NodeRef::<H1>::new();
        focus_on_mount(heading);
        let look = RwSignal::from(look);
        let root_look = look;
        view! {
            <div
                class=move || root_look.with(|l| l.theme.root_class())
                style=move || root_look.with(|l| l.theme.style_attr())
            >
                <div class="cnsy-card" aria-busy=move || state.with(|s| matches!(s, State::Loading | State::Redirecting { .. } | State::Consent { submitting: true, .. }).to_string())>
                    {move || brand(look)}
                    {move || {
                            let strings = look.with(|l| l.strings.clone());
                            match state.get() {
                                State::Loading => {
                                    view! {
                                        <h1 class="cnsy-h" tabindex="-1" node_ref=heading>
                                            {strings.get("loading")}
                                        </h1>
                                    }
                                        .into_any()
                                }
                                State::Redirecting { host } => {
                                    view! {
                                        <h1 class="cnsy-h" tabindex="-1" node_ref=heading>
                                            {strings.fill("redirecting", &[("host", &host)])}
                                        </h1>
                                    }
                                        .into_any()
                                }
                                State::Failed(shown) => error_view(&strings, &shown, heading).into_any(),
                                State::Consent { screen, sections, submitting } => {
                                    consent_view(&strings, &screen, &sections, submitting, heading, stored)
                                        .into_any()
                                }
                            }
                        }
                    }
                </div>
            </div>
        }
    }

    /// Recompute the consent lines after the page changed its consent manifest callback.
    pub fn refresh_manifest(&self) {
        let hooks = self.ctl.hooks.borrow().clone();
        self.ctl.state.update(|s| {
            if let State::Consent {
                screen, sections, ..
            } = s
            {
                *sections = hooks.sections(screen);
            }
        });
    }

    /// Stop: nothing in flight may update the screen or navigate any more.
    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

/// Focus the screen's heading whenever a new one is rendered (screen readers announce it, and
/// the keyboard starts from the top of the screen).
pub(crate) fn focus_on_mount(heading: NodeRef<H1>) {
    Effect::new(move || {
        if let Some(h) = heading.get() {
            let _ = h.focus();
        }
    });
}

pub(crate) fn brand(look: RwSignal<Look>) -> Option<impl IntoView + use<>> {
    let url = look.with(|l| l.theme.logo_url.clone())?;
    Some(view! { <img class="cnsy-brand" src=url alt="" /> })
}

pub(crate) fn error_view(
    strings: &crate::Strings,
    shown: &Shown,
    heading: NodeRef<H1>,
) -> impl IntoView + use<> {
    view! {
        <h1 class="cnsy-h" tabindex="-1" node_ref=heading>{strings.get("error.title")}</h1>
        <p class="cnsy-err" role="alert">{strings.error_text(shown.code, &shown.description)}</p>
        <p class="cnsy-mu">{strings.fill("error.code", &[("code", shown.code)])}</p>
    }
}

fn consent_view<P: Platform + 'static>(
    strings: &crate::Strings,
    screen: &ConsentScreen,
    sections: &[ConsentSection],
    submitting: bool,
    heading: NodeRef<H1>,
    ctl: StoredValue<Rc<Ctl<P>>, LocalStorage>,
) -> impl IntoView + use<P> {
    let app = screen.client.name.as_str();
    let title = strings.fill("consent.title", &[("app", app)]);
    let logo = screen
        .client
        .logo_uri
        .clone()
        .map(|src| view! { <img class="cnsy-logo" src=src alt="" /> });
    let trust = if screen.client.verified {
        view! { <span class="cnsy-badge">{strings.get("consent.verified")}</span> }.into_any()
    } else {
        view! {
            <p class="cnsy-warn" role="note">{strings.fill("consent.unverified", &[("app", app)])}</p>
        }
        .into_any()
    };
    let already = strings.get("consent.already_granted");
    let section_views = sections
        .iter()
        .map(|section| {
            let header = section
                .header
                .clone()
                .map(|h| view! { <h2 class="cnsy-sh">{h}</h2> });
            let items = section
                .items
                .iter()
                .map(|item| {
                    let badge = item.already_granted.then(|| {
                        view! { " " <span class="cnsy-badge">{already.clone()}</span> }
                    });
                    let details = item
                        .details
                        .iter()
                        .map(|d| view! { <span class="cnsy-det cnsy-mu">{d.clone()}</span> })
                        .collect_view();
                    view! { <li>{item.text.clone()}{badge}{details}</li> }
                })
                .collect_view();
            view! { <div class="cnsy-sec">{header}<ul class="cnsy-list">{items}</ul></div> }
        })
        .collect_view();
    let not_grantable = (!screen.not_grantable.is_empty()).then(|| {
        let items = screen
            .not_grantable
            .iter()
            .map(|s| view! { <li>{s.description.clone()}</li> })
            .collect_view();
        view! {
            <div class="cnsy-sec">
                <p class="cnsy-mu">{strings.get("consent.not_grantable")}</p>
                <ul class="cnsy-list cnsy-mu">{items}</ul>
            </div>
        }
    });
    let choose = move |granted: bool| {
        let ctl = ctl.get_value();
        spawn_local(submit(ctl, granted));
    };
    let status = submitting.then(|| {
        view! { <p class="cnsy-mu" role="status">{strings.get("consent.submitting")}</p> }
    });
    view! {
        <div class="cnsy-app">
            {logo}
            <div>
                <h1 class="cnsy-h" tabindex="-1" node_ref=heading>{title}</h1>
            </div>
        </div>
        {trust}
        <p class="cnsy-mu">{strings.fill("consent.account", &[("account", screen.user.label())])}</p>
        <p>{strings.fill("consent.intro", &[("app", app)])}</p>
        {section_views}
        {not_grantable}
        <p class="cnsy-mu">{strings.fill("consent.redirect", &[("host", &screen.redirect_host)])}</p>
        {status}
        <div class="cnsy-actions">
            <button type="button" class="cnsy-btn" disabled=submitting on:click=move |_| choose(false)>
                {strings.get("consent.deny")}
            </button>
            <button type="button" class="cnsy-btn cnsy-pri" disabled=submitting on:click=move |_| choose(true)>
                {strings.get("consent.allow")}
            </button>
        </div>
    }
}

/// Read the request, sign in and start in one round trip, then show consent (or go on at once).
async fn run<P: Platform + 'static>(ctl: Rc<Ctl<P>>) {
    if !ctl.options.allow_framing && browser::is_framed() {
        return fail(
            &ctl,
            &SdkError::local(
                SdkErrorCode::FramingRefused,
                "the consent screen refuses to render inside a frame (clickjacking); pass allowFraming: true only if you frame it yourself",
            ),
        );
    }
    let url = ctl.options.url.clone().unwrap_or_else(browser::href);
    let parsed = parse_authorize_params(&url);
    let params = match (parsed.params, parsed.error) {
        (Some(params), None) => params,
        // The client and its redirect URI look sound: the server verifies them and answers with
        // the error location the client must receive.
        (Some(params), Some(_)) if parsed.redirectable => params,
        (_, Some(e)) => return fail(&ctl, &e),
        (None, None) => {
            return fail(
                &ctl,
                &SdkError::local(
                    SdkErrorCode::Server(ErrorCode::InvalidRequest),
                    "the page URL carries no authorization request",
                ),
            );
        }
    };
    let Some(login) = ctl.options.login.clone() else {
        return fail(
            &ctl,
            &SdkError::local(
                SdkErrorCode::SessionMissing,
                "trustedAuthTokenParams (trustedAuthToken and tokenProfileId) are required to sign the user in",
            ),
        );
    };
    *ctl.params.borrow_mut() = Some(params.clone());
    if !ctl.alive.get() {
        return;
    }
    let answer = ctl.client.authorize_start(&params, Some(&login)).await;
    if !ctl.alive.get() {
        return;
    }
    let screen = match answer.and_then(|json| ConsentScreen::from_json(&json)) {
        Ok(screen) => screen,
        Err(e) => return fail(&ctl, &e),
    };
    if !screen.consent_required {
        return submit(ctl, true).await;
    }
    let hooks = ctl.hooks.borrow().clone();
    let client_id = screen.client.client_id.clone();
    ctl.state.set(State::Consent {
        sections: hooks.sections(&screen),
        screen: Box::new(screen),
        submitting: false,
    });
    hooks.event(&UiEvent::ConsentShown { client_id });
}

async fn submit<P: Platform + 'static>(ctl: Rc<Ctl<P>>, granted: bool) {
    let Some(params) = ctl.params.borrow().clone() else {
        return;
    };
    let mut client_id = params.client_id.clone().unwrap_or_default();
    let mut busy = false;
    ctl.state.update(|s| {
        if let State::Consent {
            submitting, screen, ..
        } = s
        {
            busy = *submitting;
            *submitting = true;
            client_id.clone_from(&screen.client.client_id);
        }
    });
    if busy {
        return; // a double click: the first choice is on its way
    }
    let answer = ctl.client.authorize_submit(&params, granted).await;
    if !ctl.alive.get() {
        return;
    }
    match answer {
        Ok(location) => {
            let hooks = ctl.hooks.borrow().clone();
            hooks.event(&if granted {
                UiEvent::ConsentGranted { client_id }
            } else {
                UiEvent::ConsentDenied { client_id }
            });
            redirect(&ctl, &hooks, &location);
        }
        Err(e) => fail(&ctl, &e),
    }
}

fn redirect<P: Platform>(ctl: &Ctl<P>, hooks: &Hooks, location: &str) {
    let host = consentry_core::redirect_host(location).unwrap_or_default();
    ctl.state.set(State::Redirecting { host });
    hooks.redirect(location);
}

/// Show `e`; if the server verified where the client receives errors, send the browser there.
fn fail<P: Platform>(ctl: &Ctl<P>, e: &SdkError) {
    if !ctl.alive.get() {
        return;
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.error(e);
    match &e.redirect_uri {
        Some(location) => redirect(ctl, &hooks, location),
        None => ctl.state.set(State::Failed(Shown::from(e))),
    }
}
