//! `IdentityProvider`: the consent screen.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::mount::spawn_local;
use consentry_core::{
    AuthorizeParams, Client, ConsentScreen, ConsentSection, ErrorCode, NotGrantable, SdkError,
    SdkErrorCode, parse_authorize_params,
};
use reactive_graph::owner::{LocalStorage, StoredValue};
use reactive_graph::prelude::*;
use reactive_graph::signal::ArcRwSignal;
use tachys::prelude::*;
use wasm_bindgen::JsCast;

use crate::dom::{El, el, fragment};
use crate::{Hooks, Login, Look, Platform, Shown, Strings, UiEvent, browser, style};

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
        /// Shared: the manifest refresh holds it while the page's callback runs.
        screen: Arc<ConsentScreen>,
        sections: Vec<ConsentSection>,
        submitting: bool,
    },
    Redirecting {
        host: String,
    },
    /// `app_not_allowed_for_org`: said in words, with a way back to the app when the server
    /// verified where it receives errors.
    Refused {
        app: String,
        org: String,
        back: Option<String>,
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
    pub fn view(&self, look: ArcRwSignal<Look>) -> AnyView {
        let ctl = Rc::clone(&self.ctl);
        spawn_local(run(Rc::clone(&ctl)));
        let stored = StoredValue::new_local(ctl);
        let state = self.ctl.state.clone();
        frame(
            look,
            // `with`, not `get`: the state is read in place, never cloned.
            Arc::new(move |strings| {
                state.with(|state| match state {
                    State::Loading => (0, true, heading(strings.get("loading"))),
                    State::Consent {
                        screen,
                        sections,
                        submitting,
                    } => (
                        1,
                        *submitting,
                        consent_view(strings, screen, sections, *submitting, stored),
                    ),
                    State::Redirecting { host } => (
                        2,
                        true,
                        heading(strings.fill("redirecting", &[("host", host)])),
                    ),
                    State::Failed(shown) => (3, false, error_view(strings, shown)),
                    State::Refused { app, org, back } => {
                        (4, false, refused_view(strings, app, org, back, stored))
                    }
                })
            }),
        )
    }

    /// Recompute the consent lines after the page changed its consent manifest callback. The
    /// screen re-renders only if the lines changed; the callback may unmount the component.
    pub fn refresh_manifest(&self) {
        let ctl = &self.ctl;
        if !ctl.alive.get() {
            return;
        }
        let Some(screen) = ctl.state.with_untracked(|s| match s {
            State::Consent { screen, .. } => Some(Arc::clone(screen)),
            _ => None,
        }) else {
            return;
        };
        let hooks = ctl.hooks.borrow().clone();
        let fresh = hooks.sections(&screen);
        if !ctl.alive.get() {
            return;
        }
        ctl.state.maybe_update(|s| match s {
            State::Consent {
                screen: shown,
                sections,
                ..
            } if Arc::ptr_eq(shown, &screen) && *sections != fresh => {
                *sections = fresh;
                true
            }
            _ => false,
        });
    }

    /// Stop: nothing in flight may update the screen or navigate any more.
    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

/// What a component shows for its current state: which screen it is (a number per state kind),
/// whether it is busy, and the card's content.
pub(crate) type Body = Arc<dyn Fn(&Strings) -> (u8, bool, AnyView) + Send + Sync>;

/// The component's outer frame: the themed root and the card, whose content `body` renders from
/// the current state. One reactive closure re-renders the whole frame when the state or the look
/// changes: a single `Fn() -> AnyView` type for both components, so the renderer's reactive code
/// is instantiated once, and the DOM is updated in place. When the screen changes (another state
/// kind: loading, consent, redirecting, error), its heading gets focus, so screen readers announce
/// it and the keyboard starts from the top; any other re-render (new words or colours from
/// `update()`, a busy flag) leaves focus where the user put it.
pub(crate) fn frame(look: ArcRwSignal<Look>, body: Body) -> AnyView {
    let nonce = look.with_untracked(|l| l.nonce.clone());
    crate::browser::inject_css(style::STYLE_ID, style::CSS, nonce.as_deref());
    // The root is found again by a per-mount key: cheaper in wasm than a `NodeRef`.
    static MOUNTS: AtomicU32 = AtomicU32::new(0);
    let key = decimal(MOUNTS.fetch_add(1, Ordering::Relaxed));
    let mut root = String::from("[data-cnsy-root=\"");
    root.push_str(&key);
    root.push_str("\"]");
    let mut heading = root.clone();
    heading.push_str(" .cnsy-h");
    let mut focused_screen = None;
    // The theme's custom properties, as last set on the root (through CSSOM: see set_style).
    let mut applied_style = String::new();
    let render: Arc<Mutex<dyn FnMut() -> AnyView + Send>> = Arc::new(Mutex::new(move || {
        let (class, style, logo, strings) = look.with(|l| {
            (
                l.theme.root_class(),
                l.theme.style_attr(),
                l.theme.logo_url.clone(),
                l.strings.clone(),
            )
        });
        let (screen, busy, content) = body(&strings);
        // Once the view is in the DOM: the new theme on the root, focus on a new screen's
        // heading (one closure type for both: each costs its own glue).
        let focus = (focused_screen != Some(screen)).then(|| heading.clone());
        focused_screen = Some(screen);
        let restyle = (style != applied_style).then(|| {
            applied_style.clone_from(&style);
            (root.clone(), style)
        });
        if focus.is_some() || restyle.is_some() {
            browser::before_repaint(move || {
                if let Some((root, style)) = restyle {
                    browser::set_style(&root, &style);
                }
                if let Some(h) = focus
                    .and_then(|heading| browser::query(&heading))
                    .and_then(|h| h.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = h.focus();
                }
            });
        }
        el("DIV", class)
            .attr("data-cnsy-root", key.clone())
            .child(
                el("DIV", "cnsy-card")
                    .attr("aria-busy", if busy { "true" } else { "false" })
                    .child_opt(logo.map(|url| {
                        el("IMG", "cnsy-brand")
                            .attr("src", url)
                            .attr("alt", "")
                            .view()
                    }))
                    .child(content)
                    .view(),
            )
            .view()
    }));
    render.into_any()
}

/// `n` in decimal, without `core::fmt`.
pub(crate) fn decimal(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from(b'0' + (n % 10) as u8));
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The screen's heading (focused when it appears).
pub(crate) fn h1(text: String) -> El {
    el("H1", "cnsy-h").attr("tabindex", "-1").text(text)
}

fn heading(text: String) -> AnyView {
    h1(text).view()
}

pub(crate) fn error_view(strings: &Strings, shown: &Shown) -> AnyView {
    fragment(vec![
        heading(strings.get("error.title")),
        el("P", "cnsy-err")
            .attr("role", "alert")
            .text(strings.error_text(shown.code, &shown.description))
            .view(),
        el("P", "cnsy-mu")
            .text(strings.fill("error.code", &[("code", shown.code)]))
            .view(),
    ])
}

pub(crate) fn logo(uri: Option<&String>) -> Option<AnyView> {
    uri.map(|src| {
        el("IMG", "cnsy-logo")
            .attr("src", src)
            .attr("alt", "")
            .view()
    })
}

pub(crate) fn badge(text: String) -> AnyView {
    el("SPAN", "cnsy-badge").text(text).view()
}

fn consent_view<P: Platform + 'static>(
    strings: &Strings,
    screen: &ConsentScreen,
    sections: &[ConsentSection],
    submitting: bool,
    ctl: StoredValue<Rc<Ctl<P>>, LocalStorage>,
) -> AnyView {
    let app = screen.client.name.as_str();
    let trust = if screen.client.verified {
        badge(strings.get("consent.verified"))
    } else {
        el("P", "cnsy-warn")
            .attr("role", "note")
            .text(strings.fill("consent.unverified", &[("app", app)]))
            .view()
    };
    let already = strings.get("consent.already_granted");
    let sections = sections.iter().map(|section| {
        let items = section.items.iter().map(|item| {
            el("LI", "")
                .text(item.text.clone())
                .child_opt(
                    item.already_granted
                        .then(|| fragment(vec![" ".into_any(), badge(already.clone())])),
                )
                .children(
                    item.details
                        .iter()
                        .map(|d| el("SPAN", "cnsy-det cnsy-mu").text(d.clone()).view()),
                )
                .view()
        });
        el("DIV", "cnsy-sec")
            .child_opt(
                section
                    .header
                    .clone()
                    .map(|h| el("H2", "cnsy-sh").text(h).view()),
            )
            .child(el("UL", "cnsy-list").children(items).view())
            .view()
    });
    let not_grantable = (!screen.not_grantable.is_empty()).then(|| {
        el("DIV", "cnsy-sec")
            .child(
                el("P", "cnsy-mu")
                    .text(strings.get("consent.not_grantable"))
                    .view(),
            )
            .child(
                el("UL", "cnsy-list cnsy-mu")
                    .children(screen.not_grantable.iter().map(|s| {
                        el("LI", "")
                            .text(s.description.clone())
                            .child_opt(
                                (s.not_grantable_reason
                                    == Some(NotGrantable::ScopeNotAllowedForOrg))
                                .then(|| {
                                    fragment(vec![
                                        " ".into_any(),
                                        badge(strings.get("consent.org_disallowed")),
                                    ])
                                }),
                            )
                            .view()
                    }))
                    .view(),
            )
            .view()
    });
    let choice = move |granted: bool, class: &'static str, label: String| {
        el("BUTTON", class)
            .attr("type", "button")
            .flag("disabled", submitting)
            .on_click(move |_| spawn_local(submit(ctl.get_value(), granted)))
            .text(label)
            .view()
    };
    let mut parts = vec![
        el("DIV", "cnsy-app")
            .child_opt(logo(screen.client.logo_uri.as_ref()))
            .child(h1(strings.fill("consent.title", &[("app", app)])).view())
            .view(),
        trust,
        el("P", "cnsy-mu")
            .text(strings.fill("consent.account", &[("account", screen.user.label())]))
            .view(),
        el("P", "")
            .text(strings.fill("consent.intro", &[("app", app)]))
            .view(),
    ];
    parts.extend(sections);
    parts.extend(not_grantable);
    parts.push(
        el("P", "cnsy-mu")
            .text(strings.fill("consent.redirect", &[("host", &screen.redirect_host)]))
            .view(),
    );
    if submitting {
        parts.push(
            el("P", "cnsy-mu")
                .attr("role", "status")
                .text(strings.get("consent.submitting"))
                .view(),
        );
    }
    parts.push(
        el("DIV", "cnsy-actions")
            .child(choice(false, "cnsy-btn", strings.get("consent.deny")))
            .child(choice(
                true,
                "cnsy-btn cnsy-pri",
                strings.get("consent.allow"),
            ))
            .view(),
    );
    fragment(parts)
}

