//! The one integration test binary (each extra tests/*.rs would link
//! DataFusion again). Modules by area; `pg` starts a real PostgreSQL.

mod architecture;
mod cli;
mod common;
mod crash;
mod delta;
mod fake_spotify;
mod fuzz;
mod pg;
mod pipeline;
mod postgres_sync;
mod postgres_tls;
mod report;
mod s3;
mod spotify_api;
mod spotify_export;
