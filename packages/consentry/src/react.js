'use client';
// consentry/react: React components over the prebuilt UI. Client components: on the server they
// render an empty container; in the browser the wasm loads (dynamic import, once) and the Leptos
// view mounts inside that container in an effect. Safe under StrictMode's mount → unmount →
// remount: a mount that is cleaned up before the wasm arrives never starts (so a single-use
// Trusted Auth Token is sent once).
import { createElement, useEffect, useRef } from 'react';

import { ConsentryError } from './sdk.js';

export { ConsentryError };

let loading = null;
const load = () =>
  (loading ??= import('./index.js').catch((e) => {
    // A failed chunk load may be transient: the next mount tries again.
    loading = null;
    throw e;
  }));

// The same props in a new object: same keys, each value the same (`Object.is`; callbacks by
// identity), plain objects compared by their members down to `depth` levels (an inline
// `strings={{ ... }}` or `theme={{ dark: { ... } }}` is new on every render, yet unchanged).
function same(a, b, depth) {
  if (Object.is(a, b)) return true;
  if (depth === 0 || !isPlain(a) || !isPlain(b)) return false;
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same(a[k], b[k], depth - 1))
  );
}

function isPlain(v) {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function report(onError, error) {
  try {
    onError?.(error);
  } catch (e) {
    console.error('consentry: a callback threw', e);
  }
}

function useConsentryMount(fn, props, restartKey) {
  const ref = useRef(null);
  const handle = useRef(null);
  // The props the mounted component was given last (mount or update).
  const applied = useRef(null);
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    let cancelled = false;
    load().then(
      (m) => {
        if (cancelled || !ref.current) return;
        applied.current = latest.current;
        handle.current = m[fn](ref.current, latest.current);
      },
      (e) => {
        if (cancelled) return;
        report(
          latest.current.onError,
          new ConsentryError('network_error', `consentry/react: the consentry module failed to load: ${e?.message ?? e}`),
        );
      },
    );
    return () => {
      cancelled = true;
      handle.current?.unmount();
      handle.current = null;
      applied.current = null;
    };
  }, [restartKey]);

  // New words, theme or callbacks: applied without restarting the flow, and only when a prop
  // changed (a parent re-rendering with the same props costs nothing).
  useEffect(() => {
    if (!handle.current || same(applied.current, props, 3)) return;
    applied.current = props;
    handle.current.update(props);
  });

  return createElement('div', { ref, className: props.className, 'data-consentry': fn });
}

// What restarts the flow: another server or another signed-in user.
function restartKey(p) {
  const t = p.trustedAuthTokenParams ?? p.authTokenParams;
  return [p.baseUrl, t?.trustedAuthToken, t?.tokenProfileId ?? t?.tokenProfileID, p.url, p.allowFraming === true].join('\n');
}

export function IdentityProvider(props) {
  return useConsentryMount('mountIdentityProvider', props, restartKey(props));
}

export function ConnectedApps(props) {
  return useConsentryMount('mountConnectedApps', props, restartKey(props));
}

export function OrganizationConnectedApps(props) {
  return useConsentryMount('mountOrganizationConnectedApps', props, restartKey(props));
}

export function OrganizationPolicy(props) {
  return useConsentryMount('mountOrganizationPolicy', props, restartKey(props));
}
