-- When an edge last said it still covers the name. Every edge marks all the
-- names it covers periodically (edge-fleetstore retention.rs); rows nobody
-- marked for acme.shared.retain_unwanted_hours are deleted by any edge's
-- sweep. Idempotent like 001.
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS wanted_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS wanted_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS certificates_wanted_at ON certificates (wanted_at);
CREATE INDEX IF NOT EXISTS approvals_wanted_at ON approvals (wanted_at);
