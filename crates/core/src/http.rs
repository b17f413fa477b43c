//! The seam between the SDK's logic and the outside world.

use core::future::Future;

use consentry_protocol::{ErrorBody, ErrorCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// The HTTP methods the browser API uses.
pub enum Method {
    /// `GET`.
    Get,
    /// `POST` (with a JSON body).
    Post,
    /// `PUT` (with a JSON body).
    Put,
}

impl Method {
    /// The method's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A JSON request body as the flat list of snake_case members the browser API takes. Small on
/// purpose: the browser builds it into a JS object and lets `JSON.stringify` do the encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireObject(pub Vec<(&'static str, WireValue)>);

#[derive(Clone, Debug, PartialEq, Eq)]
/// A member value of a [`WireObject`].
pub enum WireValue {
    /// A JSON string.
    Str(String),
    /// A JSON array of strings.
    StrList(Vec<String>),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number (a small unsigned integer).
    U32(u32),
}

impl WireObject {
    pub(crate) fn push(&mut self, key: &'static str, value: WireValue) {
        self.0.push((key, value));
    }

    pub(crate) fn push_opt(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.push(key, WireValue::Str(v.to_owned()));
        }
    }

    /// The member `key`, for tests and for transports that want to look.
    pub fn get(&self, key: &str) -> Option<&WireValue> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// One browser API request, for the [`Platform`] to send.
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: Method,
    /// Absolute URL: the client's base URL plus the endpoint path.
    pub url: String,
    /// `Authorization: Bearer <session token>`.
    pub bearer: Option<String>,
    /// Sent as `application/json` when present.
    pub body: Option<WireObject>,
    /// A body already encoded as JSON text (sent as `application/json`; used instead of `body`).
    pub json: Option<String>,
    /// `If-Match` (an entity tag, quotes included), for an update that must not overwrite a
    /// change made in between.
    pub if_match: Option<String>,
}

/// An HTTP answer. `body` is `None` when the response was not JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse<J> {
    /// The HTTP status.
    pub status: u16,
    /// The parsed JSON body.
    pub body: Option<J>,
}

/// The request got no HTTP answer at all. `detail` is whatever the platform said (a browser's
/// `TypeError: Failed to fetch` says little, on purpose: CORS failures are opaque).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// What the platform reported.
    pub detail: String,
}

/// Read access to a parsed JSON value, as much as the SDK's logic needs.
pub trait JsonObject {
    /// The string member `key` of an object (`None` if absent, not a string, or not an object).
    fn str_member(&self, key: &str) -> Option<String>;
    /// The numeric member `key` of an object.
    fn num_member(&self, key: &str) -> Option<f64>;
    /// Whether the value is a JSON object (not an array).
    fn is_object(&self) -> bool;
    /// Whether the value is a JSON array.
    fn is_array(&self) -> bool;
    /// The boolean member `key` of an object.
    fn bool_member(&self, key: &str) -> Option<bool>;
    /// The member `key` of an object, whatever its type.
    fn member(&self, key: &str) -> Option<Self>
    where
        Self: Sized;
    /// The elements of an array (empty for anything else).
    fn elements(&self) -> Vec<Self>
    where
        Self: Sized;
    /// The value itself, when it is a string.
    fn as_string(&self) -> Option<String>;
    /// The member names of an object (empty for anything else).
    fn keys(&self) -> Vec<String>;
}

/// HTTP, JSON and the clock.
pub trait Platform {
    /// The platform's parsed JSON value.
    type Json: JsonObject;

    /// Send one request. Never follows the caller's navigation; never sends cookies.
    fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse<Self::Json>, TransportError>>;

    /// Parse JSON text (`None` when it is not JSON).
    fn parse_json(&self, text: &str) -> Option<Self::Json>;

    /// Seconds since the Unix epoch.
    fn now_unix_seconds(&self) -> f64;
}

/// A Consentry error body inside `json`, if it is one with a code this SDK knows.
pub(crate) fn error_body<J: JsonObject>(json: &J) -> Option<ErrorBody> {
    let error = ErrorCode::from_wire(&json.str_member("error")?)?;
    Some(ErrorBody {
        error,
        error_description: json.str_member("error_description").unwrap_or_default(),
        redirect_uri: json.str_member("redirect_uri"),
        client_name: json.str_member("client_name"),
        organization_name: json.str_member("organization_name"),
    })
}
