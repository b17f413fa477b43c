//! The Leptos face (feature `leptos`) in headless Chromium: `<IdentityProvider/>` and
//! `<ConnectedApps/>` mounted with `leptos::mount::mount_to`, their props turned into the same
//! controllers as the npm build, over `WebPlatform` (the window's `fetch`). `fetch` is replaced by
//! a scripted function (answers in order, requests recorded), so nothing leaves the page; the
//! same components against the real server run in tests/leptos-app.spec.mjs.
//!
//! Run by `cargo xtask test` (step "Leptos components") through wasm-bindgen-test-runner:
//! `cargo test -p consentry-ui --features leptos --target wasm32-unknown-unknown --test leptos_components`.

#![cfg(all(target_arch = "wasm32", feature = "leptos"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::rc::Rc;

use consentry_ui::{
    ColorScheme, ConnectedApps, IdentityProvider, SdkError, Strings, Theme, UiEvent,
};
use leptos::prelude::*;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[allow(dead_code)]
use consentry_testkit::platform::jwt;

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const BASE: &str = "https://auth.example";

// ---------------------------------------------------------------------------------------------
// A scripted window.fetch

/// Replace `window.fetch`: answers `answers` in order (then 500), records each request's URL,
/// method, Authorization header, body and credentials mode in `window.__cnsyAsked`.
fn script_fetch(answers: Vec<(u16, Value)>) {
    let window = web_sys::window().unwrap();
    js_sys::Reflect::set(
        &window,
        &"__cnsyAnswers".into(),
        &js_sys::JSON::parse(&json!(answers).to_string()).unwrap(),
    )
    .unwrap();
    js_sys::Function::new_no_args(
        "window.__cnsyAsked = [];
         window.fetch = (url, init) => {
           window.__cnsyAsked.push({ url, method: init.method, credentials: init.credentials,
             authorization: init.headers.authorization ?? null, body: init.body ? JSON.parse(init.body) : null });
           const [status, body] = window.__cnsyAnswers.shift() ?? [500, { error: 'server_error' }];
           return Promise.resolve(new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } }));
         };",
    )
    .call0(&wasm_bindgen::JsValue::NULL)
    .unwrap();
}

/// The requests the components sent, as JSON.
fn asked() -> Vec<Value> {
    let window = web_sys::window().unwrap();
    let v = js_sys::Reflect::get(&window, &"__cnsyAsked".into()).unwrap();
    let text: String = js_sys::JSON::stringify(&v).unwrap().into();
    serde_json::from_str(&text).unwrap()
}

fn paths() -> Vec<String> {
    asked()
        .iter()
        .map(|a| {
            a["url"]
                .as_str()
                .unwrap()
                .trim_start_matches(BASE)
                .to_owned()
        })
        .collect()
}

fn tat() -> String {
    jwt(json!({"sub": "alice", "exp": js_sys::Date::now() / 1000.0 + 300.0}))
}

fn authorize_url() -> String {
    format!(
        "https://app.example/oauth/authorize?client_id=agent&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256&state=s1&scope=notes%3Aread%20notes%3Awrite&resource=https%3A%2F%2Fmcp.example%2Fmcp"
    )
}

