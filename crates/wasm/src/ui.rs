//! `mountIdentityProvider` / `mountConnectedApps`: the prebuilt UI (consentry-ui, Leptos) mounted
//! into the page's element. The npm layer (`packages/consentry/src/index.js`) normalises the options
//! first (camelCase members, callbacks wrapped so that they never throw into Rust, the consent
//! manifest's shorthand expanded to sections); this side reads them as they are.

use std::cell::RefCell;
use std::rc::Rc;

use consentry_core::{
    Client, ConsentItem, ConsentScreen, ConsentSection, TatLogin, safe_image_url,
};
use consentry_ui::{
    ColorScheme, ConnectedAppsOptions, Hooks, IdentityProviderOptions, Look, Strings, Theme,
    UiEvent, connected_apps, identity_provider, organization_connected_apps, organization_policy,
};
use js_sys::{Array, Function, Object, Reflect};
use reactive_graph::signal::ArcRwSignal;
use reactive_graph::traits::Update;
use tachys::view::any_view::AnyView;
use wasm_bindgen::prelude::*;

use crate::platform::BrowserPlatform;
use crate::{error_to_js, set};

/// A mounted component. `unmount()` is idempotent; `update()` changes words, theme and
/// callbacks without restarting the flow.
#[wasm_bindgen]
pub struct UiHandle {
    /// Dropping it removes the view.
    mounted: Option<consentry_ui::Mounted>,
    look: ArcRwSignal<Look>,
    hooks: Rc<RefCell<Hooks>>,
    /// The page's consent manifest callback as last given (the npm layer keeps one wrapper per
    /// page function, so an unchanged callback is the same value).
    manifest: JsValue,
    stop: Option<Box<dyn Fn()>>,
    refresh: Option<Box<dyn Fn()>>,
}

#[wasm_bindgen]
impl UiHandle {
    /// Called on every render by a React wrapper: an equal look does not re-render, and the
    /// consent manifest is asked again only when its callback changed. No page callback runs in
    /// here (the manifest refresh is spawned), so one may call `update` or `unmount` itself.
    pub fn update(&mut self, options: JsValue) {
        if self.mounted.is_none() {
            return;
        }
        let look = look_from_js(&options);
        self.look.maybe_update(|old| {
            let changed = *old != look;
            if changed {
                *old = look;
            }
            changed
        });
        *self.hooks.borrow_mut() = hooks_from_js(&options);
        let manifest = get(&options, "getConsentManifest");
        if !Object::is(&manifest, &self.manifest) {
            self.manifest = manifest;
            if let Some(refresh) = &self.refresh {
                refresh();
            }
        }
    }

    pub fn unmount(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        self.mounted = None;
    }
}

/// What both mounts start from: the client, the look and the callbacks.
type Setup = (
    Rc<Client<BrowserPlatform>>,
    ArcRwSignal<Look>,
    Rc<RefCell<Hooks>>,
);

fn setup(options: &JsValue) -> Setup {
    (
        Rc::new(Client::new(BrowserPlatform, &string(options, "baseUrl"))),
        ArcRwSignal::new(look_from_js(options)),
        Rc::new(RefCell::new(hooks_from_js(options))),
    )
}

/// One `mount_to` instantiation for both components.
fn mount(
    element: web_sys::HtmlElement,
    options: &JsValue,
    (look, hooks): (ArcRwSignal<Look>, Rc<RefCell<Hooks>>),
    view: Box<dyn FnOnce() -> AnyView>,
    stop: Box<dyn Fn()>,
    refresh: Option<Box<dyn Fn()>>,
) -> UiHandle {
    let manifest = get(options, "getConsentManifest");
    UiHandle {
        mounted: Some(consentry_ui::mount_to(&element, view)),
        look,
        hooks,
        manifest,
        stop: Some(stop),
        refresh,
    }
}

#[wasm_bindgen(js_name = mountIdentityProvider)]
pub fn mount_identity_provider(element: web_sys::HtmlElement, options: JsValue) -> UiHandle {
    let (client, look, hooks) = setup(&options);
    let idp = Rc::new(identity_provider(
        client,
        IdentityProviderOptions {
            login: login_from_js(&options),
            allow_framing: flag(&options, "allowFraming"),
            url: get(&options, "url").as_string(),
        },
        Rc::clone(&hooks),
    ));
    let (view_idp, view_look) = (Rc::clone(&idp), look.clone());
    let (stop_idp, refresh_idp) = (Rc::clone(&idp), idp);
    mount(
        element,
        &options,
        (look, hooks),
        Box::new(move || view_idp.view(view_look)),
        Box::new(move || stop_idp.stop()),
        // Spawned: the page's callback runs outside `update` (it may unmount).
        Some(Box::new(move || {
            let idp = Rc::clone(&refresh_idp);
            consentry_ui::spawn_local(async move { idp.refresh_manifest() });
        })),
    )
}

