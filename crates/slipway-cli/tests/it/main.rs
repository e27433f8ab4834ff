//! The client against a small in-process fake of the REST API: the typed `Client` call by
//! call, and whole commands through `run_in` with a temporary home and git repository.

mod cli;
mod client;
mod fake;
mod logs;
