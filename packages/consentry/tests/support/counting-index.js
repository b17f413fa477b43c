// `consentry` as consentry/react imports it (react.html maps /dist/index.js here), counting the
// update() calls the wrapper makes (window.updates).
import * as real from '/dist/index.js?real';

export * from '/dist/index.js?real';

window.updates = [];

export function mountIdentityProvider(element, options) {
  const handle = real.mountIdentityProvider(element, options);
  return {
    ready: handle.ready,
    update(next) {
      window.updates.push(next);
      handle.update(next);
    },
    unmount: () => handle.unmount(),
  };
}
