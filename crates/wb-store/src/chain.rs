//! Hash chains for the change journal and the audit log (defined in wb-core).

pub use wb_core::audit::{link, GENESIS};
