-- When a dynamically registered client was last used, so that clients nobody uses are deleted (registration.
-- unused_client_ttl_seconds, registration.idle_client_ttl_seconds). NULL: it never completed a flow. Redeeming a code
-- and a client_credentials token set it, a refresh moves its grant's token_families.last_used_at, which counts too.
ALTER TABLE clients ADD COLUMN last_used_at BIGINT;
-- Clients registered before this migration count as used at their last change (or their grants' last use): whether
-- they ever completed a flow is not known.
UPDATE clients SET last_used_at = COALESCE(
    (SELECT MAX(f.last_used_at) FROM token_families f WHERE f.client_id = clients.client_id),
    updated_at
);
CREATE INDEX clients_last_used ON clients (last_used_at, created_at);
CREATE INDEX token_families_client ON token_families (client_id, last_used_at);
