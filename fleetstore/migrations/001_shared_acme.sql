-- The fleet's shared ACME state (edge-fleetstore). Idempotent: every edge
-- runs it at start, under an advisory lock so concurrent starts do not race
-- on the catalogue. Private keys are stored only sealed with the storage key.

CREATE SEQUENCE IF NOT EXISTS lease_fences;
CREATE SEQUENCE IF NOT EXISTS certificate_versions;

-- One row per name ever leased; rows are never deleted, so a fencing token
-- is never reused (they come from lease_fences and only grow).
CREATE TABLE IF NOT EXISTS leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    fence bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS certificates (
    name text PRIMARY KEY,
    key_type text NOT NULL,
    chain_pem text NOT NULL,
    key_sealed bytea NOT NULL,
    not_after bigint NOT NULL,
    -- fencing token of the lease under which this version was written
    fence bigint NOT NULL,
    -- from certificate_versions; edges poll for versions above the last seen
    version bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_version ON certificates (version);

CREATE TABLE IF NOT EXISTS accounts (
    slot text PRIMARY KEY,
    credentials_sealed bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS approvals (
    name text PRIMARY KEY,
    approved_at bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS http_challenges (
    token text PRIMARY KEY,
    name text NOT NULL,
    key_authorization text NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS alpn_challenges (
    name text PRIMARY KEY,
    digest bytea NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS backoff (
    name text PRIMARY KEY,
    failures integer NOT NULL,
    until_unix bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS issuance (
    name text NOT NULL,
    at_unix bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS issuance_at ON issuance (at_unix);
CREATE INDEX IF NOT EXISTS issuance_name_at ON issuance (name, at_unix);

-- Charges one order start of p_name against both issuance limits (a sliding
-- day per name, a sliding hour overall), or says which limit refuses and for
-- how many seconds. Serialised per schema, so the fleet cannot overspend.
CREATE OR REPLACE FUNCTION acme_try_charge(
    p_name text, p_now bigint, p_per_hour integer, p_per_name_per_day integer
) RETURNS TABLE (scope text, wait_seconds bigint) LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    oldest bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.issuance'));
    DELETE FROM issuance WHERE at_unix <= p_now - 86400;
    SELECT count(*), min(at_unix) INTO n, oldest
        FROM issuance WHERE name = p_name AND at_unix > p_now - 86400;
    IF n >= p_per_name_per_day THEN
        scope := 'name'; wait_seconds := GREATEST(oldest + 86400 - p_now, 1);
        RETURN NEXT; RETURN;
    END IF;
    SELECT count(*), min(at_unix) INTO n, oldest
        FROM issuance WHERE at_unix > p_now - 3600;
    IF n >= p_per_hour THEN
        scope := 'global'; wait_seconds := GREATEST(oldest + 3600 - p_now, 1);
        RETURN NEXT; RETURN;
    END IF;
    INSERT INTO issuance (name, at_unix) VALUES (p_name, p_now);
    scope := 'charged'; wait_seconds := 0;
    RETURN NEXT;
END $$;
