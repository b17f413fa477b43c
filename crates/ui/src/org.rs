//! The organization admin's screens: `OrganizationConnectedApps` (the apps members connected,
//! and who, each revocable for everyone behind a confirmation) and `OrganizationPolicy` (which
//! apps and scopes agents may get, saved with `If-Match`). Both over the same frame, elements and
//! session handling as `ConnectedApps`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use consentry_core::{
    AppMode, Client, ErrorCode, JsonObject, OrgAppView, Policy, PolicyView, SdkError, SdkErrorCode,
};
use reactive_graph::owner::{LocalStorage, StoredValue};
use reactive_graph::prelude::*;
use reactive_graph::signal::ArcRwSignal;
use tachys::prelude::*;
use wasm_bindgen::JsValue;

use crate::apps::format_pair;
use crate::dom::{El, el};
use crate::idp::{badge, decimal, error_view, frame, h1, logo};
use crate::mount::spawn_local;
use crate::{ConnectedAppsOptions, Hooks, Look, Platform, Shown, Strings, UiEvent, browser};

/// What both screens share: the client, the page's callbacks, the look, and whether it is alive.
/// One controller and one state type for both (each distinct signal and controller type costs
/// its own copy of the reactive code in the bundle).
struct Ctl<P: Platform> {
    client: Rc<Client<P>>,
    hooks: Rc<RefCell<Hooks>>,
    options: ConnectedAppsOptions,
    state: ArcRwSignal<State>,
    look: ArcRwSignal<Look>,
    alive: Cell<bool>,
    /// A prefix for this mount's element ids (labels point at their fields).
    uid: String,
    /// The policy editor (else the connected apps).
    policy: bool,
}

type Stored<P> = StoredValue<Rc<Ctl<P>>, LocalStorage>;

#[derive(Clone, Debug, PartialEq)]
struct AppsList {
    org: String,
    apps: Vec<OrgAppView>,
    confirming: Option<String>,
    busy: bool,
    notice: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Loading,
    Apps(Box<AppsList>),
    Policy(Box<Edit>),
    Failed(Shown),
}

fn build<P: Platform>(
    client: Rc<Client<P>>,
    options: ConnectedAppsOptions,
    hooks: Rc<RefCell<Hooks>>,
    look: ArcRwSignal<Look>,
    policy: bool,
) -> Rc<Ctl<P>> {
    static MOUNTS: AtomicU32 = AtomicU32::new(0);
    let mut uid = String::from("cnsy-o");
    uid.push_str(&decimal(MOUNTS.fetch_add(1, Ordering::Relaxed)));
    Rc::new(Ctl {
        client,
        hooks,
        options,
        state: ArcRwSignal::new(State::Loading),
        look,
        alive: Cell::new(true),
        uid,
        policy,
    })
}

impl<P: Platform> Ctl<P> {
    /// Sign in with the Trusted Auth Token unless the client has a session. `false`: failed or
    /// stopped (the failure is shown).
    async fn signed_in(&self) -> bool {
        if !self.alive.get() {
            return false;
        }
        if self.client.session().is_some() {
            return true;
        }
        let Some(login) = self.options.login.clone() else {
            self.fail(&SdkError::local(
                SdkErrorCode::SessionMissing,
                "trustedAuthTokenParams (trustedAuthToken and tokenProfileId) are required to sign the user in",
            ));
            return false;
        };
        if let Err(e) = self.client.attest(&login).await {
            self.fail(&e);
            return false;
        }
        self.alive.get()
    }

    #[inline(never)]
    fn fail(&self, e: &SdkError) {
        if self.report(e) {
            self.state.set(State::Failed(Shown::from(e)));
        }
    }

    /// Tell the page; `false` when the component is gone (before or because of the callback).
    fn report(&self, e: &SdkError) -> bool {
        if !self.alive.get() {
            return false;
        }
        let hooks = self.hooks.borrow().clone();
        hooks.error(e);
        self.alive.get()
    }

