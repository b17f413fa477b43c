//! Component tests in headless Chromium: each component mounted into a fresh element, driven
//! through every state with `tick().await`, over a scripted transport (the server's answers as
//! JSON). The same flows against a real server run in packages/consentry/tests/ui.spec.mjs; here
//! each state and each rule is pinned down one by one, without a network.
//!
//! Run by `cargo xtask test` (or `cargo xtask wasm-test`) through wasm-bindgen-test-runner.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use any_spawner::Executor;
use consentry_core::{Client, HttpRequest, HttpResponse, Platform, TatLogin, TransportError};
use consentry_ui::{
    ConnectedAppsOptions, Hooks, IdentityProviderOptions, Look, Mounted, Strings, UiEvent,
    connected_apps, identity_provider,
};
use reactive_graph::signal::ArcRwSignal;
use reactive_graph::traits::Set;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

// The test kit's scripted platform: FakeJson (JSON over serde_json) and jwt() (an unsigned-looking
// compact JWS for the SDK's local checks).
use consentry_testkit::platform::{FakeJson as J, jwt};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

// ---------------------------------------------------------------------------------------------
// A scripted transport: answers in order, records what was asked.

#[derive(Default)]
struct Script {
    answers: RefCell<VecDeque<(u16, Value)>>,
    asked: RefCell<Vec<String>>,
    /// Called with each request's path as it is sent (before it is answered).
    on_send: RefCell<Option<OnSend>>,
}

type OnSend = Rc<dyn Fn(&str)>;

#[derive(Clone, Default)]
struct Scripted(Rc<Script>);

impl Scripted {
    fn answering(answers: impl IntoIterator<Item = (u16, Value)>) -> Self {
        let s = Scripted::default();
        s.0.answers.borrow_mut().extend(answers);
        s
    }
    fn asked(&self) -> Vec<String> {
        self.0.asked.borrow().clone()
    }
    fn on_send(&self, f: impl Fn(&str) + 'static) {
        *self.0.on_send.borrow_mut() = Some(Rc::new(f));
    }
}

impl Platform for Scripted {
    type Json = J;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<J>, TransportError> {
        let path = request
            .url
            .strip_prefix("https://auth.example")
            .unwrap_or(&request.url)
            .to_owned();
        self.0.asked.borrow_mut().push(path.clone());
        let hook = self.0.on_send.borrow().clone();
        if let Some(hook) = hook {
            hook(&path);
        }
        match self.0.answers.borrow_mut().pop_front() {
            Some((status, body)) => Ok(HttpResponse {
                status,
                body: Some(J(body)),
            }),
            None => Err(TransportError {
                detail: "no scripted answer".to_owned(),
            }),
        }
    }

    fn parse_json(&self, text: &str) -> Option<J> {
        serde_json::from_str(text).ok().map(J)
    }

    fn now_unix_seconds(&self) -> f64 {
        js_sys::Date::now() / 1000.0
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn tat(exp_offset: f64) -> String {
    jwt(json!({"sub": "alice", "exp": js_sys::Date::now() / 1000.0 + exp_offset}))
}

fn login() -> Option<TatLogin> {
    Some(TatLogin {
        trusted_auth_token: tat(300.0),
        profile_id: "default".to_owned(),
        session_duration_minutes: None,
    })
}

fn authorize_url() -> String {
    format!(
        "https://app.example/oauth/authorize?client_id=agent&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256&state=s1&scope=notes%3Aread%20notes%3Awrite&resource=https%3A%2F%2Fmcp.example%2Fmcp"
    )
}

fn start_answer(consent_required: bool, verified: bool) -> (u16, Value) {
    (
        200,
        json!({
            "user": {"user_id": "u1", "email": "alice@example.com"},
            "client": {"client_id": "agent", "client_name": "Notes Agent", "verified": verified,
                       "logo_uri": "javascript:alert(1)"},
            "redirect_host": "127.0.0.1",
            "consent_required": consent_required,
            "scope_results": [
                {"scope": "notes:read", "description": "Read your notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": true},
                {"scope": "notes:write", "description": "Write notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": false},
                {"scope": "admin", "description": "Administer everything", "resource": "https://mcp.example/mcp", "is_grantable": false, "already_granted": false}
            ],
            "resources": [{"uri": "https://mcp.example/mcp", "name": "Notes"}],
            "session_token": "sess-1",
            "session_expires_at": js_sys::Date::now() / 1000.0 + 600.0
        }),
    )
}

/// What the hooks saw.
#[derive(Default)]
struct Seen {
    events: RefCell<Vec<UiEvent>>,
    errors: RefCell<Vec<String>>,
    redirects: RefCell<Vec<String>>,
}

/// Hooks that record, and keep navigation (onBeforeRedirect returns false).
fn recording(seen: &Rc<Seen>) -> Rc<RefCell<Hooks>> {
    let (a, b, c) = (Rc::clone(seen), Rc::clone(seen), Rc::clone(seen));
    Rc::new(RefCell::new(Hooks {
        on_event: Some(Rc::new(move |e: &UiEvent| {
            a.events.borrow_mut().push(e.clone())
        })),
        on_error: Some(Rc::new(move |e| {
            b.errors.borrow_mut().push(e.code.as_str().to_owned())
        })),
        on_before_redirect: Some(Rc::new(move |l: &str| {
            c.redirects.borrow_mut().push(l.to_owned());
            false
        })),
        consent_manifest: None,
    }))
}

fn fresh_element() -> web_sys::HtmlElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let el = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&el).unwrap();
    el.dyn_into().unwrap()
}

