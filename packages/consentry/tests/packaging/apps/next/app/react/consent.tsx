'use client';
// Callbacks are functions, so the consent screen lives in a client component. Every event re-renders
// this component with new inline props: the flow must not restart (the token is single-use).
import { useState } from 'react';
import { IdentityProvider } from 'consentry/react';

export default function Consent({ baseUrl, trustedAuthToken }: { baseUrl: string; trustedAuthToken: string }) {
  const [events, setEvents] = useState<string[]>([]);
  const [location, setLocation] = useState<string | null>(null);
  return (
    <>
      <IdentityProvider
        baseUrl={baseUrl}
        trustedAuthTokenParams={{ trustedAuthToken, tokenProfileId: 'default' }}
        theme={{ borderRadius: '6px' }}
        onEvent={(e) => setEvents((seen) => [...seen, e.type])}
        onBeforeRedirect={(l) => {
          setLocation(l);
          return false;
        }}
      />
      {location && (
        <pre id="consentry-result" data-status="ok">
          {JSON.stringify({ redirectUri: location, events })}
        </pre>
      )}
    </>
  );
}