    fn event(&self, e: &UiEvent) -> bool {
        let hooks = self.hooks.borrow().clone();
        hooks.event(e);
        self.alive.get()
    }

    /// Change the state in place: one instantiation of the signal's update for every change.
    #[inline(never)]
    fn change(&self, f: &mut dyn FnMut(&mut State)) {
        self.state.update(|s| f(s));
    }

    /// A word of the current look.
    #[inline(never)]
    fn fill(&self, key: &str, values: &[(&str, &str)]) -> String {
        self.look.with(|l| l.strings.fill(key, values))
    }

    /// An element id of this mount.
    fn id(&self, suffix: &str) -> String {
        let mut id = self.uid.clone();
        id.push('-');
        id.push_str(suffix);
        id
    }
}

/// The view of either screen; loads on the next tick.
fn view<P: Platform + 'static>(ctl: &Rc<Ctl<P>>) -> AnyView {
    spawn_local(load(Rc::clone(ctl), None));
    let stored = StoredValue::new_local(Rc::clone(ctl));
    let state = ctl.state.clone();
    let loading = if ctl.policy {
        "policy.loading"
    } else {
        "org_apps.loading"
    };
    frame(
        ctl.look.clone(),
        Arc::new(move |strings| {
            state.with(|state| match state {
                State::Loading => (0, true, h1(strings.get(loading)).view()),
                State::Failed(shown) => (3, false, error_view(strings, shown)),
                State::Apps(list) => (
                    // Asking to confirm, and leaving that, are screens of their own.
                    if list.confirming.is_some() { 2 } else { 1 },
                    list.busy,
                    apps_view(strings, list, stored),
                ),
                State::Policy(edit) => (1, edit.busy, policy_view(strings, edit, stored)),
            })
        }),
    )
}

async fn load<P: Platform + 'static>(ctl: Rc<Ctl<P>>, notice: Option<String>) {
    if ctl.policy {
        load_policy(ctl).await;
    } else {
        load_apps(ctl, notice).await;
    }
}