async fn settle() {
    for _ in 0..8 {
        Executor::tick().await;
    }
}

/// Resolves at the next animation frame (after the UI's own `before_repaint` work).
struct NextFrame {
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
    asked: bool,
}

impl Future for NextFrame {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.get() {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        if !self.asked {
            self.asked = true;
            let (fired, waker) = (Rc::clone(&self.fired), Rc::clone(&self.waker));
            let f = Closure::once_into_js(move || {
                fired.set(true);
                if let Some(w) = waker.borrow_mut().take() {
                    w.wake();
                }
            });
            web_sys::window()
                .unwrap()
                .request_animation_frame(f.unchecked_ref())
                .unwrap();
        }
        Poll::Pending
    }
}

/// Ticks, then two animation frames.
async fn settle_and_paint() {
    settle().await;
    for _ in 0..2 {
        NextFrame {
            fired: Rc::default(),
            waker: Rc::default(),
            asked: false,
        }
        .await;
    }
}

fn focused() -> Option<web_sys::Element> {
    web_sys::window()?.document()?.active_element()
}

fn same(a: &web_sys::Element, b: Option<&web_sys::Element>) -> bool {
    b.is_some_and(|b| js_sys::Object::is(a, b))
}

fn text(el: &web_sys::HtmlElement) -> String {
    el.text_content().unwrap_or_default()
}

fn buttons(el: &web_sys::HtmlElement) -> Vec<web_sys::HtmlElement> {
    let list = el.query_selector_all("button").unwrap();
    (0..list.length())
        .filter_map(|i| list.item(i)?.dyn_into().ok())
        .collect()
}

fn button(el: &web_sys::HtmlElement, label: &str) -> web_sys::HtmlElement {
    buttons(el)
        .into_iter()
        .find(|b| b.text_content().as_deref() == Some(label))
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", text(el)))
}

/// Mount the consent screen; returns the element, the script and the unmount handle.
fn mount_idp(
    script: Scripted,
    options: IdentityProviderOptions,
    seen: &Rc<Seen>,
) -> (web_sys::HtmlElement, impl Sized) {
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let idp = identity_provider(client, options, recording(seen));
    let look = ArcRwSignal::new(Look::default());
    let handle = consentry_ui::mount_to(&el, move || idp.view(look));
    (el, handle)
}

/// Mount the consent screen with `hooks` (set them after: the callbacks may use the returned
/// unmount, which does what `UiHandle::unmount` does: stop, then drop the view).
fn mount_idp_live(
    script: Scripted,
    options: IdentityProviderOptions,
    hooks: Rc<RefCell<Hooks>>,
) -> (web_sys::HtmlElement, Rc<dyn Fn()>) {
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let idp = Rc::new(identity_provider(client, options, hooks));
    let view_idp = Rc::clone(&idp);
    let handle: Rc<RefCell<Option<Mounted>>> =
        Rc::new(RefCell::new(Some(consentry_ui::mount_to(&el, move || {
            view_idp.view(ArcRwSignal::new(Look::default()))
        }))));
    let unmount = Rc::new(move || {
        idp.stop();
        let mounted = handle.borrow_mut().take();
        drop(mounted);
    });
    (el, unmount)
}

