//! The whole plain-HTTP request path, from raw client bytes to the router's answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::serve(data);
});