/// The organization's display name from `GET /v1/organization`.
fn org_name<J: JsonObject>(json: &J) -> String {
    json.str_member("organization_name")
        .filter(|n| !n.trim().is_empty())
        .or_else(|| json.str_member("organization_id"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// OrganizationConnectedApps

/// The organization's connected apps' controller; the view comes from
/// [`OrganizationConnectedApps::view`].
pub struct OrganizationConnectedApps<P: Platform + 'static> {
    ctl: Rc<Ctl<P>>,
}

/// Build the organization's connected apps list (for admins; others see `forbidden`).
pub fn organization_connected_apps<P: Platform + 'static>(
    client: Rc<Client<P>>,
    options: ConnectedAppsOptions,
    hooks: Rc<RefCell<Hooks>>,
    look: ArcRwSignal<Look>,
) -> OrganizationConnectedApps<P> {
    OrganizationConnectedApps {
        ctl: build(client, options, hooks, look, false),
    }
}

impl<P: Platform + 'static> OrganizationConnectedApps<P> {
    /// The view; loads the list on the next tick.
    pub fn view(&self) -> AnyView {
        view(&self.ctl)
    }

    /// Stop: nothing in flight may update the list any more.
    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

#[inline(never)]
pub(crate) fn button(class: &'static str, label: String, busy: bool) -> El {
    el("BUTTON", class)
        .attr("type", "button")
        .flag("disabled", busy)
        .text(label)
}

/// "Allowed on …" · "Last used on …" (or "Not used yet").
pub(crate) fn dates(
    strings: &Strings,
    granted_at: Option<f64>,
    last_used_at: Option<f64>,
) -> String {
    let used = match last_used_at {
        Some(t) => strings.fill("apps.last_used", &[("date", &browser::local_date(t))]),
        None => strings.get("apps.never_used"),
    };
    match granted_at {
        Some(t) => format_pair(
            &strings.fill("apps.granted", &[("date", &browser::local_date(t))]),
            &used,
        ),
        None => used,
    }
}

fn apps_view<P: Platform + 'static>(strings: &Strings, list: &AppsList, ctl: Stored<P>) -> AnyView {
    let AppsList {
        org,
        apps,
        confirming,
        busy,
        notice,
    } = list;
    let (org, confirming, busy) = (org.as_str(), confirming.as_deref(), *busy);
    let set_confirming = move |id: Option<String>| {
        let mut id = Some(id);
        ctl.get_value().change(&mut |s| {
            if let (State::Apps(list), Some(id)) = (s, id.take()) {
                list.confirming = id;
                list.notice = None;
            }
        });
    };
    let items = apps.iter().map(|app| {
        let id = app.client_id.clone();
        let name = app.name.as_str();
        let action = if confirming == Some(id.as_str()) {
            el("DIV", "cnsy-confirm")
                .attr("role", "group")
                .child(
                    el("P", "")
                        .text(strings.fill("org_apps.confirm", &[("app", name), ("org", org)]))
                        .view(),
                )
                .child(
                    el("DIV", "cnsy-actions")
                        .child(
                            button("cnsy-btn", strings.get("apps.cancel"), busy)
                                .on_click(move |_| set_confirming(None))
                                .view(),
                        )
                        .child(
                            button(
                                "cnsy-btn cnsy-dgb",
                                strings.get("org_apps.confirm_yes"),
                                busy,
                            )
                            .on_click(move |_| spawn_local(revoke(ctl.get_value(), id.clone())))
                            .view(),
                        )
                        .view(),
                )
                .view()
        } else {
            button("cnsy-btn cnsy-dgb", strings.get("org_apps.revoke"), busy)
                .attr(
                    "aria-label",
                    strings.fill("org_apps.revoke_label", &[("app", name)]),
                )
                .on_click(move |_| set_confirming(Some(id.clone())))
                .view()
        };
        let kind = strings.get(if app.first_party {
            "org_apps.first_party"
        } else {
            "org_apps.third_party"
        });
        let members = app.members.iter().map(|m| {
            el("LI", "")
                .text(m.label.clone())
                .child(
                    el("SPAN", "cnsy-det cnsy-mu")
                        .text(m.scopes.join(", "))
                        .view(),
                )
                .child(
                    el("SPAN", "cnsy-det cnsy-mu")
                        .text(dates(strings, m.granted_at, m.last_used_at))
                        .view(),
                )
                .view()
        });
        el("LI", "cnsy-item")
            .child_opt(logo(app.logo_uri.as_ref()))
            .child(
                el("DIV", "cnsy-grow")
                    .child(
                        el("H2", "cnsy-sh")
                            .text(name)
                            .text(" ")
                            .child(badge(kind))
                            .view(),
                    )
                    .child(
                        el("P", "cnsy-mu")
                            .text(match &app.host {
                                Some(host) => format_pair(&app.client_id, host),
                                None => app.client_id.clone(),
                            })
                            .view(),
                    )
                    .child(
                        el("P", "cnsy-mu")
                            .text(strings.get("org_apps.members"))
                            .view(),
                    )
                    .child(el("UL", "cnsy-list cnsy-sub").children(members).view())
                    .child(action)
                    .view(),
            )
            .view()
    });
    let body = if apps.is_empty() {
        el("P", "cnsy-mu")
            .text(strings.get("org_apps.empty"))
            .view()
    } else {
        el("UL", "cnsy-list").children(items).view()
    };
    el("DIV", "cnsy-wide")
        .child(h1(strings.fill("org_apps.title", &[("org", org)])).view())
        .child(
            el("P", "cnsy-mu")
                .attr("role", "status")
                .text(notice.clone().unwrap_or_default())
                .view(),
        )
        .child(body)
        .view()
}

