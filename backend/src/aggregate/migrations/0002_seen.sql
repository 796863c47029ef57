-- Event ids already counted (issue 13 §3): a record delivered twice (the
-- edge's at-least-once shipping, a `replay` of a window) is counted once.
-- Written in the same transaction as the rollups; rows older than the
-- dedupe window (by the edge's receive time) are pruned.
CREATE TABLE agg_seen (
    event_id    TEXT   NOT NULL PRIMARY KEY,
    site_id     TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX agg_seen_received_at ON agg_seen (received_at);

-- Per site and hour bucket (by receive time): events not counted because
-- their id had been counted already, for `edge-backend audit`.
CREATE TABLE agg_audit (
    site_id      TEXT   NOT NULL,
    bucket_start BIGINT NOT NULL,
    duplicates   BIGINT NOT NULL,
    PRIMARY KEY (site_id, bucket_start)
);

-- Records sent to the dead-letter topic, written in the same transaction as
-- the offsets that skip them (no content: where, when and why only).
CREATE TABLE agg_dead_letters (
    topic         TEXT   NOT NULL,
    partition_id  BIGINT NOT NULL,
    record_offset BIGINT NOT NULL,
    site_id       TEXT,
    timestamp_ms  BIGINT NOT NULL,
    reason        TEXT   NOT NULL,
    PRIMARY KEY (topic, partition_id, record_offset)
);
