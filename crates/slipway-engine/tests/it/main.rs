//! `DockerEngine` against the real local Docker daemon. The tests import their own busybox
//! image (no registry is needed), use unique names so they run in parallel, and remove what
//! they created even when they fail. Without a daemon they fail; they never skip. The
//! swarm tests also need the engine to be a swarm manager.

mod attach;
mod containers;
mod images;
mod networking;
mod support;
mod swarm;