async fn load_apps<P: Platform + 'static>(ctl: Rc<Ctl<P>>, notice: Option<String>) {
    if !ctl.signed_in().await {
        return;
    }
    let org = match ctl.client.organization().await {
        Ok(json) => org_name(&json),
        Err(e) => return ctl.fail(&e),
    };
    if !ctl.alive.get() {
        return;
    }
    match ctl.client.organization_connected_apps().await {
        Ok(json) if ctl.alive.get() => ctl.state.set(State::Apps(Box::new(AppsList {
            org,
            apps: OrgAppView::list_from_json(&json),
            confirming: None,
            busy: false,
            notice,
        }))),
        Ok(_) => {}
        Err(e) => ctl.fail(&e),
    }
}

async fn revoke<P: Platform + 'static>(ctl: Rc<Ctl<P>>, client_id: String) {
    if !ctl.alive.get() {
        return;
    }
    let mut name = client_id.clone();
    ctl.change(&mut |s| {
        if let State::Apps(list) = s {
            list.busy = true;
            if let Some(app) = list.apps.iter().find(|a| a.client_id == client_id) {
                name.clone_from(&app.name);
            }
        }
    });
    let answer = ctl.client.revoke_organization_app(&client_id).await;
    if !ctl.alive.get() {
        return;
    }
    let count = match answer {
        Ok(json) => json.num_member("revoked_grants").unwrap_or(0.0) as u32,
        Err(e) => return ctl.fail(&e),
    };
    if !ctl.event(&UiEvent::OrgAppRevoked {
        client_id,
        revoked_grants: count,
    }) {
        return;
    }
    let notice = ctl.fill(
        "org_apps.revoked",
        &[("app", &name), ("count", &decimal(count))],
    );
    spawn_local(load(ctl, Some(notice)));
}

// ---------------------------------------------------------------------------------------------
// OrganizationPolicy

#[derive(Clone, Debug, PartialEq)]
struct Edit {
    /// As last loaded or saved: the version to send, the organization, the scopes served.
    saved: PolicyView,
    /// What the admin is editing.
    draft: Policy,
    /// Apps members connected: (client id, name, first-party), for the allow-list picker.
    apps: Vec<(String, String, bool)>,
    /// The client ids offered per kind (first-party, third-party): connected apps, the lists'
    /// entries and what the admin typed.
    clients: [Vec<String>; 2],
    /// The hosts offered (third-party).
    hosts: Vec<String>,
    busy: bool,
    notice: Option<String>,
    error: Option<Shown>,
    /// The error is a 412: someone saved in between; offer Reload.
    conflict: bool,
}

/// The organization policy editor's controller; the view comes from
/// [`OrganizationPolicy::view`].
pub struct OrganizationPolicy<P: Platform + 'static> {
    ctl: Rc<Ctl<P>>,
}

/// Build the organization policy editor (for admins; others see `forbidden`).
pub fn organization_policy<P: Platform + 'static>(
    client: Rc<Client<P>>,
    options: ConnectedAppsOptions,
    hooks: Rc<RefCell<Hooks>>,
    look: ArcRwSignal<Look>,
) -> OrganizationPolicy<P> {
    OrganizationPolicy {
        ctl: build(client, options, hooks, look, true),
    }
}

impl<P: Platform + 'static> OrganizationPolicy<P> {
    /// The view; loads the policy on the next tick.
    pub fn view(&self) -> AnyView {
        view(&self.ctl)
    }

    /// Stop: nothing in flight may update the editor any more.
    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

/// Change the draft (and forget the last notice); nothing while saving.
#[inline(never)]
fn edit<P: Platform + 'static>(ctl: Stored<P>, f: &mut dyn FnMut(&mut Edit)) {
    ctl.get_value().change(&mut |s| {
        if let State::Policy(e) = s
            && !e.busy
        {
            e.notice = None;
            f(e);
        }
    });
}

