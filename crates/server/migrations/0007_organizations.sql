-- Organizations (issue 13). A member is (organization, user id): users, consents and grants are keyed by both, so
-- the same user id in two organizations is two members. Rows written before this migration belong to the implicit
-- organization 'default' (a token profile that maps no organization claim).
CREATE TABLE organizations (
    organization_id TEXT PRIMARY KEY,
    name TEXT,
    -- The policy document (JSON, consentry_protocol::OrgPolicy) and its version: every change increments it, and the
    -- token paths read it with the row they already read (no extra round trip) to know whether a cached policy is stale.
    policy TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE users_v7 (
    organization_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT,
    name TEXT,
    roles TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
INSERT INTO users_v7 (organization_id, user_id, email, name, roles, profile_id, created_at, updated_at)
    SELECT 'default', user_id, email, name, roles, profile_id, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_v7 RENAME TO users;
CREATE TABLE consent_grants_v7 (
    organization_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    client_fingerprint TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id, client_id, redirect_uri, resource, scope)
);
INSERT INTO consent_grants_v7 (organization_id, user_id, client_id, redirect_uri, resource, scope, client_fingerprint, granted_at)
    SELECT 'default', user_id, client_id, redirect_uri, resource, scope, client_fingerprint, granted_at FROM consent_grants;
DROP TABLE consent_grants;
ALTER TABLE consent_grants_v7 RENAME TO consent_grants;
CREATE INDEX consent_grants_client ON consent_grants (client_id);
CREATE INDEX consent_grants_org_client ON consent_grants (organization_id, client_id);
ALTER TABLE token_families ADD COLUMN organization_id TEXT NOT NULL DEFAULT 'default';
DROP INDEX token_families_user_client;
CREATE INDEX token_families_member_client ON token_families (organization_id, user_id, client_id);
CREATE INDEX token_families_org_client ON token_families (organization_id, client_id);
-- Clients created through the admin API are first-party, like [[clients]]: an organization's first_party rule governs
-- them. Self-registered (DCR) clients are third-party.
ALTER TABLE clients ADD COLUMN first_party BIGINT NOT NULL DEFAULT 0;