#[wasm_bindgen(js_name = mountConnectedApps)]
pub fn mount_connected_apps(element: web_sys::HtmlElement, options: JsValue) -> UiHandle {
    let (client, look, hooks) = setup(&options);
    let apps = Rc::new(connected_apps(
        client,
        ConnectedAppsOptions {
            login: login_from_js(&options),
        },
        Rc::clone(&hooks),
        look.clone(),
    ));
    let view_apps = Rc::clone(&apps);
    mount(
        element,
        &options,
        (look, hooks),
        Box::new(move || view_apps.view()),
        Box::new(move || apps.stop()),
        None,
    )
}

#[wasm_bindgen(js_name = mountOrganizationConnectedApps)]
pub fn mount_organization_connected_apps(
    element: web_sys::HtmlElement,
    options: JsValue,
) -> UiHandle {
    let (client, look, hooks) = setup(&options);
    let apps = Rc::new(organization_connected_apps(
        client,
        ConnectedAppsOptions {
            login: login_from_js(&options),
        },
        Rc::clone(&hooks),
        look.clone(),
    ));
    let view_apps = Rc::clone(&apps);
    mount(
        element,
        &options,
        (look, hooks),
        Box::new(move || view_apps.view()),
        Box::new(move || apps.stop()),
        None,
    )
}

#[wasm_bindgen(js_name = mountOrganizationPolicy)]
pub fn mount_organization_policy(element: web_sys::HtmlElement, options: JsValue) -> UiHandle {
    let (client, look, hooks) = setup(&options);
    let policy = Rc::new(organization_policy(
        client,
        ConnectedAppsOptions {
            login: login_from_js(&options),
        },
        Rc::clone(&hooks),
        look.clone(),
    ));
    let view_policy = Rc::clone(&policy);
    mount(
        element,
        &options,
        (look, hooks),
        Box::new(move || view_policy.view()),
        Box::new(move || policy.stop()),
        None,
    )
}