fn idp_options() -> IdentityProviderOptions {
    IdentityProviderOptions {
        login: login(),
        allow_framing: true,
        url: Some(authorize_url()),
    }
}

// ---------------------------------------------------------------------------------------------
// IdentityProvider

#[wasm_bindgen_test]
async fn loading_then_consent_then_allow_then_redirecting() {
    let script = Scripted::answering([
        start_answer(true, true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?code=c1&state=s1&iss=x"}),
        ),
    ]);
    let seen = Rc::new(Seen::default());
    let (el, _handle) = mount_idp(script.clone(), idp_options(), &seen);
    // Synchronously after mount: loading, and busy.
    assert!(text(&el).contains("Loading..."), "{}", text(&el));
    assert_eq!(
        el.query_selector(".cnsy-card")
            .unwrap()
            .unwrap()
            .get_attribute("aria-busy")
            .as_deref(),
        Some("true")
    );
    settle().await;

    let t = text(&el);
    assert!(
        t.contains("Notes Agent wants to access your account"),
        "{t}"
    );
    assert!(t.contains("Verified app"), "{t}");
    assert!(t.contains("Signed in as alice@example.com"), "{t}");
    assert!(t.contains("sent to 127.0.0.1"), "{t}");
    assert!(t.contains("Read your notes"), "{t}");
    assert!(t.contains("Already allowed"), "{t}");
    // The ungrantable scope is shown apart, not among the grants.
    let grants = el.query_selector(".cnsy-sec .cnsy-list").unwrap().unwrap();
    assert!(!grants.text_content().unwrap().contains("Administer"));
    assert!(t.contains("Your account cannot grant these"), "{t}");
    assert!(t.contains("Administer everything"), "{t}");
    // A javascript: logo never reaches an <img>.
    assert!(el.query_selector("img").unwrap().is_none());
    assert_eq!(
        seen.events.borrow().clone(),
        vec![UiEvent::ConsentShown {
            client_id: "agent".into()
        }]
    );

    button(&el, "Allow").click();
    settle().await;
    assert!(
        text(&el).contains("Redirecting to 127.0.0.1..."),
        "{}",
        text(&el)
    );
    assert_eq!(
        seen.redirects.borrow().clone(),
        vec!["http://127.0.0.1:9999/cb?code=c1&state=s1&iss=x".to_owned()]
    );
    assert_eq!(
        script.asked(),
        vec!["/v1/oauth/authorize/start", "/v1/oauth/authorize/submit"]
    );
    let kinds: Vec<&str> = seen.events.borrow().iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec!["consent_shown", "consent_granted", "redirecting"]
    );
}

#[wasm_bindgen_test]
async fn deny_reports_consent_denied_and_double_clicks_submit_once() {
    let script = Scripted::answering([
        start_answer(true, true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?error=access_denied&state=s1"}),
        ),
    ]);
    let seen = Rc::new(Seen::default());
    let (el, _handle) = mount_idp(script.clone(), idp_options(), &seen);
    settle().await;
    let deny = button(&el, "Deny");
    deny.click();
    deny.click();
    settle().await;
    assert_eq!(
        script.asked(),
        vec!["/v1/oauth/authorize/start", "/v1/oauth/authorize/submit"]
    );
    let kinds: Vec<&str> = seen.events.borrow().iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec!["consent_shown", "consent_denied", "redirecting"]
    );
}

#[wasm_bindgen_test]
async fn unverified_clients_carry_a_warning() {
    let script = Scripted::answering([start_answer(true, false)]);
    let seen = Rc::new(Seen::default());
    let (el, _handle) = mount_idp(script, idp_options(), &seen);
    settle().await;
    let warning = el.query_selector(".cnsy-warn").unwrap().unwrap();
    assert!(
        warning
            .text_content()
            .unwrap()
            .starts_with("Unverified app")
    );
    assert!(!text(&el).contains("Verified app"));
}

#[wasm_bindgen_test]
async fn no_consent_needed_submits_at_once() {
    let script = Scripted::answering([
        start_answer(false, true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?code=c2"}),
        ),
    ]);
    let seen = Rc::new(Seen::default());
    let (el, _handle) = mount_idp(script.clone(), idp_options(), &seen);
    settle().await;
    assert!(buttons(&el).is_empty());
    assert_eq!(seen.redirects.borrow().len(), 1);
    assert_eq!(script.asked().len(), 2);
}