/// The organization refused the app: who, by whom, and the way back to the app.
fn refused_view<P: Platform + 'static>(
    strings: &Strings,
    app: &str,
    org: &str,
    back: &Option<String>,
    ctl: StoredValue<Rc<Ctl<P>>, LocalStorage>,
) -> AnyView {
    let names = [("app", app), ("org", org)];
    let mut parts = vec![
        heading(strings.fill("refused.title", &names)),
        el("P", "cnsy-err")
            .attr("role", "alert")
            .text(strings.fill("refused.text", &names))
            .view(),
        el("P", "cnsy-mu")
            .text(strings.fill("error.code", &[("code", "app_not_allowed_for_org")]))
            .view(),
    ];
    if let Some(location) = back.clone() {
        parts.push(
            el("DIV", "cnsy-actions")
                .child(
                    el("BUTTON", "cnsy-btn cnsy-pri")
                        .attr("type", "button")
                        .text(strings.fill("refused.back", &names))
                        .on_click(move |_| {
                            let ctl = ctl.get_value();
                            let hooks = ctl.hooks.borrow().clone();
                            redirect(&ctl, &hooks, &location);
                        })
                        .view(),
                )
                .view(),
        );
    }
    fragment(parts)
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
        // Spawned, not awaited: one copy of submit's state machine instead of two.
        return spawn_local(submit(ctl, true));
    }
    let hooks = ctl.hooks.borrow().clone();
    let client_id = screen.client.client_id.clone();
    let sections = hooks.sections(&screen);
    // The page's callbacks may unmount the component: asked again after each one.
    if !ctl.alive.get() {
        return;
    }
    ctl.state.set(State::Consent {
        sections,
        screen: Arc::new(screen),
        submitting: false,
    });
    hooks.event(&UiEvent::ConsentShown { client_id });
}

