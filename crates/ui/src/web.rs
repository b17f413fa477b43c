//! [`WebPlatform`]: [`Platform`] on the window's `fetch`, `JSON` and `Date`, through web-sys (no
//! `#[wasm_bindgen]` here), for the Leptos components and for Rust apps that drive
//! [`consentry_core::Client`] themselves.
//!
//! The npm build keeps its own transport in `consentry-wasm` (a direct `fetch` import that also
//! works in workers): moving it here would move the published bundle's bytes.

use consentry_core::{
    HttpRequest, HttpResponse, JsonObject, Platform, TransportError, WireObject, WireValue,
};
use js_sys::{Array, Date, JSON, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A parsed JSON value, as the browser's `JSON.parse` returned it.
#[derive(Clone, Debug)]
pub struct WebJson(pub JsValue);

impl WebJson {
    fn get(&self, key: &str) -> Option<JsValue> {
        if !self.is_object() {
            return None;
        }
        Reflect::get(&self.0, &JsValue::from_str(key)).ok()
    }
}

impl JsonObject for WebJson {
    fn str_member(&self, key: &str) -> Option<String> {
        self.get(key)?.as_string()
    }

    fn num_member(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    fn is_object(&self) -> bool {
        self.0.is_object() && !Array::is_array(&self.0)
    }

    fn is_array(&self) -> bool {
        Array::is_array(&self.0)
    }

    fn bool_member(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    fn member(&self, key: &str) -> Option<WebJson> {
        self.get(key).filter(|v| !v.is_undefined()).map(WebJson)
    }

    fn elements(&self) -> Vec<WebJson> {
        if !self.is_array() {
            return Vec::new();
        }
        Array::from(&self.0).iter().map(WebJson).collect()
    }

    fn as_string(&self) -> Option<String> {
        self.0.as_string()
    }

    fn keys(&self) -> Vec<String> {
        if !self.is_object() {
            return Vec::new();
        }
        Object::keys(&Object::from(self.0.clone()))
            .iter()
            .filter_map(|k| k.as_string())
            .collect()
    }
}

/// HTTP through `window.fetch` (never with cookies: the session is a bearer token held in
/// memory), JSON through `JSON.parse`, time through `Date.now()`.
///
/// ```no_run
/// use consentry_core::Client;
/// use consentry_ui::WebPlatform;
///
/// let client = Client::new(WebPlatform, "https://auth.example.com");
/// # let _ = client;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct WebPlatform;

impl Platform for WebPlatform {
    type Json = WebJson;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<WebJson>, TransportError> {
        send(request).await.map_err(|e| TransportError {
            detail: describe(&e),
        })
    }

    fn parse_json(&self, text: &str) -> Option<WebJson> {
        JSON::parse(text).ok().map(WebJson)
    }

    fn now_unix_seconds(&self) -> f64 {
        Date::now() / 1000.0
    }
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_default()
}

async fn send(request: HttpRequest) -> Result<HttpResponse<WebJson>, JsValue> {
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let init = web_sys::RequestInit::new();
    init.set_method(request.method.as_str());
    init.set_credentials(web_sys::RequestCredentials::Omit);
    let headers = Object::new();
    if let Some(token) = &request.bearer {
        let mut value = String::from("Bearer ");
        value.push_str(token);
        Reflect::set(&headers, &"authorization".into(), &value.into())?;
    }
    if let Some(tag) = &request.if_match {
        Reflect::set(&headers, &"if-match".into(), &tag.into())?;
    }
    let text: Option<JsValue> = match (&request.json, &request.body) {
        (Some(json), _) => Some(json.into()),
        (None, Some(body)) => Some(JSON::stringify(&wire_to_js(body)?)?.into()),
        (None, None) => None,
    };
    if let Some(text) = text {
        Reflect::set(&headers, &"content-type".into(), &"application/json".into())?;
        init.set_body(&text);
    }
    init.set_headers(&headers);
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str_and_init(&request.url, &init))
            .await?
            .dyn_into()?;
    let status = response.status();
    let text = JsFuture::from(response.text()?).await?;
    let body = text
        .as_string()
        .and_then(|t| JSON::parse(&t).ok())
        .map(WebJson);
    Ok(HttpResponse { status, body })
}

fn wire_to_js(body: &WireObject) -> Result<JsValue, JsValue> {
    let out = Object::new();
    for (key, value) in &body.0 {
        let v: JsValue = match value {
            WireValue::Str(s) => JsValue::from_str(s),
            WireValue::StrList(list) => list
                .iter()
                .map(|s| JsValue::from_str(s))
                .collect::<Array>()
                .into(),
            WireValue::Bool(b) => JsValue::from_bool(*b),
            WireValue::U32(n) => JsValue::from(*n),
        };
        Reflect::set(&out, &JsValue::from_str(key), &v)?;
    }
    Ok(out.into())
}
