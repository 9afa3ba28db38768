//! Command-line front ends: argument parsing and output formatting only; the work happens in
//! the library.

pub mod certs;