fn toggle(list: &mut Vec<String>, item: &str) {
    match list.iter().position(|x| x == item) {
        Some(i) => {
            list.remove(i);
        }
        None => list.push(item.to_owned()),
    }
}

fn push_new(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

/// What a radio, checkbox or switch of the editor changes.
#[derive(Clone)]
enum Pick {
    /// The mode of first-party (0) or third-party (1) apps.
    Mode(usize, AppMode),
    /// A client id on the allow-list of first-party (0) or third-party (1) apps.
    Client(usize, String),
    /// A host on the third-party allow-list.
    Host(String),
    /// A scope: on is allowed.
    Scope(String),
}

fn rule_mut(e: &mut Edit, kind: usize) -> &mut consentry_core::AppRule {
    if kind == 0 {
        &mut e.draft.first_party
    } else {
        &mut e.draft.third_party
    }
}

fn apply(e: &mut Edit, pick: &Pick) {
    match pick {
        Pick::Mode(kind, mode) => rule_mut(e, *kind).mode = *mode,
        Pick::Client(kind, id) => toggle(&mut rule_mut(e, *kind).allow_clients, id),
        Pick::Host(host) => toggle(&mut e.draft.third_party.allow_hosts, host),
        Pick::Scope(scope) => toggle(&mut e.draft.disallowed, scope),
    }
}

/// `<label><input> text</label>`: a radio of the group `name` (a mode), else a checkbox, a
/// switch for a scope (described by `hint`).
fn choice<P: Platform + 'static>(
    ctl: Stored<P>,
    name: &str,
    checked: bool,
    text: El,
    pick: Pick,
) -> AnyView {
    let input = match &pick {
        Pick::Mode(..) => el("INPUT", "").attr("type", "radio").attr("name", name),
        Pick::Scope(_) => el("INPUT", "")
            .attr("type", "checkbox")
            .attr("role", "switch")
            .attr("aria-describedby", name),
        _ => el("INPUT", "").attr("type", "checkbox"),
    };
    el("LABEL", "cnsy-opt")
        .child(
            input
                .prop("checked", JsValue::from_bool(checked))
                .on_click(move |_| edit(ctl, &mut |e| apply(e, &pick)))
                .view(),
        )
        .child(text.view())
        .view()
}

fn span(text: String) -> El {
    el("SPAN", "").text(text)
}

/// A labelled text field with a button next to it.
fn field(id: String, label: String, input: El, button: Option<AnyView>) -> AnyView {
    el("DIV", "cnsy-row")
        .child(el("LABEL", "").attr("for", id.clone()).text(label).view())
        .child(input.attr("id", id).view())
        .child_opt(button)
        .view()
}

