-- Remembered consent is bound to the redirect URI it was given for (the registered entry that
-- matched) and to a fingerprint of the client's metadata (`Client::consent_fingerprint`): a new
-- redirect URI, or a client whose registration changed, asks again. Consents given before this
-- migration carry neither ('') and so never skip the screen again (connected apps still lists and
-- revokes them).
CREATE TABLE consent_grants_v3 (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    client_fingerprint TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, redirect_uri, resource, scope)
);
INSERT INTO consent_grants_v3 (user_id, client_id, redirect_uri, resource, scope, client_fingerprint, granted_at)
    SELECT user_id, client_id, '', resource, scope, '', granted_at FROM consent_grants;
DROP TABLE consent_grants;
ALTER TABLE consent_grants_v3 RENAME TO consent_grants;
-- Revocation and delete-by-client keep an index led by client_id.
CREATE INDEX consent_grants_client ON consent_grants (client_id);
