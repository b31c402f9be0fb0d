//! Shared test support: real servers started by the tests.
pub mod fake_kube;
