//! Shared by several test binaries; each uses only part of it.
#![allow(dead_code)]

pub mod gateway;
#[path = "../../../tests/support/memcg.rs"]
pub mod memcg;
pub mod mock;
pub mod node;
