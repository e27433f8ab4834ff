#![doc = include_str!("../README.md")]

mod command;
mod error;
mod hook;
mod http;
mod reader;
mod refs;
mod repos;

pub use error::GitError;
pub use hook::{HookListener, Push, run_pre_receive_hook};
pub use reader::RepoReader;
pub use refs::{RefUpdate, is_object_id, is_zero_id};
pub use repos::Repos;
