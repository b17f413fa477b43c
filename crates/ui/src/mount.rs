//! Mounting a view into the page's element, and the task spawner the components use.
//!
//! This is what `leptos::mount::mount_to` and `leptos::task::spawn_local` do, over the same
//! crates (tachys, reactive_graph, any_spawner): depending on `leptos` itself would link its
//! server functions into a client-only UI (see Cargo.toml).

use std::future::Future;

use any_spawner::Executor;
use reactive_graph::owner::Owner;
use tachys::prelude::*;
use tachys::view::any_view::AnyViewState;

/// A mounted view. Dropping it unmounts the view and disposes of everything its reactive owner
/// holds (signals, effects, stored values).
pub struct Mounted {
    // Dropped after `drop` below has taken the view out of the DOM, and before the view's state
    // (the order of leptos's own `UnmountHandle`): the last handle on the owner, so its cleanups
    // run and its signals and stored values go.
    _owner: Owner,
    state: AnyViewState,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.state.unmount();
    }
}

/// Build `view` under a new reactive owner and append it to `parent`.
pub fn mount_to(parent: &web_sys::HtmlElement, view: impl FnOnce() -> AnyView) -> Mounted {
    // An error means that the wasm-bindgen executor is already the global one: nothing to do.
    let _ = Executor::init_wasm_bindgen();
    let owner = Owner::new();
    let state = owner.with(|| {
        let mut state = view().build();
        state.mount(parent, None);
        state
    });
    Mounted {
        _owner: owner,
        state,
    }
}

/// Run a future on the browser's event loop (wasm-bindgen-futures, through any_spawner).
pub fn spawn_local(fut: impl Future<Output = ()> + 'static) {
    Executor::spawn_local(fut);
}
