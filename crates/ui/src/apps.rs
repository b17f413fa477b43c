//! `ConnectedApps`: the apps the user authorized, each revocable behind a confirmation.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::mount::spawn_local;
use consentry_core::{Client, ConnectedAppView, SdkError, SdkErrorCode};
use reactive_graph::owner::{LocalStorage, StoredValue};
use reactive_graph::prelude::*;
use reactive_graph::signal::ArcRwSignal;
use tachys::prelude::*;

use crate::dom::{el, fragment};
use crate::idp::{error_view, frame, h1, logo};
use crate::{Hooks, Login, Look, Platform, Shown, Strings, UiEvent};

/// What the connected apps list is started with.
#[derive(Clone, Debug, Default)]
pub struct ConnectedAppsOptions {
    /// Sign in with the product's Trusted Auth Token first (unless the client has a session).
    pub login: Option<Login>,
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Loading,
    List {
        apps: Vec<ConnectedAppView>,
        /// The app whose revocation waits for confirmation.
        confirming: Option<String>,
        busy: bool,
        /// Said after a revocation (a live region).
        notice: Option<String>,
    },
    Failed(Shown),
}

struct Ctl<P: Platform> {
    client: Rc<Client<P>>,
    hooks: Rc<RefCell<Hooks>>,
    options: ConnectedAppsOptions,
    state: ArcRwSignal<State>,
    look: ArcRwSignal<Look>,
    alive: Cell<bool>,
}

/// A connected apps list's controller; the view comes from [`ConnectedApps::view`].
pub struct ConnectedApps<P: Platform + 'static> {
    ctl: Rc<Ctl<P>>,
}

/// Build the connected apps list. Call [`ConnectedApps::view`] inside the mount.
pub fn connected_apps<P: Platform + 'static>(
    client: Rc<Client<P>>,
    options: ConnectedAppsOptions,
    hooks: Rc<RefCell<Hooks>>,
    look: ArcRwSignal<Look>,
) -> ConnectedApps<P> {
    ConnectedApps {
        ctl: Rc::new(Ctl {
            client,
            hooks,
            options,
            state: ArcRwSignal::new(State::Loading),
            look,
            alive: Cell::new(true),
        }),
    }
}

impl<P: Platform + 'static> ConnectedApps<P> {
    /// The view; loads the list on the next tick.
    pub fn view(&self) -> AnyView {
        let ctl = Rc::clone(&self.ctl);
        spawn_local(load(Rc::clone(&ctl), None));
        let stored = StoredValue::new_local(ctl);
        let state = self.ctl.state.clone();
        frame(
            self.ctl.look.clone(),
            // `with`, not `get`: the state is read in place, never cloned.
            Arc::new(move |strings| {
                state.with(|state| match state {
                    State::Loading => (0, true, h1(strings.get("apps.loading")).view()),
                    State::Failed(shown) => (3, false, error_view(strings, shown)),
                    State::List {
                        apps,
                        confirming,
                        busy,
                        notice,
                    } => (
                        // Asking to confirm, and leaving that, are screens of their own: the
                        // button that had focus is gone.
                        if confirming.is_some() { 2 } else { 1 },
                        *busy,
                        list_view(strings, apps, confirming.as_deref(), *busy, notice, stored),
                    ),
                })
            }),
        )
    }

    /// Stop: nothing in flight may update the list any more.
    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

