//! End-to-end tests: the real `slipway` binary, real `git push`, real Docker, requests through
//! the real router.

mod access;
mod addons;
mod alerts;
mod bad_input;
mod builds;
mod canary;
mod dashboard;
mod domains;
mod drains;
mod leader;
mod logs;
mod maintenance;
mod metrics;
mod pipelines;
mod push_to_live;
mod release_engine;
mod restart;
mod runs;
mod ssh;
mod support;
mod swarm;
mod swarm_registry;
mod swarm_runs;