fn start_answer(verified: bool) -> (u16, Value) {
    (
        200,
        json!({
            "user": {"user_id": "u1", "email": "alice@example.com"},
            "client": {"client_id": "agent", "client_name": "Notes Agent", "verified": verified},
            "redirect_host": "127.0.0.1",
            "consent_required": true,
            "scope_results": [
                {"scope": "notes:read", "description": "Read your notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": false},
                {"scope": "notes:write", "description": "Write notes", "resource": "https://mcp.example/mcp", "is_grantable": true, "already_granted": false}
            ],
            "resources": [{"uri": "https://mcp.example/mcp", "name": "Notes"}],
            "session_token": "sess-1",
            "session_expires_at": js_sys::Date::now() / 1000.0 + 600.0
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// The page

fn fresh_element() -> web_sys::HtmlElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let el = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&el).unwrap();
    el.dyn_into().unwrap()
}

/// Wait (10 ms steps, up to 2 s) until `cond` holds; the fetch answers are real promises.
async fn until(what: &str, el: &web_sys::HtmlElement, cond: impl Fn(&str) -> bool) {
    for _ in 0..200 {
        if cond(&text(el)) {
            return;
        }
        let sleep = js_sys::Promise::new(&mut |resolve, _| {
            web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 10)
                .unwrap();
        });
        wasm_bindgen_futures::JsFuture::from(sleep).await.unwrap();
    }
    panic!("{what}: not reached; the element says {:?}", text(el));
}

fn text(el: &web_sys::HtmlElement) -> String {
    el.text_content().unwrap_or_default()
}

fn button(el: &web_sys::HtmlElement, label: &str) -> web_sys::HtmlElement {
    let list = el.query_selector_all("button").unwrap();
    (0..list.length())
        .filter_map(|i| list.item(i)?.dyn_into::<web_sys::HtmlElement>().ok())
        .find(|b| b.text_content().as_deref() == Some(label))
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", text(el)))
}

/// What the callbacks saw.
#[derive(Clone, Default)]
struct Seen {
    events: Rc<RefCell<Vec<&'static str>>>,
    errors: Rc<RefCell<Vec<String>>>,
    redirects: Rc<RefCell<Vec<String>>>,
}

// Leptos callbacks must be `Send + Sync`; in a single-threaded page the recorders are only
// touched on the main thread; `SendWrapper` turns a misuse into a panic in the test.
fn recorders(
    seen: &Seen,
) -> (
    Callback<UiEvent>,
    Callback<SdkError>,
    Callback<String, bool>,
) {
    let events = send_wrapper::SendWrapper::new(Rc::clone(&seen.events));
    let errors = send_wrapper::SendWrapper::new(Rc::clone(&seen.errors));
    let redirects = send_wrapper::SendWrapper::new(Rc::clone(&seen.redirects));
    (
        Callback::new(move |e: UiEvent| events.borrow_mut().push(e.kind())),
        Callback::new(move |e: SdkError| errors.borrow_mut().push(e.code.as_str().to_owned())),
        Callback::new(move |location: String| {
            redirects.borrow_mut().push(location);
            false
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// IdentityProvider

#[wasm_bindgen_test]
async fn identity_provider_component_runs_the_flow_over_fetch_and_submits_once() {
    script_fetch(vec![
        start_answer(true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?code=c1&state=s1&iss=x"}),
        ),
    ]);
    let seen = Seen::default();
    let (on_event, on_error, on_before_redirect) = recorders(&seen);
    let el = fresh_element();
    let (token, url) = (tat(), authorize_url());
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider
                base_url=BASE
                trusted_auth_token=token
                token_profile_id="acme"
                url=url
                allow_framing=true
                on_event=on_event
                on_error=on_error
                on_before_redirect=on_before_redirect
            />
        }
    });
    assert!(text(&el).contains("Loading..."), "{}", text(&el));
    until("consent", &el, |t| {
        t.contains("Notes Agent wants to access your account")
    })
    .await;
    assert!(text(&el).contains("Signed in as alice@example.com"));

    // Two clicks on Allow: one submit.
    let allow = button(&el, "Allow");
    allow.click();
    allow.click();
    until("redirecting", &el, |t| {
        t.contains("Redirecting to 127.0.0.1...")
    })
    .await;
    assert_eq!(
        paths(),
        vec!["/v1/oauth/authorize/start", "/v1/oauth/authorize/submit"]
    );
    let start = &asked()[0];
    assert_eq!(start["method"], "POST");
    assert_eq!(start["credentials"], "omit", "no cookies, ever");
    assert_eq!(start["body"]["client_id"], "agent");
    assert_eq!(start["body"]["profile_id"], "acme");
    assert_eq!(start["body"]["code_challenge"], CHALLENGE);
    let submit = &asked()[1];
    assert_eq!(submit["authorization"], "Bearer sess-1");
    assert_eq!(submit["body"]["consent_granted"], true);
    assert_eq!(
        seen.events.borrow().clone(),
        vec!["consent_shown", "consent_granted", "redirecting"]
    );
    assert_eq!(
        seen.redirects.borrow().clone(),
        vec!["http://127.0.0.1:9999/cb?code=c1&state=s1&iss=x".to_owned()]
    );
    assert!(seen.errors.borrow().is_empty());
}

#[wasm_bindgen_test]
async fn an_unverified_error_location_is_never_followed_and_no_token_sends_nothing() {
    // A request whose client_id is malformed: refused locally, shown, never redirected.
    script_fetch(vec![]);
    let seen = Seen::default();
    let (on_event, on_error, on_before_redirect) = recorders(&seen);
    let el = fresh_element();
    let token = tat();
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider base_url=BASE trusted_auth_token=token allow_framing=true
                url="https://app.example/oauth/authorize?response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2F"
                on_event=on_event on_error=on_error on_before_redirect=on_before_redirect/>
        }
    });
    until("error", &el, |t| t.contains("This request cannot continue")).await;
    assert_eq!(seen.errors.borrow().clone(), vec!["invalid_request"]);
    assert!(seen.redirects.borrow().is_empty());
    assert!(paths().is_empty(), "nothing is sent for a bad request");

    // No Trusted Auth Token: session_missing, nothing sent.
    let seen = Seen::default();
    let (on_event, on_error, on_before_redirect) = recorders(&seen);
    let el = fresh_element();
    let url = authorize_url();
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider base_url=BASE url=url allow_framing=true
                on_event=on_event on_error=on_error on_before_redirect=on_before_redirect/>
        }
    });
    until("error", &el, |t| t.contains("session_missing")).await;
    assert_eq!(seen.errors.borrow().clone(), vec!["session_missing"]);
    assert!(paths().is_empty());
}