fn policy_view<P: Platform + 'static>(strings: &Strings, e: &Edit, ctl: Stored<P>) -> AnyView {
    let c = ctl.get_value();
    let ids = {
        [
            c.id("c0"),
            c.id("c1"),
            c.id("h"),
            c.id("t"),
            c.id("g"),
            c.id("sd"),
        ]
    };
    let org = e.saved.organization_name.as_str();
    let mut parts = vec![
        h1(strings.fill("policy.title", &[("org", org)])).view(),
        el("P", "cnsy-mu")
            .attr("role", "status")
            .text(if e.busy {
                strings.get("policy.saving")
            } else {
                e.notice.clone().unwrap_or_default()
            })
            .view(),
    ];
    if let Some(shown) = &e.error {
        parts.push(
            el("DIV", "cnsy-row")
                .child(
                    el("P", "cnsy-err")
                        .attr("role", "alert")
                        .text(if e.conflict {
                            strings.get("policy.conflict")
                        } else {
                            strings.error_text(shown.code, &shown.description)
                        })
                        .view(),
                )
                .child_opt(e.conflict.then(|| {
                    button("cnsy-btn", strings.get("policy.reload"), e.busy)
                        .on_click(move |_| spawn_local(load(ctl.get_value(), None)))
                        .view()
                }))
                .view(),
        );
    }
    for kind in 0..2 {
        let rule = if kind == 0 {
            &e.draft.first_party
        } else {
            &e.draft.third_party
        };
        let group = c.id(if kind == 0 { "m0" } else { "m1" });
        let modes = [
            (AppMode::AllAllowed, "policy.all"),
            (AppMode::Restricted, "policy.restricted"),
            (AppMode::NotAllowed, "policy.none"),
        ]
        .into_iter()
        .map(|(mode, key)| {
            choice(
                ctl,
                &group,
                rule.mode == mode,
                span(strings.get(key)),
                Pick::Mode(kind, mode),
            )
        })
        .collect::<Vec<_>>();
        let mut set = el("FIELDSET", "").child(
            el("LEGEND", "")
                .text(strings.get(if kind == 0 {
                    "policy.first_party"
                } else {
                    "policy.third_party"
                }))
                .view(),
        );
        set = set.children(modes);
        if rule.mode == AppMode::Restricted {
            let mut pick = el("DIV", "cnsy-pick").children(e.clients[kind].iter().map(|id| {
                let name = e
                    .apps
                    .iter()
                    .find(|(app, _, _)| app == id)
                    .map(|(_, name, _)| name.as_str());
                let label = match name {
                    Some(name) if name != id => format_pair(name, id),
                    _ => id.clone(),
                };
                choice(
                    ctl,
                    "",
                    rule.allow_clients.contains(id),
                    span(label),
                    Pick::Client(kind, id.clone()),
                )
            }));
            let input_id = ids[kind].clone();
            pick = pick.child(field(
                input_id.clone(),
                strings.get("policy.client_id"),
                el("INPUT", "cnsy-in").attr("type", "text"),
                Some(
                    button("cnsy-btn", strings.get("policy.add"), e.busy)
                        .on_click(move |_| add(ctl, &input_id, kind, false))
                        .view(),
                ),
            ));
            if kind == 1 {
                pick = pick
                    .child(el("P", "cnsy-mu").text(strings.get("policy.hosts")).view())
                    .children(e.hosts.iter().map(|host| {
                        choice(
                            ctl,
                            "",
                            rule.allow_hosts.contains(host),
                            span(host.clone()),
                            Pick::Host(host.clone()),
                        )
                    }));
                let host_id = ids[2].clone();
                pick = pick.child(field(
                    host_id.clone(),
                    strings.get("policy.host"),
                    el("INPUT", "cnsy-in").attr("type", "text"),
                    Some(
                        button("cnsy-btn", strings.get("policy.add"), e.busy)
                            .on_click(move |_| add(ctl, &host_id, 1, true))
                            .view(),
                    ),
                ));
            }
            set = set.child(pick.view());
        }
        parts.push(set.view());
    }
    let allowed = strings.get("policy.allowed");
    let scopes = e.saved.available_scopes.iter().map(|s| {
        let mut text = el("SPAN", "").text(s.description.clone());
        if s.description != s.scope {
            text = text.child(el("SPAN", "cnsy-det cnsy-mu").text(s.scope.clone()).view());
        }
        choice(
            ctl,
            &ids[5],
            !e.draft.disallows(&s.scope),
            text,
            Pick::Scope(s.scope.clone()),
        )
    });
    parts.push(
        el("FIELDSET", "")
            .child(el("LEGEND", "").text(strings.get("policy.scopes")).view())
            .child(
                el("P", "cnsy-mu")
                    .attr("id", ids[5].clone())
                    .text(allowed)
                    .view(),
            )
            .children(scopes)
            .view(),
    );
    let limit = |id: &String, label: &str, seconds: Option<i64>, unit: i64| {
        field(
            id.clone(),
            strings.get(label),
            el("INPUT", "cnsy-in")
                .attr("type", "number")
                .attr("min", "1")
                .attr("step", "1")
                // The attribute (the field's default), not the property: a re-render for another
                // control must not overwrite what the admin is typing; Save reads the field.
                .attr(
                    "value",
                    seconds.map(|s| limit_text(s, unit)).unwrap_or_default(),
                ),
            None,
        )
    };
    parts.push(
        el("FIELDSET", "")
            .child(el("LEGEND", "").text(strings.get("policy.limits")).view())
            .child(limit(
                &ids[3],
                "policy.token_ttl",
                e.draft.limits.access_token_ttl_seconds,
                60,
            ))
            .child(limit(
                &ids[4],
                "policy.grant_lifetime",
                e.draft.limits.grant_max_lifetime_seconds,
                86_400,
            ))
            .view(),
    );
    parts.push(
        el("DIV", "cnsy-actions")
            .child(
                button("cnsy-btn cnsy-pri", strings.get("policy.save"), e.busy)
                    .on_click(move |_| spawn_local(save(ctl.get_value())))
                    .view(),
            )
            .view(),
    );
    el("DIV", "cnsy-wide").children(parts).view()
}

