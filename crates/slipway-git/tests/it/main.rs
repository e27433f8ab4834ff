//! Integration tests of slipway-git against the real `git`, pushing over real HTTP on
//! 127.0.0.1.
//!
//! This binary is also the pre-receive hook of the repositories the tests push to: with
//! `harness = false` it has its own `main`, which acts as `slipway git-hook pre-receive` when
//! called with those arguments and otherwise runs the tests through libtest-mimic.

mod push;
mod repos;
mod serve;
mod support;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["git-hook", "pre-receive"] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the hook");
        let code = runtime.block_on(slipway_git::run_pre_receive_hook());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    libtest_mimic::run(&Arguments::from_args(), tests()).exit_code()
}

/// Each test is an `async fn()` that panics on failure, run on its own runtime.
macro_rules! trials {
    ($($test:path),* $(,)?) => {
        vec![$(Trial::test(stringify!($test), || {
            support::block_on($test());
            Ok(())
        })),*]
    };
}

fn tests() -> Vec<Trial> {
    trials![
        push::accepted_push_streams_lines_and_lands,
        push::lines_reach_the_pusher_while_the_hook_runs,
        push::refused_push_leaves_the_ref_and_drops_the_objects,
        push::dropped_push_is_refused,
        push::second_push_reads_new_messages_and_pushed_tags,
        push::force_push_reads_messages_since_the_merge_base,
        push::deleting_main_is_refused_after_the_hook,
        push::unreachable_server_refuses_the_push,
        push::gzipped_push_body_is_inflated,
        push::large_chunked_push_lands,
        serve::clone_fetch_and_ls_remote_are_refused,
        serve::upload_pack_and_dumb_requests_get_403,
        serve::receive_pack_advertisement_is_served,
        repos::ensure_creates_a_bare_repo_with_the_hook,
        repos::hook_script_runs_an_exe_whose_path_needs_quoting,
        repos::remove_deletes_the_repo,
        repos::hook_listener_replaces_a_stale_socket_only,
    ]
}