#[wasm_bindgen_test]
async fn strings_and_theme_props_are_reactive_and_an_unsafe_logo_is_dropped() {
    script_fetch(vec![start_answer(false)]);
    let el = fresh_element();
    let (token, url) = (tat(), authorize_url());
    let strings = RwSignal::new(Strings::new(vec![(
        "consent.allow".into(),
        "Let it in".into(),
    )]));
    let theme = RwSignal::new(Theme {
        logo_url: Some("javascript:alert(1)".into()),
        ..Theme::default()
    });
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider base_url=BASE trusted_auth_token=token url=url allow_framing=true
                strings=strings theme=theme/>
        }
    });
    until("consent", &el, |t| t.contains("Let it in")).await;
    assert!(text(&el).contains("Unverified app"), "{}", text(&el));
    assert!(el.query_selector("img.cnsy-brand").unwrap().is_none());

    strings.set(Strings::new(vec![(
        "consent.allow".into(),
        "Allow it".into(),
    )]));
    theme.set(
        Theme {
            color_scheme: ColorScheme::Dark,
            logo_url: Some("https://cdn.example/logo.png".into()),
            ..Theme::default()
        }
        .with("colorPrimary", "#4f46e5", false),
    );
    until("new words", &el, |t| t.contains("Allow it")).await;
    let root = el.query_selector(".cnsy-root").unwrap().unwrap();
    assert_eq!(
        root.get_attribute("class").as_deref(),
        Some("cnsy-root cnsy-dark")
    );
    // Set through CSSOM before the next paint (a strict CSP refuses style attributes), so read
    // back in CSSOM's serialization.
    for _ in 0..200 {
        if root.get_attribute("style").is_some() {
            break;
        }
        let sleep = js_sys::Promise::new(&mut |resolve, _| {
            web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 10)
                .unwrap();
        });
        wasm_bindgen_futures::JsFuture::from(sleep).await.unwrap();
    }
    assert_eq!(
        root.get_attribute("style").as_deref(),
        Some("--consentry-color-primary: #4f46e5;")
    );
    assert!(el.query_selector("img.cnsy-brand").unwrap().is_some());
    assert_eq!(
        paths(),
        vec!["/v1/oauth/authorize/start"],
        "a new look does not restart the flow"
    );
}

