// Just enough of React for consentry/react in ui.spec.mjs: useRef, useEffect (with React's
// dependency rule), createElement, and one component rendered again and again by the test with
// new props objects, as a parent re-rendering does. Not a renderer: the container <div> is made
// once and handed to the ref.
const slots = [];
let slot = 0;
let pending = [];

export function useRef(initial) {
  const k = slot++;
  return (slots[k] ??= { current: initial });
}

export function useEffect(effect, deps) {
  const k = slot++;
  const prev = slots[k];
  const same = prev && deps && prev.deps && deps.length === prev.deps.length && deps.every((d, i) => Object.is(d, prev.deps[i]));
  if (same) return;
  pending.push(() => {
    prev?.cleanup?.();
    slots[k] = { deps, cleanup: effect() };
  });
}

export function createElement(type, props) {
  return { type, props };
}

/** Render `component(props)` into `container`, then run its effects (as a commit does). */
export function render(component, props, container) {
  slot = 0;
  pending = [];
  const out = component(props);
  const ref = out.props.ref;
  if (ref && !ref.current) {
    ref.current = document.createElement(out.type);
    container.append(ref.current);
  }
  for (const run of pending) run();
}
