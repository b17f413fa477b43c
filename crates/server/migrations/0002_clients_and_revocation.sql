-- Dynamically registered clients (RFC 7591/7592). Secrets and registration access tokens are
-- stored as SHA-256 digests. `metadata` is the registered client metadata as JSON.
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT,
    registration_token_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Access tokens revoked one by one (RFC 7009), until they expire. Tokens of a revoked grant are
-- recognised through their grant id instead.
CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
