//! The router against real sockets on 127.0.0.1: small hyper upstreams that echo what they
//! received, a router on port 0, and clients speaking HTTP/1.1, HTTP/2, TLS and raw TCP.

mod access_log;
mod bad_input;
mod balancing;
mod canary;
mod failures;
mod forwarding;
mod lifecycle;
mod limits;
mod maintenance;
mod metrics;
mod pki;
mod routing;
mod streaming;
mod support;
mod tls;