#[wasm_bindgen_test]
async fn a_server_error_without_a_verified_location_shows_and_stays() {
    let script = Scripted::answering([(
        400,
        json!({"error": "invalid_redirect_uri", "error_description": "redirect_uri is not registered for this client"}),
    )]);
    let seen = Rc::new(Seen::default());
    let (el, _handle) = mount_idp(script, idp_options(), &seen);
    settle().await;
    let t = text(&el);
    assert!(t.contains("This request cannot continue"), "{t}");
    assert!(t.contains("redirect_uri is not registered"), "{t}");
    assert!(t.contains("invalid_redirect_uri"), "{t}");
    assert!(seen.redirects.borrow().is_empty());
    assert_eq!(seen.errors.borrow().clone(), vec!["invalid_redirect_uri"]);
    assert_eq!(
        el.query_selector("[role=alert]")
            .unwrap()
            .map(|a| a.text_content().unwrap()),
        Some("redirect_uri is not registered for this client".to_owned())
    );
}

#[wasm_bindgen_test]
async fn a_server_error_with_a_verified_location_goes_to_the_client() {
    let script = Scripted::answering([(
        400,
        json!({"error": "invalid_scope", "error_description": "scope: unknown", "redirect_uri": "http://127.0.0.1:9999/cb?error=invalid_scope&state=s1"}),
    )]);
    let seen = Rc::new(Seen::default());
    let (_el, _handle) = mount_idp(script, idp_options(), &seen);
    settle().await;
    assert_eq!(
        seen.redirects.borrow().clone(),
        vec!["http://127.0.0.1:9999/cb?error=invalid_scope&state=s1".to_owned()]
    );
}

#[wasm_bindgen_test]
async fn a_bad_client_id_is_refused_locally_and_nothing_is_sent() {
    let script = Scripted::answering([]);
    let seen = Rc::new(Seen::default());
    let options = IdentityProviderOptions {
        url: Some(
            "https://app.example/oauth/authorize?redirect_uri=https%3A%2F%2Fevil.example".into(),
        ),
        ..idp_options()
    };
    let (el, _handle) = mount_idp(script.clone(), options, &seen);
    settle().await;
    assert!(text(&el).contains("client_id"), "{}", text(&el));
    assert!(script.asked().is_empty());
    assert!(seen.redirects.borrow().is_empty());
}

#[wasm_bindgen_test]
async fn an_expired_token_or_no_token_fails_before_any_request() {
    for (login, code) in [
        (
            Some(TatLogin {
                trusted_auth_token: tat(-3600.0),
                profile_id: "default".into(),
                session_duration_minutes: None,
            }),
            "trusted_auth_token_expired",
        ),
        (None, "session_missing"),
    ] {
        let script = Scripted::answering([]);
        let seen = Rc::new(Seen::default());
        let options = IdentityProviderOptions {
            login,
            ..idp_options()
        };
        let (el, _handle) = mount_idp(script.clone(), options, &seen);
        settle().await;
        assert!(text(&el).contains(code), "{code}: {}", text(&el));
        assert!(script.asked().is_empty(), "{code}");
    }
}

#[wasm_bindgen_test]
async fn unmounting_mid_flight_neither_renders_nor_redirects() {
    let script = Scripted::answering([
        start_answer(false, true),
        (200, json!({"redirect_uri": "x:/"})),
    ]);
    let seen = Rc::new(Seen::default());
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let idp = Rc::new(identity_provider(client, idp_options(), recording(&seen)));
    let view_idp = Rc::clone(&idp);
    let handle = consentry_ui::mount_to(&el, move || {
        view_idp.view(ArcRwSignal::new(Look::default()))
    });
    idp.stop();
    drop(handle);
    settle().await;
    assert!(seen.redirects.borrow().is_empty());
    assert!(seen.events.borrow().is_empty());
    assert_eq!(text(&el), "");
}

