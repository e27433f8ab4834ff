//! End-to-end tests: the real `slipway` binary, real `git push`, real Docker, requests through
//! the real router.

mod addons;
mod bad_input;
mod domains;
mod logs;
mod push_to_live;
mod release_engine;
mod runs;
mod support;
