//! `ConnectedApps`: the apps the user authorized, each revocable behind a confirmation.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use consentry_core::{Client, ConnectedAppView, SdkError, SdkErrorCode};
use leptos::html::H1;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::idp::{brand, error_view, focus_on_mount};
use crate::{Hooks, Login, Look, Platform, Shown, UiEvent, browser, style};

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

pub struct ConnectedApps<P: Platform + 'static> {
    ctl: Rc<Ctl<P>>,
}

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
    pub fn view(&self) -> impl IntoView + use<P> {
        browser::inject_css(style::STYLE_ID, style::CSS);
        let ctl = Rc::clone(&self.ctl);
        spawn_local(load(Rc::clone(&ctl), None));
        let stored = StoredValue::new_local(ctl);
        let state = RwSignal::from(self.ctl.state.clone());
        let look = self.ctl.look.clone();
        let heading = NodeRef::<H1>::new();
        focus_on_mount(heading);
        let look = RwSignal::from(look);
        let root_look = look;
        let busy_state = state;
        view! {
            <div
                class=move || root_look.with(|l| l.theme.root_class())
                style=move || root_look.with(|l| l.theme.style_attr())
            >
                <div class="cnsy-card" aria-busy=move || busy_state.with(|s| matches!(s, State::Loading | State::List { busy: true, .. }).to_string())>
                    {move || brand(look)}
                    {move || {
                            let strings = look.with(|l| l.strings.clone());
                            match state.get() {
                                State::Loading => {
                                    view! {
                                        <h1 class="cnsy-h" tabindex="-1" node_ref=heading>
                                            {strings.get("apps.loading")}
                                        </h1>
                                    }
                                        .into_any()
                                }
                                State::Failed(shown) => error_view(&strings, &shown, heading).into_any(),
                                State::List { apps, confirming, busy, notice } => {
                                    list_view(&strings, &apps, confirming.as_deref(), busy, notice, heading, stored)
                                        .into_any()
                                }
                            }
                        }
                    }
                </div>
            </div>
        }
    }

    pub fn stop(&self) {
        self.ctl.alive.set(false);
    }
}

fn list_view<P: Platform + 'static>(
    strings: &crate::Strings,
    apps: &[ConnectedAppView],
    confirming: Option<&str>,
    busy: bool,
    notice: Option<String>,
    heading: NodeRef<H1>,
    ctl: StoredValue<Rc<Ctl<P>>, LocalStorage>,
) -> impl IntoView + use<P> {
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
    let items = apps
        .iter()
        .map(|app| {
            let id = app.client_id.clone();
            let name = app.name.clone();
            let logo = app
                .logo_uri
                .clone()
                .map(|src| view! { <img class="cnsy-logo" src=src alt="" /> });
            let granted = app.granted_at.map(|t| {
                strings.fill("apps.granted", &[("date", &browser::local_date(t))])
            });
            let used = match app.last_used_at {
                Some(t) => strings.fill("apps.last_used", &[("date", &browser::local_date(t))]),
                None => strings.get("apps.never_used"),
            };
            let scopes = app.scopes.join(", ");
            let action = if confirming == Some(id.as_str()) {
                let revoke_id = id.clone();
                view! {
                    <div class="cnsy-confirm" role="group">
                        <p>{strings.fill("apps.confirm", &[("app", &name)])}</p>
                        <div class="cnsy-actions">
                            <button type="button" class="cnsy-btn" disabled=busy on:click=move |_| set_confirming(None)>
                                {strings.get("apps.cancel")}
                            </button>
                            <button
                                type="button"
                                class="cnsy-btn cnsy-dgb"
                                disabled=busy
                                on:click=move |_| spawn_local(revoke(ctl.get_value(), revoke_id.clone()))
                            >
                                {strings.get("apps.confirm_yes")}
                            </button>
                        </div>
                    </div>
                }
                .into_any()
            } else {
                let ask_id = id.clone();
                view! {
                    <button
                        type="button"
                        class="cnsy-btn cnsy-dgb"
                        aria-label=strings.fill("apps.revoke_label", &[("app", &name)])
                        disabled=busy
                        on:click=move |_| set_confirming(Some(ask_id.clone()))
                    >
                        {strings.get("apps.revoke")}
                    </button>
                }
                .into_any()
            };
            view! {
                <li class="cnsy-item">
                    {logo}
                    <div class="cnsy-grow">
                        <h2 class="cnsy-sh">{name.clone()}</h2>
                        <p class="cnsy-mu">{scopes}</p>
                        <p class="cnsy-mu">{granted}" · "{used}</p>
                        {action}
                    </div>
                </li>
            }
        })
        .collect_view();
    let body = if apps.is_empty() {
        view! { <p class="cnsy-mu">{strings.get("apps.empty")}</p> }.into_any()
    } else {
        view! { <ul class="cnsy-list">{items}</ul> }.into_any()
    };
    view! {
        <h1 class="cnsy-h" tabindex="-1" node_ref=heading>{strings.get("apps.title")}</h1>
        <p class="cnsy-mu" role="status">{notice}</p>
        {body}
    }
}

/// Sign in if needed, then fetch the list (`notice` is what to announce with it).
async fn load<P: Platform + 'static>(ctl: Rc<Ctl<P>>, notice: Option<String>) {
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
    let mut name = client_id.clone();
    ctl.state.update(|s| {
        if let State::List { busy, apps, .. } = s {
            *busy = true;
            if let Some(app) = apps.iter().find(|a| a.client_id == client_id) {
                name.clone_from(&app.name);
            }
        }
    });
    if let Err(e) = ctl.client.revoke_connected_app(&client_id).await {
        return fail(&ctl, &e);
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.event(&UiEvent::AppRevoked { client_id });
    let notice = ctl
        .look
        .with(|l| l.strings.fill("apps.revoked", &[("app", &name)]));
    load(ctl, Some(notice)).await;
}

fn fail<P: Platform>(ctl: &Ctl<P>, e: &SdkError) {
    if !ctl.alive.get() {
        return;
    }
    let hooks = ctl.hooks.borrow().clone();
    hooks.error(e);
    ctl.state.set(State::Failed(Shown::from(e)));
}
