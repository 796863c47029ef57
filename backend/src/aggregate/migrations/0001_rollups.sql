-- Aggregation store, one schema for SQLite and PostgreSQL: only portable
-- types (TEXT, BIGINT) and statements. Times are ms since the Unix epoch.

-- Next Kafka offset to read per consumer group and partition, written in the
-- same transaction as the rollup rows it accounts for.
CREATE TABLE agg_offsets (
    group_id     TEXT   NOT NULL,
    topic        TEXT   NOT NULL,
    partition_id BIGINT NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition_id)
);

-- One row per site, bucket size ('minute' | 'hour') and bucket start.
-- visitors is exact (from agg_bucket_visitors); visitors_hll is a base64
-- Apache DataSketches HLL sketch (lg_k 12, HLL_8) for merging across buckets.
CREATE TABLE agg_buckets (
    site_id       TEXT   NOT NULL,
    bucket        TEXT   NOT NULL,
    bucket_start  BIGINT NOT NULL,
    pageviews     BIGINT NOT NULL,
    custom_events BIGINT NOT NULL,
    visitors      BIGINT NOT NULL,
    visitors_hll  TEXT   NOT NULL,
    PRIMARY KEY (site_id, bucket, bucket_start)
);

-- Visitor ids (hex) seen in a bucket: makes the per-bucket count exact.
CREATE TABLE agg_bucket_visitors (
    site_id      TEXT   NOT NULL,
    bucket       TEXT   NOT NULL,
    bucket_start BIGINT NOT NULL,
    visitor_id   TEXT   NOT NULL,
    PRIMARY KEY (site_id, bucket, bucket_start, visitor_id)
);

-- Counts per dimension value: pages, referrers, devices, browsers, os
-- (page views) and events (custom event names).
CREATE TABLE agg_dimensions (
    site_id      TEXT   NOT NULL,
    bucket       TEXT   NOT NULL,
    bucket_start BIGINT NOT NULL,
    dimension    TEXT   NOT NULL,
    value        TEXT   NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (site_id, bucket, bucket_start, dimension, value)
);
