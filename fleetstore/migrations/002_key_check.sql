-- Which storage key sealed each row: the key's check id
-- (StorageKey::check_hex in edge-acme). '' = written before this column
-- existed (unknown key). A storage-key rotation re-seals the rows sealed
-- under the old key (edge-fleetstore rekey.rs). Idempotent like 001.
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS key_check text NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS key_check text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS certificates_key_check ON certificates (key_check, name);
