//! A deliberately small element vocabulary over Leptos's renderer (tachys).
//!
//! Every `view!` shape is a distinct Rust type, and each one instantiates the renderer's build,
//! rebuild, mount and unmount code again: written with `view!`, the two components cost ≈ 56 KB
//! of gzipped wasm on top of Leptos itself. Here every element is the SAME type — a custom
//! element (any tag), a `Vec<AnyAttribute>` and a `Vec<AnyView>` — so the renderer is
//! instantiated once for the whole UI. Reactivity stays Leptos's (reactive_graph): a component's top-level
//! closure re-renders its state with these elements.

use tachys::html::attribute::any_attribute::{AnyAttribute, IntoAnyAttribute};
use tachys::html::attribute::custom::custom_attribute;
use tachys::html::element::custom;
use tachys::html::event as ev;
use tachys::html::property::prop;
use tachys::prelude::*;
use wasm_bindgen::JsValue;

/// One element under construction.
pub struct El {
    tag: &'static str,
    attrs: Vec<AnyAttribute>,
    children: Vec<AnyView>,
}

/// `<tag class="...">`. Tags are written in upper case, as the DOM reports them (`tagName`):
/// tachys compares a custom element's tag with the live node's `tagName` on every re-render and
/// builds a new node when they differ, so a lower-case tag would replace every element of the
/// card on every re-render (losing focus and selection) instead of updating it in place.
#[inline(never)]
pub fn el(tag: &'static str, class: &'static str) -> El {
    let mut e = El {
        tag,
        attrs: Vec::new(),
        children: Vec::new(),
    };
    if !class.is_empty() {
        e = e.attr("class", class);
    }
    e
}

impl El {
    /// An attribute; the value is text (escaped by the DOM, never parsed as markup).
    #[inline(never)]
    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.attrs
            .push(custom_attribute(name, value.into()).into_any_attr());
        self
    }

    /// A boolean attribute (`disabled`), present only when `on`.
    pub fn flag(self, name: &'static str, on: bool) -> Self {
        if on { self.attr(name, "") } else { self }
    }

    /// A DOM property (`checked`, `value`): set on every render, so the control shows the state
    /// even after the user changed it (an attribute would only set its default).
    #[inline(never)]
    pub fn prop(mut self, name: &'static str, value: JsValue) -> Self {
        self.attrs.push(prop(name, value).into_any_attr());
        self
    }

    pub fn on_click(mut self, f: impl FnMut(ev::MouseEvent) + 'static) -> Self {
        let f: Box<dyn FnMut(ev::MouseEvent)> = Box::new(f);
        self.attrs.push(ev::on(ev::click, f).into_any_attr());
        self
    }

    /// A text child.
    #[inline(never)]
    pub fn text(mut self, s: impl Into<String>) -> Self {
        self.children.push(s.into().into_any());
        self
    }

    #[inline(never)]
    pub fn child(mut self, c: AnyView) -> Self {
        self.children.push(c);
        self
    }

    pub fn child_opt(self, c: Option<AnyView>) -> Self {
        match c {
            Some(c) => self.child(c),
            None => self,
        }
    }

    pub fn children(mut self, cs: impl IntoIterator<Item = AnyView>) -> Self {
        self.children.extend(cs);
        self
    }

    #[inline(never)]
    pub fn view(self) -> AnyView {
        custom(self.tag)
            .add_any_attr(self.attrs)
            .child(self.children)
            .into_any()
    }
}

/// Several siblings as one view.
pub fn fragment(cs: Vec<AnyView>) -> AnyView {
    cs.into_any()
}
