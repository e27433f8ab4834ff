//! Host lookup: a request URI and `Host` header against a table of configured hosts.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    hosts: Vec<String>,
    uri: Vec<u8>,
    host_header: Vec<u8>,
}

fuzz_target!(|input: Input| {
    slipway_router::fuzzing::route(&input.hosts, &input.uri, &input.host_header);
});