fn get(v: &JsValue, key: &str) -> JsValue {
    if !v.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(v, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn string(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

fn flag(v: &JsValue, key: &str) -> bool {
    get(v, key).as_bool().unwrap_or(false)
}

fn function(v: &JsValue, key: &str) -> Option<Function> {
    get(v, key).dyn_into::<Function>().ok()
}

/// The elements of `v` when it is an array (`Array.from` would throw on `undefined`).
fn elements(v: &JsValue) -> Vec<JsValue> {
    if Array::is_array(v) {
        Array::from(v).iter().collect()
    } else {
        Vec::new()
    }
}

/// `[key, string value]` pairs of a plain object (other values are skipped).
fn string_entries(v: &JsValue) -> Vec<(String, String)> {
    if !v.is_object() {
        return Vec::new();
    }
    Object::entries(&Object::from(v.clone()))
        .iter()
        .filter_map(|pair| {
            let pair = elements(&pair);
            Some((pair.first()?.as_string()?, pair.get(1)?.as_string()?))
        })
        .collect()
}

fn login_from_js(options: &JsValue) -> Option<TatLogin> {
    let token = get(options, "trustedAuthToken").as_string()?;
    Some(TatLogin {
        trusted_auth_token: token,
        profile_id: string(options, "tokenProfileId"),
        session_duration_minutes: get(options, "sessionDurationMinutes")
            .as_f64()
            .filter(|m| m.is_finite() && *m >= 1.0 && *m <= f64::from(u32::MAX))
            .map(|m| m as u32),
    })
}

fn look_from_js(options: &JsValue) -> Look {
    let theme = get(options, "theme");
    let mut vars = Vec::new();
    let mut add = |source: &JsValue, prefix: &str| {
        for (key, var) in consentry_ui::style::THEME_VARS {
            if let Some(value) = get(source, key).as_string() {
                let mut name = String::from(prefix);
                name.push_str(&var["--consentry-".len()..]);
                vars.push((name, value));
            }
        }
    };
    add(&theme, "--consentry-");
    add(&get(&theme, "dark"), "--consentry-dark-");
    Look {
        strings: Strings::new(string_entries(&get(options, "strings"))),
        theme: Theme {
            vars,
            color_scheme: match get(&theme, "colorScheme").as_string().as_deref() {
                Some("light") => ColorScheme::Light,
                Some("dark") => ColorScheme::Dark,
                _ => ColorScheme::Auto,
            },
            logo_url: get(&theme, "logoUrl")
                .as_string()
                .filter(|u| safe_image_url(u)),
        },
        nonce: get(options, "nonce").as_string().filter(|n| !n.is_empty()),
    }
}

/// The callbacks, as the npm layer wrapped them (they catch their own exceptions).
fn hooks_from_js(options: &JsValue) -> Hooks {
    let mut hooks = Hooks::default();
    if let Some(f) = function(options, "onEvent") {
        hooks.on_event = Some(Rc::new(move |e: &UiEvent| {
            let out = Object::new();
            set(&out, "type", &JsValue::from_str(e.kind()));
            match e {
                UiEvent::ConsentShown { client_id }
                | UiEvent::ConsentGranted { client_id }
                | UiEvent::ConsentDenied { client_id }
                | UiEvent::AppRevoked { client_id } => {
                    set(&out, "clientId", &JsValue::from_str(client_id));
                }
                UiEvent::Redirecting { location } => {
                    set(&out, "location", &JsValue::from_str(location));
                }
                UiEvent::OrgAppRevoked {
                    client_id,
                    revoked_grants,
                } => {
                    set(&out, "clientId", &JsValue::from_str(client_id));
                    set(&out, "revokedGrants", &JsValue::from(*revoked_grants));
                }
                UiEvent::PolicySaved {
                    version,
                    revoked_grants,
                } => {
                    set(&out, "version", &JsValue::from_f64(*version as f64));
                    set(&out, "revokedGrants", &JsValue::from(*revoked_grants));
                }
            }
            let _ = f.call1(&JsValue::NULL, &out);
        }));
    }
    if let Some(f) = function(options, "onError") {
        hooks.on_error = Some(Rc::new(move |e| {
            let _ = f.call1(&JsValue::NULL, &error_to_js(e));
        }));
    }
    if let Some(f) = function(options, "onBeforeRedirect") {
        hooks.on_before_redirect = Some(Rc::new(move |location: &str| {
            // Only an explicit `false` takes navigation over; a throwing callback does not.
            f.call1(&JsValue::NULL, &JsValue::from_str(location))
                .map_or(true, |r| r.as_bool() != Some(false))
        }));
    }
    if let Some(f) = function(options, "getConsentManifest") {
        hooks.consent_manifest = Some(Rc::new(move |screen: &ConsentScreen| {
            let sections = f.call1(&JsValue::NULL, &screen_to_js(screen)).ok()?;
            sections_from_js(&sections)
        }));
    }
    hooks
}

/// What the consent manifest callback is given: `{ client, user, redirectHost, scopes }`.
fn screen_to_js(screen: &ConsentScreen) -> JsValue {
    let client = Object::new();
    set(
        &client,
        "clientId",
        &JsValue::from_str(&screen.client.client_id),
    );
    set(&client, "name", &JsValue::from_str(&screen.client.name));
    set(
        &client,
        "verified",
        &JsValue::from_bool(screen.client.verified),
    );
    let user = Object::new();
    set(&user, "userId", &JsValue::from_str(&screen.user.user_id));
    set(
        &user,
        "email",
        &screen
            .user
            .email
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str),
    );
    set(
        &user,
        "name",
        &screen
            .user
            .name
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str),
    );
    let scopes: Array = screen
        .resources
        .iter()
        .flat_map(|r| r.scopes.iter().map(move |s| (r, s)))
        .map(|(r, s)| {
            let o = Object::new();
            set(&o, "scope", &JsValue::from_str(&s.scope));
            set(&o, "description", &JsValue::from_str(&s.description));
            set(&o, "resource", &JsValue::from_str(&s.resource));
            set(&o, "resourceName", &JsValue::from_str(&r.name));
            set(&o, "alreadyGranted", &JsValue::from_bool(s.already_granted));
            JsValue::from(o)
        })
        .collect();
    let out = Object::new();
    set(&out, "client", &client);
    set(&out, "user", &user);
    set(
        &out,
        "redirectHost",
        &JsValue::from_str(&screen.redirect_host),
    );
    set(&out, "scopes", &scopes);
    out.into()
}

/// `[{ header, items: [{ text, details, alreadyGranted }] }]` (normalised by the npm layer);
/// anything else keeps the default wording.
fn sections_from_js(v: &JsValue) -> Option<Vec<ConsentSection>> {
    if !Array::is_array(v) {
        return None;
    }
    Some(
        elements(v)
            .into_iter()
            .map(|section| ConsentSection {
                header: get(&section, "header").as_string(),
                items: elements(&get(&section, "items"))
                    .into_iter()
                    .filter_map(|item| {
                        Some(ConsentItem {
                            text: get(&item, "text").as_string()?,
                            details: elements(&get(&item, "details"))
                                .into_iter()
                                .filter_map(|d| d.as_string())
                                .collect(),
                            already_granted: flag(&item, "alreadyGranted"),
                        })
                    })
                    .collect(),
            })
            .collect(),
    )
}
