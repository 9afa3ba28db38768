//! Helpers for the tests that drive the real binary: [`process`] starts and talks to it,
//! [`docker`] puts it in an image; the rest comes from the workspace's shared test kit.
#![allow(dead_code)] // each test binary uses its own subset

pub use quicswim_testkit::*;

#[cfg(unix)]
pub mod docker;
#[cfg(unix)]
pub mod process;