/// A lifetime in the field's unit, rounded up (a limit never grows by being shown).
fn limit_text(seconds: i64, unit: i64) -> String {
    let n = seconds.saturating_add(unit - 1) / unit;
    decimal(n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// The text of the input `id`; `clear` empties it.
fn input_value(id: &str, clear: bool) -> String {
    let mut selector = String::from("#");
    selector.push_str(id);
    let Some(input) = browser::query(&selector) else {
        return String::new();
    };
    let key = JsValue::from_str("value");
    let value = js_sys::Reflect::get(&input, &key)
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    if clear {
        let _ = js_sys::Reflect::set(&input, &key, &JsValue::from_str(""));
    }
    value
}

/// Add what the admin typed to the allow-list (checked) and to the offered entries.
fn add<P: Platform + 'static>(ctl: Stored<P>, id: &str, kind: usize, host: bool) {
    let typed = input_value(id, true);
    let mut value = typed.trim().to_owned();
    if host {
        value = value.to_ascii_lowercase();
    }
    if value.is_empty() {
        return;
    }
    edit(ctl, &mut |e| {
        if host {
            push_new(&mut e.hosts, &value);
            push_new(&mut e.draft.third_party.allow_hosts, &value);
        } else {
            push_new(&mut e.clients[kind], &value);
            let rule = if kind == 0 {
                &mut e.draft.first_party
            } else {
                &mut e.draft.third_party
            };
            push_new(&mut rule.allow_clients, &value);
        }
    });
}

async fn load_policy<P: Platform + 'static>(ctl: Rc<Ctl<P>>) {
    if !ctl.signed_in().await {
        return;
    }
    let saved = match ctl
        .client
        .organization_policy()
        .await
        .and_then(|json| PolicyView::from_json(&json))
    {
        Ok(view) => view,
        Err(e) => return ctl.fail(&e),
    };
    if !ctl.alive.get() {
        return;
    }
    // The picker's suggestions; the policy is editable without them.
    let known = ctl
        .client
        .organization_connected_apps()
        .await
        .map(|json| OrgAppView::list_from_json(&json))
        .unwrap_or_default();
    let mut hosts = Vec::new();
    let mut apps = Vec::new();
    for app in known {
        if let Some(h) = app.host.as_ref().filter(|_| !app.first_party) {
            push_new(&mut hosts, h);
        }
        apps.push((app.client_id, app.name, app.first_party));
    }
    if !ctl.alive.get() {
        return;
    }
    let mut clients = [Vec::new(), Vec::new()];
    for (id, _, first) in &apps {
        push_new(&mut clients[usize::from(!first)], id);
    }
    for (kind, rule) in [&saved.policy.first_party, &saved.policy.third_party]
        .into_iter()
        .enumerate()
    {
        for id in &rule.allow_clients {
            push_new(&mut clients[kind], id);
        }
    }
    for h in &saved.policy.third_party.allow_hosts {
        push_new(&mut hosts, h);
    }
    ctl.state.set(State::Policy(Box::new(Edit {
        draft: saved.policy.clone(),
        saved,
        apps,
        clients,
        hosts,
        busy: false,
        notice: None,
        error: None,
        conflict: false,
    })));
}

