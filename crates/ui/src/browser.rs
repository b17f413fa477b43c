//! The few things the UI asks of the page itself (through web-sys: no `#[wasm_bindgen]` here).

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

/// The page's URL (`location.href`).
pub fn href() -> String {
    window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default()
}

/// True when the page is not the top-level document (it is inside a frame), or when that cannot
/// be told: the consent screen then refuses unless told to allow framing.
pub fn is_framed() -> bool {
    let Some(w) = window() else { return true };
    match w.top() {
        Ok(Some(top)) => !js_sys::Object::is(&top, &w),
        _ => true,
    }
}

/// The document's first element matching `selector`.
pub fn query(selector: &str) -> Option<web_sys::Element> {
    window()?.document()?.query_selector(selector).ok()?
}

/// Set the inline declarations of the element `selector` finds through CSSOM (`el.style = css`,
/// which is `el.style.cssText = css`), not as a `style` attribute: a Content Security Policy
/// without `'unsafe-inline'` refuses every `style` attribute a script sets (even an empty one),
/// and allows CSSOM.
pub fn set_style(selector: &str, css: &str) {
    if let Some(el) = query(selector) {
        let _ = js_sys::Reflect::set(&el, &JsValue::from_str("style"), &JsValue::from_str(css));
    }
}

/// Run `f` before the next repaint (`requestAnimationFrame`), once the view is in the DOM.
pub fn before_repaint(f: impl FnOnce() + 'static) {
    if let Some(w) = window() {
        let _ = w.request_animation_frame(Closure::once_into_js(f).unchecked_ref());
    }
}

/// Whether the browser may be sent to `location`: not to a scheme that runs script in the page or
/// shows something other than the client's redirect URI (`javascript:`, `data:`, `vbscript:`,
/// `blob:`, `file:`, `about:`). The scheme is read as browsers read it: leading spaces and
/// control characters dropped, tabs and newlines ignored, case-insensitively. Any other scheme
/// (http, https, and apps' own: `cursor://…`, `com.example.app:/cb`) and a scheme-less
/// location may go.
pub fn navigable(location: &str) -> bool {
    let mut scheme = String::new();
    for c in location.trim_start_matches(|c: char| c <= ' ').chars() {
        match c {
            ':' => return !consentry_core::is_forbidden_redirect_scheme(&scheme),
            '\t' | '\n' | '\r' => {}
            c => scheme.push(c.to_ascii_lowercase()),
        }
    }
    true
}

/// Send the browser to `location`, unless it is not [`navigable`] (the caller checks first and
/// shows why; this is the last line).
pub fn navigate(location: &str) {
    if !navigable(location) {
        return;
    }
    if let Some(w) = window() {
        // A refused navigation (a sandboxed frame) leaves the "redirecting" screen up: nothing
        // better can be done from here.
        let _ = w.location().assign(location);
    }
}

/// Add the stylesheet once per document. `nonce`: the page's Content Security Policy nonce, for a
/// `style-src` without `'unsafe-inline'` (the `<style>` element carries it; the first mount's wins).
pub fn inject_css(id: &str, css: &str, nonce: Option<&str>) {
    let Some(doc) = window().and_then(|w| w.document()) else {
        return;
    };
    if doc.get_element_by_id(id).is_some() {
        return;
    }
    let Ok(style) = doc.create_element("style") else {
        return;
    };
    style.set_id(id);
    if let Some(nonce) = nonce {
        let _ = style.set_attribute("nonce", nonce);
    }
    style.set_text_content(Some(css));
    if let Some(head) = doc.head() {
        let _ = head.append_child(&style);
    }
}

/// A date for people, in the browser's locale (`toLocaleDateString`).
pub fn local_date(unix_seconds: f64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(unix_seconds * 1000.0));
    let locale = window()
        .and_then(|w| w.navigator().language())
        .unwrap_or_else(|| String::from("en"));
    String::from(date.to_locale_date_string(&locale, &JsValue::UNDEFINED))
}
