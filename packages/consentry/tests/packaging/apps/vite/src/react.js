// The authorization page on consentry/react in a Vite React app, without JSX (so without a Vite
// plugin): StrictMode on, the way React apps run. The test hands over the server URL and a Trusted
// Auth Token as window.consentryTest; the result shows once the screen wants to redirect.
import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { IdentityProvider } from 'consentry/react';

function Consent({ baseUrl, trustedAuthToken }) {
  const [events, setEvents] = useState([]);
  const [location, setLocation] = useState(null);
  return h(
    'main',
    null,
    h(IdentityProvider, {
      baseUrl,
      trustedAuthTokenParams: { trustedAuthToken, tokenProfileId: 'default' },
      onEvent: (e) => setEvents((seen) => [...seen, e.type]),
      onBeforeRedirect: (l) => {
        setLocation(l);
        return false;
      },
    }),
    location && h('pre', { id: 'consentry-result', 'data-status': 'ok' }, JSON.stringify({ redirectUri: location, events })),
  );
}

export function render(root) {
  createRoot(root).render(h(StrictMode, null, h(Consent, window.consentryTest)));
}
