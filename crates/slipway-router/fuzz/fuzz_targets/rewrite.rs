//! Header rewriting: hop-by-hop stripping and the forwarding headers.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    upgrade: bool,
    http2: bool,
}

fuzz_target!(|input: Input| {
    slipway_router::fuzzing::rewrite(&input.headers, input.upgrade, input.http2);
});
