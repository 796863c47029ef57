//! Test setup shared by several integration-test files (each file is its own
//! crate and uses only part of it).
#![allow(dead_code, unused_imports)]

pub mod aggregate;
pub mod backup;
pub mod records;
