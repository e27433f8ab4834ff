#![doc = include_str!("../README.md")]

mod build;
mod release;
mod stack;
mod upload;

pub use build::{BuildError, BuildRequest, BuildResult, Builder, BuilderConfig, launch_command};
pub use stack::{StackError, StackOptions, build_stack, detect_mirror};
pub use upload::BUILTIN_BUILDPACKS;