async fn submit<P: Platform + 'static>(ctl: Rc<Ctl<P>>, granted: bool) {
    // Spawned: the component may have been unmounted since (no consent is sent then).
    if !ctl.alive.get() {
        return;
    }
    let Some(params) = ctl.params.borrow().clone() else {
        return;
    };
    let mut client_id = params.client_id.clone().unwrap_or_default();
    // Only a consent screen not yet answered (or the start, when no consent is needed) may
    // submit: a second click, or one that lands after the first answer, sends nothing.
    let mut busy = false;
    ctl.state.update(|s| match s {
        State::Consent {
            submitting, screen, ..
        } => {
            busy = *submitting;
            *submitting = true;
            client_id.clone_from(&screen.client.client_id);
        }
        State::Loading => {}
        _ => busy = true,
    });
    if busy {
        return;
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

/// Show "redirecting" and send the browser to `location`, unless a callback unmounted the
/// component (also the one that just ran before this) or the location is not one to navigate to.
fn redirect<P: Platform>(ctl: &Ctl<P>, hooks: &Hooks, location: &str) {
    if !ctl.alive.get() {
        return;
    }
    if !browser::navigable(location) {
        return fail(
            ctl,
            &SdkError::local(
                SdkErrorCode::InvalidResponse,
                "the server's redirect_uri has a scheme the consent screen never opens (javascript:, data:, vbscript:, blob:, file:, about:); expected an http(s) or app-specific scheme",
            ),
        );
    }
    let host = consentry_core::redirect_host(location).unwrap_or_default();
    ctl.state.set(State::Redirecting { host });
    hooks.redirect(location, &ctl.alive);
}

#[inline(never)]
/// Show `e`; if the server verified where the client receives errors, send the browser there.
fn fail<P: Platform>(ctl: &Ctl<P>, e: &SdkError) {
    if !ctl.alive.get() {
        return;
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.error(e);
    if !ctl.alive.get() {
        return;
    }
    if e.code == SdkErrorCode::Server(ErrorCode::AppNotAllowedForOrg) {
        // Said on the screen (the user can do something: ask an admin), not bounced silently.
        let app = e.client_name.clone().filter(|n| !n.is_empty()).or_else(|| {
            ctl.params
                .borrow()
                .as_ref()
                .and_then(|p| p.client_id.clone())
        });
        return ctl.state.set(State::Refused {
            app: app.unwrap_or_default(),
            org: e.organization_name.clone().unwrap_or_default(),
            back: e.redirect_uri.clone(),
        });
    }
    match &e.redirect_uri {
        Some(location) => redirect(ctl, &hooks, location),
        None => ctl.state.set(State::Failed(Shown::from(e))),
    }
}
