-- The periodic purge deletes rows by expiry, in small batches on the writer: each batch finds its
-- rows through these indexes instead of scanning the table.
CREATE INDEX used_tat_jtis_expires_at ON used_tat_jtis (expires_at);
CREATE INDEX used_codes_expires_at ON used_codes (expires_at);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX revoked_access_tokens_expires_at ON revoked_access_tokens (expires_at);
