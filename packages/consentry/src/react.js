'use client';
// consentry/react: React components over the prebuilt UI. Client components: on the server they
// render an empty container; in the browser the wasm loads (dynamic import, once) and the Leptos
// view mounts inside that container in an effect. Safe under StrictMode's mount → unmount →
// remount: a mount that is cleaned up before the wasm arrives never starts (so a single-use
// Trusted Auth Token is sent once).
import { createElement, useEffect, useRef } from 'react';

export { ConsentryError } from './sdk.js';

let loading = null;
const load = () => (loading ??= import('./index.js'));

function useConsentryMount(fn, props, restartKey) {
  const ref = useRef(null);
  const handle = useRef(null);
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    let cancelled = false;
    load().then(
      (m) => {
        if (cancelled || !ref.current) return;
        handle.current = m[fn](ref.current, latest.current);
      },
      (e) => {
        if (!cancelled) latest.current.onError?.(e);
      },
    );
    return () => {
      cancelled = true;
      handle.current?.unmount();
      handle.current = null;
    };
  }, [restartKey]);

  // New words, theme or callbacks: applied without restarting the flow.
  useEffect(() => {
    handle.current?.update(props);
  });

  return createElement('div', { ref, className: props.className, 'data-consentry': fn });
}

// What restarts the flow: another server or another signed-in user.
function restartKey(p) {
  const t = p.trustedAuthTokenParams;
  return [p.baseUrl, t?.trustedAuthToken, t?.tokenProfileId, p.url, p.allowFraming === true].join('\n');
}

export function IdentityProvider(props) {
  return useConsentryMount('mountIdentityProvider', props, restartKey(props));
}

export function ConnectedApps(props) {
  return useConsentryMount('mountConnectedApps', props, restartKey(props));
}
