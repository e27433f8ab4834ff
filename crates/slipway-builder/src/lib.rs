#![doc = include_str!("../README.md")]

mod addon_images;
mod build;
mod release;
mod stack;
mod upload;

pub use addon_images::{AddonImage, build_addon_image};
pub use build::{BuildError, BuildRequest, BuildResult, Builder, BuilderConfig, launch_command};
pub use stack::{StackError, StackOptions, build_stack, detect_mirror};
pub use upload::BUILTIN_BUILDPACKS;