#[wasm_bindgen_test]
async fn strings_replace_every_word_and_error_codes_get_their_own_text() {
    let script = Scripted::answering([(
        400,
        json!({"error": "invalid_client", "error_description": "client_id: unknown client"}),
    )]);
    let seen = Rc::new(Seen::default());
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let idp = identity_provider(client, idp_options(), recording(&seen));
    let look = ArcRwSignal::new(Look {
        strings: Strings::new(vec![
            ("error.title".into(), "Oups".into()),
            ("error.invalid_client".into(), "Unknown app".into()),
        ]),
        ..Look::default()
    });
    let _handle = consentry_ui::mount_to(&el, move || idp.view(look));
    settle().await;
    let t = text(&el);
    assert!(t.starts_with("Oups"), "{t}");
    assert!(t.contains("Unknown app"), "{t}");
    assert!(!t.contains("unknown client"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// ConnectedApps

#[wasm_bindgen_test]
async fn connected_apps_list_confirm_cancel_revoke_and_empty() {
    let app = json!({"client_id": "agent", "client_name": "Notes Agent", "scopes": ["notes:read"],
                     "resources": ["https://mcp.example/mcp"], "granted_at": 1_800_000_000, "last_used_at": null});
    let script = Scripted::answering([
        (
            200,
            json!({"session_token": "s", "expires_at": js_sys::Date::now() / 1000.0 + 600.0, "user": {"user_id": "u1"}}),
        ),
        (200, json!([app])),
        (200, json!({})),
        (200, json!([])),
    ]);
    let seen = Rc::new(Seen::default());
    let el = fresh_element();
    let client = Rc::new(Client::new(script.clone(), "https://auth.example"));
    let look = ArcRwSignal::new(Look::default());
    let apps = connected_apps(
        client,
        ConnectedAppsOptions { login: login() },
        recording(&seen),
        look,
    );
    let _handle = consentry_ui::mount_to(&el, move || apps.view());
    assert!(text(&el).contains("Loading connected apps..."));
    settle().await;
    let t = text(&el);
    assert!(
        t.contains("Notes Agent") && t.contains("notes:read") && t.contains("Not used yet"),
        "{t}"
    );
    let revoke = buttons(&el).into_iter().next().unwrap();
    assert_eq!(
        revoke.get_attribute("aria-label").as_deref(),
        Some("Revoke access for Notes Agent")
    );
    revoke.click();
    settle().await;
    assert!(text(&el).contains("Revoke access for Notes Agent? It loses access"));
    button(&el, "Cancel").click();
    settle().await;
    assert!(!text(&el).contains("It loses access"));
    assert_eq!(script.asked().len(), 2, "cancel sends nothing");
    buttons(&el).into_iter().next().unwrap().click();
    settle().await;
    button(&el, "Revoke").click();
    settle().await;
    let t = text(&el);
    assert!(t.contains("Access for Notes Agent was revoked."), "{t}");
    assert!(t.contains("No apps have access to your account."), "{t}");
    assert_eq!(
        script.asked(),
        vec![
            "/v1/sessions/attest",
            "/v1/connected_apps",
            "/v1/connected_apps/agent/revoke",
            "/v1/connected_apps"
        ]
    );
    assert_eq!(
        seen.events.borrow().clone(),
        vec![UiEvent::AppRevoked {
            client_id: "agent".into()
        }]
    );
}

#[wasm_bindgen_test]
async fn a_new_look_keeps_focus_where_the_user_put_it() {
    let script = Scripted::answering([start_answer(true, true)]);
    let seen = Rc::new(Seen::default());
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let idp = identity_provider(client, idp_options(), recording(&seen));
    let look = ArcRwSignal::new(Look::default());
    let view_look = look.clone();
    let _handle = consentry_ui::mount_to(&el, move || idp.view(view_look));
    settle_and_paint().await;
    // A new screen: its heading has focus.
    let heading = el.query_selector(".cnsy-h").unwrap().unwrap();
    assert!(
        same(&heading, focused().as_ref()),
        "the consent heading has focus"
    );

    let allow: web_sys::Element = button(&el, "Allow").into();
    button(&el, "Allow").focus().unwrap();
    // The same look again (what a React re-render passes), then new words: same screen, so
    // focus stays on the button, and the button is the same node, updated in place.
    look.set(Look::default());
    settle_and_paint().await;
    assert!(same(&allow, focused().as_ref()), "{:?}", focused());
    look.set(Look {
        strings: Strings::new(vec![("consent.allow".into(), "Approve".into())]),
        ..Look::default()
    });
    settle_and_paint().await;
    let approve: web_sys::Element = button(&el, "Approve").into();
    assert!(js_sys::Object::is(&approve, &allow), "the card was rebuilt");
    assert!(same(&allow, focused().as_ref()), "{:?}", focused());
    assert_eq!(seen.events.borrow().len(), 1, "the flow did not restart");
}

#[wasm_bindgen_test]
async fn a_callback_that_unmounts_stops_the_consent_flow() {
    // onEvent("consent_granted") unmounts: no "redirecting", no onBeforeRedirect.
    let script = Scripted::answering([
        start_answer(true, true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?code=c1"}),
        ),
    ]);
    let seen = Rc::new(Seen::default());
    let hooks = recording(&seen);
    let (el, unmount) = mount_idp_live(script.clone(), idp_options(), Rc::clone(&hooks));
    let record = hooks.borrow().on_event.clone().unwrap();
    hooks.borrow_mut().on_event = Some(Rc::new(move |e: &UiEvent| {
        record(e);
        if e.kind() == "consent_granted" {
            unmount();
        }
    }));
    settle().await;
    button(&el, "Allow").click();
    settle().await;
    let kinds: Vec<&str> = seen.events.borrow().iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, vec!["consent_shown", "consent_granted"]);
    assert!(seen.redirects.borrow().is_empty());
    assert_eq!(text(&el), "");

    // onError unmounts: the verified error location is not navigated to.
    let script = Scripted::answering([(
        400,
        json!({"error": "invalid_scope", "error_description": "scope: unknown", "redirect_uri": "http://127.0.0.1:9999/cb?error=invalid_scope"}),
    )]);
    let seen = Rc::new(Seen::default());
    let hooks = recording(&seen);
    let (el, unmount) = mount_idp_live(script, idp_options(), Rc::clone(&hooks));
    let record = hooks.borrow().on_error.clone().unwrap();
    hooks.borrow_mut().on_error = Some(Rc::new(move |e| {
        record(e);
        unmount();
    }));
    settle().await;
    assert_eq!(seen.errors.borrow().clone(), vec!["invalid_scope"]);
    assert!(seen.events.borrow().is_empty());
    assert!(seen.redirects.borrow().is_empty());
    assert_eq!(text(&el), "");

    // onBeforeRedirect unmounts and lets the UI navigate: it does not. The location is a
    // same-document one, so a navigation shows in location.hash; without the unmount it does.
    let location = web_sys::window().unwrap().location();
    for unmounts in [false, true] {
        let target = if unmounts { "#unmounted" } else { "#navigated" };
        let script = Scripted::answering([
            start_answer(false, true),
            (200, json!({ "redirect_uri": target })),
        ]);
        let seen = Rc::new(Seen::default());
        let hooks = recording(&seen);
        let (_el, unmount) = mount_idp_live(script, idp_options(), Rc::clone(&hooks));
        let record = hooks.borrow().on_before_redirect.clone().unwrap();
        hooks.borrow_mut().on_before_redirect = Some(Rc::new(move |l: &str| {
            record(l);
            if unmounts {
                unmount();
            }
            true
        }));
        settle().await;
        assert_eq!(seen.redirects.borrow().clone(), vec![target.to_owned()]);
        assert_eq!(location.hash().unwrap() == target, !unmounts, "{target}");
    }
}

#[wasm_bindgen_test]
async fn only_http_and_app_schemes_are_navigated_to() {
    for (location, navigates) in [
        ("javascript:alert(document.domain)", false),
        (" \u{1}JavaScript:alert(1)", false),
        ("java\tscript:alert(1)", false),
        ("DATA:text/html,<script>alert(1)</script>", false),
        ("vbscript:msgbox(1)", false),
        ("blob:https://app.example/0a1b", false),
        ("file:///etc/passwd", false),
        ("about:blank", false),
        ("cursor://anysphere.cursor-retrieval/cb?code=c1", true),
        ("com.example.app:/cb?code=c1", true),
        ("http://127.0.0.1:9999/cb?code=c1", true),
    ] {
        let script = Scripted::answering([
            start_answer(false, true),
            (200, json!({ "redirect_uri": location })),
        ]);
        let seen = Rc::new(Seen::default());
        let (el, _handle) = mount_idp(script, idp_options(), &seen);
        settle().await;
        if navigates {
            assert_eq!(
                seen.redirects.borrow().clone(),
                vec![location.to_owned()],
                "{location:?}"
            );
            assert!(seen.errors.borrow().is_empty(), "{location:?}");
        } else {
            assert!(seen.redirects.borrow().is_empty(), "{location:?}");
            assert_eq!(seen.errors.borrow().clone(), vec!["invalid_response"]);
            assert!(
                !seen
                    .events
                    .borrow()
                    .iter()
                    .any(|e| e.kind() == "redirecting"),
                "{location:?}"
            );
            let t = text(&el);
            assert!(t.contains("This request cannot continue"), "{t}");
            assert!(
                t.contains("redirect_uri") && t.contains("an http(s) or app-specific scheme"),
                "{t}"
            );
        }
    }
}

/// ConnectedApps over `script`; returns the element and an unmount (stop, then drop the view).
fn mount_apps_live(
    script: Scripted,
    hooks: Rc<RefCell<Hooks>>,
) -> (web_sys::HtmlElement, Rc<dyn Fn()>) {
    let el = fresh_element();
    let client = Rc::new(Client::new(script, "https://auth.example"));
    let apps = Rc::new(connected_apps(
        client,
        ConnectedAppsOptions { login: login() },
        hooks,
        ArcRwSignal::new(Look::default()),
    ));
    let view_apps = Rc::clone(&apps);
    let handle: Rc<RefCell<Option<Mounted>>> =
        Rc::new(RefCell::new(Some(consentry_ui::mount_to(&el, move || {
            view_apps.view()
        }))));
    let unmount = Rc::new(move || {
        apps.stop();
        let mounted = handle.borrow_mut().take();
        drop(mounted);
    });
    (el, unmount)
}

fn apps_script() -> Scripted {
    let app = json!({"client_id": "agent", "client_name": "Notes Agent", "scopes": ["notes:read"],
                     "resources": ["https://mcp.example/mcp"], "granted_at": 1_800_000_000, "last_used_at": null});
    Scripted::answering([
        (
            200,
            json!({"session_token": "s", "expires_at": js_sys::Date::now() / 1000.0 + 600.0, "user": {"user_id": "u1"}}),
        ),
        (200, json!([app])),
        (200, json!({})),
        (200, json!([])),
    ])
}

#[wasm_bindgen_test]
async fn connected_apps_unmounted_from_a_callback_or_mid_request_go_quiet() {
    // onEvent("app_revoked") unmounts: the list is not fetched again.
    let script = apps_script();
    let seen = Rc::new(Seen::default());
    let hooks = recording(&seen);
    let (el, unmount) = mount_apps_live(script.clone(), Rc::clone(&hooks));
    let record = hooks.borrow().on_event.clone().unwrap();
    hooks.borrow_mut().on_event = Some(Rc::new(move |e: &UiEvent| {
        record(e);
        unmount();
    }));
    settle().await;
    buttons(&el).into_iter().next().unwrap().click();
    settle().await;
    button(&el, "Revoke").click();
    settle().await;
    assert_eq!(
        script.asked(),
        vec![
            "/v1/sessions/attest",
            "/v1/connected_apps",
            "/v1/connected_apps/agent/revoke"
        ]
    );
    assert_eq!(seen.events.borrow().len(), 1);
    assert_eq!(text(&el), "");

    // Unmounted while the revocation is in flight: no app_revoked, no reload, no error.
    let script = apps_script();
    let seen = Rc::new(Seen::default());
    let (el, unmount) = mount_apps_live(script.clone(), recording(&seen));
    script.on_send(move |path| {
        if path.ends_with("/revoke") {
            unmount();
        }
    });
    settle().await;
    buttons(&el).into_iter().next().unwrap().click();
    settle().await;
    button(&el, "Revoke").click();
    settle().await;
    assert_eq!(script.asked().len(), 3, "{:?}", script.asked());
    assert!(seen.events.borrow().is_empty());
    assert!(seen.errors.borrow().is_empty());
    assert_eq!(text(&el), "");

    // Unmounted while signing in: the list is never asked for.
    let script = apps_script();
    let seen = Rc::new(Seen::default());
    let (el, unmount) = mount_apps_live(script.clone(), recording(&seen));
    script.on_send(move |path| {
        if path == "/v1/sessions/attest" {
            unmount();
        }
    });
    settle().await;
    assert_eq!(script.asked(), vec!["/v1/sessions/attest"]);
    assert!(seen.errors.borrow().is_empty());
    assert_eq!(text(&el), "");
}
