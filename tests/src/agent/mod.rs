//! The test agent: fetcher, executor launcher, and the executor API bookkeeping.

pub mod fetcher;
pub mod launcher;
