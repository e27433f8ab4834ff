//! End-to-end tests: the real `slipway` binary, real `git push`, real Docker, requests through
//! the real router.

mod access;
mod addons;
mod bad_input;
mod builds;
mod dashboard;
mod domains;
mod logs;
mod maintenance;
mod push_to_live;
mod release_engine;
mod restart;
mod runs;
mod ssh;
mod support;
