//! [`Platform`] on the browser's `fetch`, `JSON` and `Date`: global functions, so the same code
//! works in a window and in a worker.

use consentry_core::{
    HttpRequest, HttpResponse, JsonObject, Platform, TransportError, WireObject, WireValue,
};
use js_sys::{Array, Date, JSON, Object, Reflect};
use wasm_bindgen::prelude::*;

/// A parsed JSON value.
pub struct Js(pub JsValue);

impl JsonObject for Js {
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

    fn member(&self, key: &str) -> Option<Js> {
        self.get(key).filter(|v| !v.is_undefined()).map(Js)
    }

    fn elements(&self) -> Vec<Js> {
        if !self.is_array() {
            return Vec::new();
        }
        Array::from(&self.0).iter().map(Js).collect()
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

impl Js {
    fn get(&self, key: &str) -> Option<JsValue> {
        if !self.is_object() {
            return None;
        }
        Reflect::get(&self.0, &JsValue::from_str(key)).ok()
    }
}

pub struct BrowserPlatform;

impl Platform for BrowserPlatform {
    type Json = Js;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<Js>, TransportError> {
        send(request).await.map_err(|e| TransportError {
            detail: describe(&e),
        })
    }

    fn parse_json(&self, text: &str) -> Option<Js> {
        JSON::parse(text).ok().map(Js)
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

#[cfg(not(feature = "gloo-net"))]
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_with_init(url: &str, init: &web_sys::RequestInit) -> js_sys::Promise;
}

#[cfg(not(feature = "gloo-net"))]
async fn send(request: HttpRequest) -> Result<HttpResponse<Js>, JsValue> {
    use wasm_bindgen_futures::JsFuture;
    let init = web_sys::RequestInit::new();
    init.set_method(request.method.as_str());
    // No cookies, ever: the session is a bearer token the page holds.
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
    let response: web_sys::Response = JsFuture::from(fetch_with_init(&request.url, &init))
        .await?
        .dyn_into()?;
    let status = response.status();
    let text = JsFuture::from(response.text()?).await?;
    let body = text.as_string().and_then(|t| JSON::parse(&t).ok()).map(Js);
    Ok(HttpResponse { status, body })
}

#[cfg(feature = "gloo-net")]
async fn send(request: HttpRequest) -> Result<HttpResponse<Js>, JsValue> {
    use gloo_net::http::{Method, RequestBuilder};
    let method = match request.method {
        consentry_core::Method::Get => Method::GET,
        consentry_core::Method::Post => Method::POST,
        consentry_core::Method::Put => Method::PUT,
    };
    let mut builder = RequestBuilder::new(&request.url)
        .method(method)
        .credentials(web_sys::RequestCredentials::Omit);
    if let Some(token) = &request.bearer {
        let mut value = String::from("Bearer ");
        value.push_str(token);
        builder = builder.header("authorization", &value);
    }
    if let Some(tag) = &request.if_match {
        builder = builder.header("if-match", tag);
    }
    let text = match (&request.json, &request.body) {
        (Some(json), _) => Some(json.clone()),
        (None, Some(body)) => Some(String::from(JSON::stringify(&wire_to_js(body)?)?)),
        (None, None) => None,
    };
    let req = match text {
        Some(text) => builder
            .header("content-type", "application/json")
            .body(text),
        None => builder.build(),
    }
    .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let response = req
        .send()
        .await
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    Ok(HttpResponse {
        status,
        body: JSON::parse(&text).ok().map(Js),
    })
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
