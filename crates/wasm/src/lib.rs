//! JavaScript bindings of the Consentry browser SDK. The logic lives in `consentry-core`; this
//! crate only moves values across the boundary and implements [`Platform`] with the browser's own
//! `fetch`, `JSON` and `Date` (no Rust JSON or URL library in the bundle: serde_json and the `url`
//! crate's IDNA tables would cost tens of KB of the size budget; `cargo xtask size` prints it).
//!
//! Values cross as plain JS objects with snake_case members (the wire's names); the npm package's
//! JS layer renames them to camelCase and wraps errors into `ConsentryError`.

#![cfg(feature = "headless")]

mod platform;
#[cfg(feature = "ui")]
mod ui;

use std::rc::Rc;

use consentry_core::{
    AuthorizeParams, Client, SdkError, Session, TatLogin, decode_trusted_auth_token,
    parse_authorize_params,
};
use js_sys::{Array, Object, Promise, Reflect};
use std::future::Future;
use std::pin::Pin;
use wasm_bindgen::prelude::*;

use wasm_bindgen_futures::future_to_promise;

use platform::BrowserPlatform;

/// Parse an authorization URL with the server's grammar →
/// `{ params: object | null, error: error | null, redirectable: boolean }`.
#[wasm_bindgen(js_name = parseAuthorizeParams)]
pub fn parse_authorize_params_js(input: &str) -> JsValue {
    let parsed = parse_authorize_params(input);
    let out = Object::new();
    let params = parsed.params.as_ref().map_or(JsValue::NULL, params_to_js);
    let error = parsed.error.as_ref().map_or(JsValue::NULL, error_to_js);
    set(&out, "params", &params);
    set(&out, "error", &error);
    set(
        &out,
        "redirectable",
        &JsValue::from_bool(parsed.redirectable),
    );
    out.into()
}

/// `{ claims, expires_at, expired }` of a Trusted Auth Token, unverified.
#[wasm_bindgen(js_name = decodeTrustedAuthToken)]
pub fn decode_trusted_auth_token_js(token: &str) -> Result<JsValue, JsValue> {
    let info = decode_trusted_auth_token(&BrowserPlatform, token).map_err(|e| error_to_js(&e))?;
    let out = Object::new();
    set(&out, "claims", &info.claims.0);
    set(
        &out,
        "expires_at",
        &info.expires_at.map_or(JsValue::NULL, JsValue::from_f64),
    );
    set(&out, "expired", &JsValue::from_bool(info.expired));
    Ok(out.into())
}

/// One client per Consentry server; holds the session in memory.
#[wasm_bindgen]
pub struct Consentry {
    client: Rc<Client<BrowserPlatform>>,
}

#[wasm_bindgen]
impl Consentry {
    #[wasm_bindgen(constructor)]
    pub fn new(base_url: &str) -> Consentry {
        Consentry {
            client: Rc::new(Client::new(BrowserPlatform, base_url)),
        }
    }

    /// Resolves to the attest response (`{ session_token, expires_at, user }`).
    pub fn attest(
        &self,
        trusted_auth_token: String,
        profile_id: String,
        session_duration_minutes: Option<u32>,
    ) -> Promise {
        let client = Rc::clone(&self.client);
        let login = TatLogin {
            trusted_auth_token,
            profile_id,
            session_duration_minutes,
        };
        promise(async move { client.attest(&login).await.map(|j| j.0) })
    }

    /// Resolves to the consent description; with a token, signs in in the same request.
    #[wasm_bindgen(js_name = authorizeStart)]
    pub fn authorize_start(
        &self,
        params: JsValue,
        trusted_auth_token: Option<String>,
        profile_id: Option<String>,
        session_duration_minutes: Option<u32>,
    ) -> Promise {
        let client = Rc::clone(&self.client);
        let params = params_from_js(&params);
        let login = trusted_auth_token.map(|trusted_auth_token| TatLogin {
            trusted_auth_token,
            profile_id: profile_id.unwrap_or_default(),
            session_duration_minutes,
        });
        promise(async move {
            client
                .authorize_start(&params, login.as_ref())
                .await
                .map(|j| j.0)
        })
    }

    /// Resolves to the location to navigate to (a string); does not navigate.
    #[wasm_bindgen(js_name = authorizeSubmit)]
    pub fn authorize_submit(&self, params: JsValue, consent_granted: bool) -> Promise {
        let client = Rc::clone(&self.client);
        let params = params_from_js(&params);
        promise(async move {
            client
                .authorize_submit(&params, consent_granted)
                .await
                .map(JsValue::from)
        })
    }

