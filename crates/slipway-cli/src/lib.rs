#![doc = include_str!("../README.md")]

mod cli;
mod client;
mod commands;
mod exit;
mod files;
mod git;
mod login_file;
mod netrc;
mod table;
mod token;

pub use cli::{Cli, ClientCommand, DEFAULT_URL, Env, GlobalOpts, run, run_in};
pub use client::{Client, ClientError, LogsQuery, RunOutput, RunReader, RunTerminal, RunWriter};
pub use exit::Exit;
pub use token::Token;
