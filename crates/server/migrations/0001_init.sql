-- Consentry schema v1, one SQL for SQLite and PostgreSQL. Times are Unix seconds. Secrets (refresh tokens) are stored as
-- SHA-256 hex digests, never in clear.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    email TEXT,
    name TEXT,
    roles TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Keyed by the token's issuer, not the profile: profiles that accept the same tokens must not
-- each accept one replay.
CREATE TABLE used_tat_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE TABLE consent_grants (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, resource, scope)
);
CREATE TABLE token_families (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    resources TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX token_families_user_client ON token_families (user_id, client_id);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE TABLE used_codes (
    code_id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