/// A limit field: empty is no limit; else a whole number above zero, in `unit` seconds. The
/// shown value (rounded up) keeps the exact stored seconds when left as it was.
fn read_limit(id: &str, current: Option<i64>, unit: i64) -> Result<Option<i64>, ()> {
    let text = input_value(id, false);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if current.is_some_and(|s| limit_text(s, unit) == text) {
        return Ok(current);
    }
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(i64::from(n) * unit)),
        _ => Err(()),
    }
}

async fn save<P: Platform + 'static>(ctl: Rc<Ctl<P>>) {
    if !ctl.alive.get() {
        return;
    }
    let ids = [ctl.id("t"), ctl.id("g")];
    let mut bad_limit = false;
    let mut request = None;
    ctl.change(&mut |s| {
        let State::Policy(e) = s else { return };
        if e.busy {
            return;
        }
        let limits = &e.draft.limits;
        let ttl = read_limit(&ids[0], limits.access_token_ttl_seconds, 60);
        let life = read_limit(&ids[1], limits.grant_max_lifetime_seconds, 86_400);
        let (Ok(ttl), Ok(life)) = (ttl, life) else {
            bad_limit = true;
            return;
        };
        e.draft.limits.access_token_ttl_seconds = ttl;
        e.draft.limits.grant_max_lifetime_seconds = life;
        let mut policy = e.draft.clone();
        // The lists belong to "Only these": kept in the draft while the admin switches modes,
        // never sent with another mode (the server would refuse them).
        for rule in [&mut policy.first_party, &mut policy.third_party] {
            if rule.mode != AppMode::Restricted {
                rule.allow_clients.clear();
                rule.allow_hosts.clear();
            }
        }
        e.busy = true;
        e.notice = None;
        e.error = None;
        e.conflict = false;
        request = Some((policy, e.saved.version));
    });
    if bad_limit {
        let text = ctl.fill("policy.bad_limit", &[]);
        return show_error(
            &ctl,
            &SdkError::local(SdkErrorCode::Server(ErrorCode::InvalidRequest), text),
        );
    }
    let Some((policy, version)) = request else {
        return;
    };
    let answer = ctl
        .client
        .put_organization_policy(&policy, version)
        .await
        .and_then(|json| PolicyView::from_json(&json));
    if !ctl.alive.get() {
        return;
    }
    match answer {
        Ok(saved) => {
            let count = saved.revoked_grants.unwrap_or(0).min(u64::from(u32::MAX)) as u32;
            if !ctl.event(&UiEvent::PolicySaved {
                version: saved.version,
                revoked_grants: count,
            }) {
                return;
            }
            let notice = ctl.fill("policy.saved", &[("count", &decimal(count))]);
            let mut saved = Some(saved);
            let mut notice = Some(notice);
            ctl.change(&mut |s| {
                if let (State::Policy(e), Some(saved)) = (s, saved.take()) {
                    e.draft = saved.policy.clone();
                    e.saved = saved;
                    e.busy = false;
                    e.notice = notice.take();
                }
            });
        }
        Err(err) => show_error(&ctl, &err),
    }
}

/// An error beside the editor (the draft stays): a 412 offers Reload.
fn show_error<P: Platform + 'static>(ctl: &Ctl<P>, err: &SdkError) {
    if !ctl.report(err) {
        return;
    }
    let conflict = err.code == SdkErrorCode::Server(ErrorCode::PreconditionFailed);
    ctl.change(&mut |s| {
        if let State::Policy(e) = s {
            e.busy = false;
            e.error = Some(Shown::from(err));
            e.conflict = conflict;
        }
    });
}
