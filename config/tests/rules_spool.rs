//! Validation rules of `[spool]`: defaults, relative directory, errors on
//! their lines, and which changes need a restart.
#![allow(clippy::unwrap_used)]
mod common;
use std::path::Path;

use common::*;
use edge_config::non_reloadable_changes;

#[test]
fn defaults_and_relative_dir_resolve_against_the_config_dir() {
    let config = valid(&http_only("")).config;
    assert_eq!(config.spool.dir, None);
    assert_eq!(config.spool.max_bytes, 1 << 30);
    assert_eq!(config.spool.min_free_disk_bytes, 256 << 20);
    assert_eq!(config.spool.segment_bytes, 16 << 20);
    assert_eq!(config.spool.commit_delay_us, 1_000);
    assert_eq!(config.spool.commit_delay_min_appends, 4);
    assert_eq!(
        config.spool.dir_in(&config.data_dir),
        Path::new("/etc/edge/data/spool")
    );
    let config = valid(&http_only(
        "[spool]\ndir = \"q\"\nmax_bytes = 65536\nsegment_bytes = 4096\n",
    ))
    .config;
    assert_eq!(config.spool.dir.as_deref(), Some(Path::new("/etc/edge/q")));
    assert_eq!(config.spool.max_bytes, 65_536);
}

#[test]
fn bad_values_are_refused_on_their_lines() {
    let text = http_only("[spool]\nmax_bytes = 100\nsegment_bytes = 4096\n");
    assert_single(
        &text,
        "max_bytes",
        "spool.max_bytes",
        "100 is out of range, expected 65536..=17592186044416",
    );
    let text = http_only("[spool]\nmax_bytes = 65536\nsegment_bytes = 131072\n");
    assert_single(
        &text,
        "segment_bytes",
        "spool.segment_bytes",
        "131072 is larger than spool.max_bytes (65536)",
    );
    let text = http_only("[spool]\ncommit_delay_us = 100001\n");
    assert_single(
        &text,
        "commit_delay_us",
        "spool.commit_delay_us",
        "100001 is out of range, expected 0..=100000",
    );
    let text = http_only("[spool]\ncommit_delay_min_appends = 0\n");
    assert_single(
        &text,
        "commit_delay_min_appends",
        "spool.commit_delay_min_appends",
        "0 is out of range, expected 1..=100000",
    );
    let text = http_only("[spool]\nfsync = \"interval\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "fsync")));
    let text = http_only("[spool]\nmax_size = 1\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "max_size")));
}

#[test]
fn bounds_reload_and_the_directory_needs_a_restart() {
    let old = valid(&http_only("")).config;
    let new = valid(&http_only(
        "[spool]\nmax_bytes = 65536\nsegment_bytes = 4096\nmin_free_disk_bytes = 0\n\
         commit_delay_us = 0\ncommit_delay_min_appends = 9\n",
    ))
    .config;
    assert_eq!(
        non_reloadable_changes(&old, &new),
        vec![
            "spool.segment_bytes: changed from 16777216 to 4096; spool.segment_bytes needs a restart"
        ]
    );
    let new = valid(&http_only(
        "[spool]\nmax_bytes = 65536\nsegment_bytes = 16384\n",
    ))
    .config;
    let mut same_segments = new.clone();
    same_segments.spool.segment_bytes = old.spool.segment_bytes;
    assert!(non_reloadable_changes(&old, &same_segments).is_empty());
    let moved = valid(&http_only("[spool]\ndir = \"/srv/spool\"\n")).config;
    assert_eq!(
        non_reloadable_changes(&old, &moved),
        vec![
            "spool.dir: changed from /etc/edge/data/spool to /srv/spool; spool.dir needs a restart"
        ]
    );
}
