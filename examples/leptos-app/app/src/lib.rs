//! Acme Notes, a Leptos 0.8 client-side-rendered product with its own login, that lets AI agents
//! in through Consentry:
//!
//! - `/oauth/authorize` (Consentry's `authorization_url`): signed out → `/login?next=<this
//!   request>`; signed in → a fresh Trusted Auth Token from the backend, and
//!   `<IdentityProvider/>`, which reads the OAuth request from the URL.
//! - `/settings/connected-apps`: `<ConnectedApps/>`, the agents this user let in, with revoke.
//! - `/login`: the product's own form (posted to the backend, which sets its session cookie).
//!
//! Routing is by `location.pathname`: every page is a full page load, which is all a consent
//! page needs (the agent opens it, the component leaves it for the client's redirect URI).

use consentry_ui::{ConnectedApps, IdentityProvider};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// The wasm module's entry point: mount the app into `<body>`.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}

fn location() -> Option<web_sys::Location> {
    web_sys::window().map(|w| w.location())
}

fn query(name: &str) -> Option<String> {
    let search = location()?.search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

#[component]
fn App() -> impl IntoView {
    let path = location()
        .and_then(|l| l.pathname().ok())
        .unwrap_or_default();
    match path.as_str() {
        "/login" => view! { <Login/> }.into_any(),
        "/oauth/authorize" => view! { <Authorize/> }.into_any(),
        "/settings/connected-apps" => view! { <Settings/> }.into_any(),
        _ => view! { <Home/> }.into_any(),
    }
}

/// The shell every page shares.
#[component]
fn Page(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <header class="bar">
            <a href="/">"Acme Notes"</a>
            <nav>
                <a href="/settings/connected-apps">"Connected apps"</a>
                <form method="post" action="/logout"><button type="submit">"Sign out"</button></form>
            </nav>
        </header>
        <main>
            <h2 class="page-title">{title}</h2>
            {children()}
        </main>
    }
}

#[component]
fn Home() -> impl IntoView {
    view! {
        <Page title="Home">
            <p>"Your notes live here. AI agents you connect act for you through Consentry."</p>
            <p><a href="/settings/connected-apps">"Manage connected apps"</a></p>
        </Page>
    }
}

#[component]
fn Login() -> impl IntoView {
    let next = query("next").unwrap_or_else(|| String::from("/"));
    let failed = query("error").is_some();
    view! {
        <main class="login">
            <h1>"Sign in to Acme Notes"</h1>
            <Show when=move || failed>
                <p role="alert" class="error">"Wrong username or password."</p>
            </Show>
            <form method="post" action="/login">
                <input type="hidden" name="next" value=next.clone()/>
                <label>"Username" <input name="username" autocomplete="username" required/></label>
                <label>"Password" <input name="password" type="password" autocomplete="current-password" required/></label>
                <button type="submit">"Sign in"</button>
            </form>
            <p class="hint">"Demo accounts: alice / wonderland, bob / builder."</p>
        </main>
    }
}

/// What the backend hands out for the signed-in user.
#[derive(Clone, Debug)]
struct Tat {
    token: String,
    profile_id: String,
    consentry_url: String,
}

/// How asking the backend for a TAT went.
#[derive(Clone, Debug)]
enum TatState {
    Loading,
    Ready(Tat),
    SignedOut,
    Failed(String),
}

/// A fresh TAT for the signed-in user (`POST /api/tat`, same origin, with the session cookie).
async fn fetch_tat() -> TatState {
    match fetch_tat_inner().await {
        Ok(state) => state,
        Err(e) => TatState::Failed(
            e.as_string()
                .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| e.message().into()))
                .unwrap_or_else(|| String::from("the backend did not answer")),
        ),
    }
}

async fn fetch_tat_inner() -> Result<TatState, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_credentials(web_sys::RequestCredentials::SameOrigin);
    let response: web_sys::Response =
        wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init("/api/tat", &init))
            .await?
            .dyn_into()?;
    if response.status() == 401 {
        return Ok(TatState::SignedOut);
    }
    if !response.ok() {
        return Err(JsValue::from_str("the backend could not mint a token"));
    }
    let body = wasm_bindgen_futures::JsFuture::from(response.json()?).await?;
    let field = |name: &str| {
        js_sys::Reflect::get(&body, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| JsValue::from_str("the backend's answer lacks a field"))
    };
    Ok(TatState::Ready(Tat {
        token: field("trusted_auth_token")?,
        profile_id: field("token_profile_id")?,
        consentry_url: field("consentry_url")?,
    }))
}

/// Ask for a TAT once; a signed-out user goes to the login, which brings them back to this very
/// URL (query included: it is the OAuth request).
fn use_tat() -> ReadSignal<TatState> {
    let (state, set_state) = signal(TatState::Loading);
    leptos::task::spawn_local(async move {
        let tat = fetch_tat().await;
        if matches!(tat, TatState::SignedOut)
            && let Some(l) = location()
        {
            let here = l.pathname().unwrap_or_default() + &l.search().unwrap_or_default();
            let next = String::from(js_sys::encode_uri_component(&here));
            let _ = l.replace(&format!("/login?next={next}"));
        }
        set_state.set(tat);
    });
    state
}

fn waiting_or_failed(state: &TatState) -> AnyView {
    match state {
        TatState::Failed(e) => view! { <p role="alert" class="error">{e.clone()}</p> }.into_any(),
        _ => view! { <p>"Loading..."</p> }.into_any(),
    }
}

/// The authorization endpoint agents open.
#[component]
fn Authorize() -> impl IntoView {
    let tat = use_tat();
    view! {
        <main class="consent">
            {move || match tat.get() {
                TatState::Ready(t) => view! {
                    <IdentityProvider
                        base_url=t.consentry_url
                        trusted_auth_token=t.token
                        token_profile_id=t.profile_id
                        on_error=|e: consentry_ui::SdkError| {
                            leptos::logging::warn!("consent: {} ({})", e.code.as_str(), e.description)
                        }
                    />
                }
                .into_any(),
                other => waiting_or_failed(&other),
            }}
        </main>
    }
}

/// Settings: the agents this user let in.
#[component]
fn Settings() -> impl IntoView {
    let tat = use_tat();
    view! {
        <Page title="Settings">
            {move || match tat.get() {
                TatState::Ready(t) => view! {
                    <ConnectedApps
                        base_url=t.consentry_url
                        trusted_auth_token=t.token
                        token_profile_id=t.profile_id
                    />
                }
                .into_any(),
                other => waiting_or_failed(&other),
            }}
        </Page>
    }
}