    /// Resolves to the array of connected apps.
    #[wasm_bindgen(js_name = connectedApps)]
    pub fn connected_apps(&self) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move { client.connected_apps().await.map(|j| j.0) })
    }

    #[wasm_bindgen(js_name = revokeConnectedApp)]
    pub fn revoke_connected_app(&self, client_id: String) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move {
            client
                .revoke_connected_app(&client_id)
                .await
                .map(|()| JsValue::UNDEFINED)
        })
    }

    /// Resolves to `{ organization_id, organization_name, is_admin }`.
    pub fn organization(&self) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move { client.organization().await.map(|j| j.0) })
    }

    /// Resolves to `{ organization_id, apps: [...] }` (admins).
    #[wasm_bindgen(js_name = organizationConnectedApps)]
    pub fn organization_connected_apps(&self) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move { client.organization_connected_apps().await.map(|j| j.0) })
    }

    /// Resolves to `{ revoked, client_id, revoked_grants }` (admins).
    #[wasm_bindgen(js_name = revokeOrganizationApp)]
    pub fn revoke_organization_app(&self, client_id: String) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move {
            client
                .revoke_organization_app(&client_id)
                .await
                .map(|j| j.0)
        })
    }

    /// Resolves to the `PolicyState` (admins).
    #[wasm_bindgen(js_name = organizationPolicy)]
    pub fn organization_policy(&self) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move { client.organization_policy().await.map(|j| j.0) })
    }

    /// `policy`: the snake_case document as JSON text (the JS layer builds and stringifies it);
    /// `version`: the one it was read at (sent as If-Match).
    #[wasm_bindgen(js_name = putOrganizationPolicy)]
    pub fn put_organization_policy(&self, policy: String, version: f64) -> Promise {
        let client = Rc::clone(&self.client);
        promise(async move {
            client
                .put_organization_policy_json(policy, version as i64)
                .await
                .map(|j| j.0)
        })
    }

    #[wasm_bindgen(getter, js_name = sessionToken)]
    pub fn session_token(&self) -> Option<String> {
        self.client.session().map(|s| s.token)
    }

    #[wasm_bindgen(getter, js_name = sessionExpiresAt)]
    pub fn session_expires_at(&self) -> Option<f64> {
        self.client.session().and_then(|s| s.expires_at)
    }

    /// Restore (or, with no token, forget) the session.
    #[wasm_bindgen(js_name = setSession)]
    pub fn set_session(&self, token: Option<String>, expires_at: Option<f64>) {
        self.client
            .set_session(token.map(|token| Session { token, expires_at }));
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<JsValue, SdkError>>>>;

/// One `future_to_promise` instantiation for every method (each costs ~1 KB of wasm otherwise).
fn promise(call: impl Future<Output = Result<JsValue, SdkError>> + 'static) -> Promise {
    promise_boxed(Box::pin(call))
}

fn promise_boxed(call: CallFuture) -> Promise {
    future_to_promise(async move { call.await.map_err(|e| error_to_js(&e)) })
}

pub(crate) fn set(target: &Object, key: &str, value: &JsValue) {
    // Cannot fail on a plain, extensible object.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

fn set_opt(target: &Object, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        set(target, key, &JsValue::from_str(v));
    }
}

pub(crate) fn error_to_js(e: &SdkError) -> JsValue {
    let out = Object::new();
    set(&out, "code", &JsValue::from_str(e.code.as_str()));
    set(
        &out,
        "status",
        &e.status.map_or(JsValue::NULL, JsValue::from),
    );
    set(&out, "description", &JsValue::from_str(&e.description));
    set_opt(&out, "redirect_uri", e.redirect_uri.as_deref());
    set_opt(&out, "client_name", e.client_name.as_deref());
    set_opt(&out, "organization_name", e.organization_name.as_deref());
    out.into()
}

fn params_to_js(p: &AuthorizeParams) -> JsValue {
    let out = Object::new();
    set_opt(&out, "client_id", p.client_id.as_deref());
    set_opt(&out, "redirect_uri", p.redirect_uri.as_deref());
    set_opt(&out, "response_type", p.response_type.as_deref());
    set_opt(&out, "scope", p.scope.as_deref());
    set_opt(&out, "state", p.state.as_deref());
    set_opt(&out, "code_challenge", p.code_challenge.as_deref());
    set_opt(
        &out,
        "code_challenge_method",
        p.code_challenge_method.as_deref(),
    );
    let resource: Array = p.resource.iter().map(|r| JsValue::from_str(r)).collect();
    set(&out, "resource", &resource);
    set_opt(&out, "prompt", p.prompt.as_deref());
    set_opt(&out, "nonce", p.nonce.as_deref());
    out.into()
}

/// Authorization parameters from a snake_case JS object. Members that are not strings are left
/// out (the server then names the missing parameter); `resource` may be a string or an array.
fn params_from_js(v: &JsValue) -> AuthorizeParams {
    let get = |key: &str| Reflect::get(v, &JsValue::from_str(key)).ok();
    let string = |key: &str| get(key).and_then(|x| x.as_string());
    let resource = match get("resource") {
        Some(r) if Array::is_array(&r) => Array::from(&r)
            .iter()
            .filter_map(|x| x.as_string())
            .collect(),
        Some(r) => r.as_string().into_iter().collect(),
        None => Vec::new(),
    };
    AuthorizeParams {
        client_id: string("client_id"),
        redirect_uri: string("redirect_uri"),
        response_type: string("response_type"),
        scope: string("scope"),
        state: string("state"),
        code_challenge: string("code_challenge"),
        code_challenge_method: string("code_challenge_method"),
        resource,
        prompt: string("prompt"),
        nonce: string("nonce"),
    }
}