fn list_view<P: Platform + 'static>(
    strings: &Strings,
    apps: &[ConnectedAppView],
    confirming: Option<&str>,
    busy: bool,
    notice: &Option<String>,
    ctl: StoredValue<Rc<Ctl<P>>, LocalStorage>,
) -> AnyView {
    let set_confirming = move |id: Option<String>| {
        ctl.with_value(|c| {
            c.state.update(|s| {
                if let State::List {
                    confirming, notice, ..
                } = s
                {
                    *confirming = id;
                    *notice = None;
                }
            });
        });
    };
    let button = |class: &'static str, label: String| crate::org::button(class, label, busy);
    let items = apps.iter().map(|app| {
        let id = app.client_id.clone();
        let name = app.name.as_str();
        let dates = crate::org::dates(strings, app.granted_at, app.last_used_at);
        let action = if confirming == Some(id.as_str()) {
            el("DIV", "cnsy-confirm")
                .attr("role", "group")
                .child(
                    el("P", "")
                        .text(strings.fill("apps.confirm", &[("app", name)]))
                        .view(),
                )
                .child(
                    el("DIV", "cnsy-actions")
                        .child(
                            button("cnsy-btn", strings.get("apps.cancel"))
                                .on_click(move |_| set_confirming(None))
                                .view(),
                        )
                        .child(
                            button("cnsy-btn cnsy-dgb", strings.get("apps.confirm_yes"))
                                .on_click(move |_| spawn_local(revoke(ctl.get_value(), id.clone())))
                                .view(),
                        )
                        .view(),
                )
                .view()
        } else {
            button("cnsy-btn cnsy-dgb", strings.get("apps.revoke"))
                .attr(
                    "aria-label",
                    strings.fill("apps.revoke_label", &[("app", name)]),
                )
                .on_click(move |_| set_confirming(Some(id.clone())))
                .view()
        };
        el("LI", "cnsy-item")
            .child_opt(logo(app.logo_uri.as_ref()))
            .child(
                el("DIV", "cnsy-grow")
                    .child(el("H2", "cnsy-sh").text(name).view())
                    .child(el("P", "cnsy-mu").text(app.scopes.join(", ")).view())
                    .child(el("P", "cnsy-mu").text(dates).view())
                    .child(action)
                    .view(),
            )
            .view()
    });
    let body = if apps.is_empty() {
        el("P", "cnsy-mu").text(strings.get("apps.empty")).view()
    } else {
        el("UL", "cnsy-list").children(items).view()
    };
    fragment(vec![
        h1(strings.get("apps.title")).view(),
        el("P", "cnsy-mu")
            .attr("role", "status")
            .text(notice.clone().unwrap_or_default())
            .view(),
        body,
    ])
}

/// "Allowed on …" · "Last used on …".
pub(crate) fn format_pair(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + 5);
    s.push_str(a);
    s.push_str(" \u{b7} ");
    s.push_str(b);
    s
}

/// Sign in if needed, then fetch the list (`notice` is what to announce with it).
async fn load<P: Platform + 'static>(ctl: Rc<Ctl<P>>, notice: Option<String>) {
    // Spawned: the component may have been unmounted since (then nothing is sent).
    if !ctl.alive.get() {
        return;
    }
    if ctl.client.session().is_none() {
        let Some(login) = ctl.options.login.clone() else {
            return fail(
                &ctl,
                &SdkError::local(
                    SdkErrorCode::SessionMissing,
                    "trustedAuthTokenParams (trustedAuthToken and tokenProfileId) are required to sign the user in",
                ),
            );
        };
        if let Err(e) = ctl.client.attest(&login).await {
            return fail(&ctl, &e);
        }
        if !ctl.alive.get() {
            return;
        }
    }
    match ctl.client.connected_apps().await {
        Ok(json) if ctl.alive.get() => ctl.state.set(State::List {
            apps: ConnectedAppView::list_from_json(&json),
            confirming: None,
            busy: false,
            notice,
        }),
        Ok(_) => {}
        Err(e) => fail(&ctl, &e),
    }
}

async fn revoke<P: Platform + 'static>(ctl: Rc<Ctl<P>>, client_id: String) {
    if !ctl.alive.get() {
        return;
    }
    let mut name = client_id.clone();
    ctl.state.update(|s| {
        if let State::List { busy, apps, .. } = s {
            *busy = true;
            if let Some(app) = apps.iter().find(|a| a.client_id == client_id) {
                name.clone_from(&app.name);
            }
        }
    });
    let answer = ctl.client.revoke_connected_app(&client_id).await;
    if !ctl.alive.get() {
        return;
    }
    if let Err(e) = answer {
        return fail(&ctl, &e);
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.event(&UiEvent::AppRevoked { client_id });
    // The callback may have unmounted the component: then no reload.
    if !ctl.alive.get() {
        return;
    }
    let notice = ctl
        .look
        .with(|l| l.strings.fill("apps.revoked", &[("app", &name)]));
    // Spawned, not awaited: one copy of load's state machine instead of two.
    spawn_local(load(ctl, Some(notice)));
}

#[inline(never)]
fn fail<P: Platform>(ctl: &Ctl<P>, e: &SdkError) {
    if !ctl.alive.get() {
        return;
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.error(e);
    if ctl.alive.get() {
        ctl.state.set(State::Failed(Shown::from(e)));
    }
}