#[wasm_bindgen_test]
async fn the_nonce_prop_goes_on_the_injected_stylesheet() {
    // Added once per document: take away the one an earlier test added.
    let document = web_sys::window().unwrap().document().unwrap();
    if let Some(old) = document.get_element_by_id("consentry-ui-style") {
        old.remove();
    }
    script_fetch(vec![start_answer(true)]);
    let el = fresh_element();
    let (token, url) = (tat(), authorize_url());
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider base_url=BASE trusted_auth_token=token url=url allow_framing=true
                nonce="cmFuZG9tLW5vbmNl"/>
        }
    });
    until("a screen", &el, |t| !t.is_empty()).await;
    let style = document.get_element_by_id("consentry-ui-style").unwrap();
    // The IDL attribute: a browser hides the content attribute's value under a CSP.
    let nonce = js_sys::Reflect::get(&style, &"nonce".into()).unwrap();
    assert_eq!(nonce.as_string().as_deref(), Some("cmFuZG9tLW5vbmNl"));
}

#[wasm_bindgen_test]
async fn unmounting_mid_flight_neither_renders_nor_redirects() {
    script_fetch(vec![
        start_answer(true),
        (
            200,
            json!({"redirect_uri": "http://127.0.0.1:9999/cb?code=c1&state=s1"}),
        ),
    ]);
    let seen = Seen::default();
    let (on_event, on_error, on_before_redirect) = recorders(&seen);
    let el = fresh_element();
    let (token, url) = (tat(), authorize_url());
    let handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <IdentityProvider base_url=BASE trusted_auth_token=token url=url allow_framing=true
                on_event=on_event on_error=on_error on_before_redirect=on_before_redirect/>
        }
    });
    until("consent", &el, |t| t.contains("Notes Agent")).await;
    button(&el, "Allow").click();
    drop(handle);
    // Let the submit's answer arrive.
    for _ in 0..5 {
        let sleep = js_sys::Promise::new(&mut |resolve, _| {
            web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 10)
                .unwrap();
        });
        wasm_bindgen_futures::JsFuture::from(sleep).await.unwrap();
    }
    assert_eq!(text(&el), "", "the view is gone");
    assert!(seen.redirects.borrow().is_empty());
    assert_eq!(seen.events.borrow().clone(), vec!["consent_shown"]);
}

// ---------------------------------------------------------------------------------------------
// ConnectedApps

#[wasm_bindgen_test]
async fn connected_apps_component_signs_in_lists_and_revokes() {
    let app = json!({"client_id": "agent", "client_name": "Notes Agent", "scopes": ["notes:read"],
                     "resources": ["https://mcp.example/mcp"], "granted_at": 1_800_000_000, "last_used_at": null});
    script_fetch(vec![
        (
            200,
            json!({"session_token": "s", "expires_at": js_sys::Date::now() / 1000.0 + 600.0, "user": {"user_id": "u1"}}),
        ),
        (200, json!([app])),
        (200, json!({})),
        (200, json!([])),
    ]);
    let seen = Seen::default();
    let (on_event, on_error, _) = recorders(&seen);
    let el = fresh_element();
    let token = tat();
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! {
            <ConnectedApps base_url=BASE trusted_auth_token=token on_event=on_event on_error=on_error/>
        }
    });
    until("list", &el, |t| t.contains("Notes Agent")).await;
    button(&el, "Revoke access").click();
    until("confirm", &el, |t| t.contains("It loses access")).await;
    button(&el, "Revoke").click();
    until("revoked", &el, |t| {
        t.contains("Access for Notes Agent was revoked.")
    })
    .await;
    assert_eq!(
        paths(),
        vec![
            "/v1/sessions/attest",
            "/v1/connected_apps",
            "/v1/connected_apps/agent/revoke",
            "/v1/connected_apps"
        ]
    );
    assert_eq!(asked()[1]["authorization"], "Bearer s");
    assert_eq!(seen.events.borrow().clone(), vec!["app_revoked"]);

    // Without a token: session_missing, nothing sent.
    script_fetch(vec![]);
    let seen = Seen::default();
    let (on_event, on_error, _) = recorders(&seen);
    let el = fresh_element();
    let _handle = leptos::mount::mount_to(el.clone(), move || {
        view! { <ConnectedApps base_url=BASE on_event=on_event on_error=on_error/> }
    });
    until("error", &el, |t| t.contains("session_missing")).await;
    assert_eq!(seen.errors.borrow().clone(), vec!["session_missing"]);
    assert!(paths().is_empty());
}
