//! A Mesos 1.11 test master and agents in one process, for mesoflow's end-to-end tests.
//!
//! Apache Mesos cannot be installed where mesoflow is developed and tested, yet our scheduler and
//! executor binaries must run unchanged against real clusters. This crate therefore emulates a
//! master and its agents speaking the real v1 HTTP APIs (`/api/v1/scheduler` and
//! `/api/v1/executor`), and it is never more lenient than the real thing: exact media types,
//! `Mesos-Stream-Id` rules, offer and launch validation, acknowledgement-driven status updates.
//!
//! Layout: [`resources`] (resource arithmetic), [`agent`] (fetcher, launcher, executor API),
//! [`json`] (Mesos's JSON dialect), [`wire`] (protobuf conversions),
//! [`master`] (the master's bookkeeping as a pure state machine), [`http`] (media types), and
//! [`cluster`] (the tokio/axum shell that runs it all on 127.0.0.1 and exposes test hooks).

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod http;
pub mod json;
pub mod master;
pub mod resources;
pub mod wire;
pub mod workspace;
