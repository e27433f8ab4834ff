#![doc = include_str!("../README.md")]

mod addon_images;
mod build;
mod buildpack;
mod cnb;
mod dockerfile;
mod dockerignore;
mod release;
mod stack;
mod static_site;
mod upload;

pub use addon_images::{AddonImage, build_addon_image};
pub use build::{
    BuildError, BuildRequest, BuildResult, Builder, BuilderConfig, cache_volume, launch_command,
};
pub use buildpack::{Buildpack, BuildpackError, parse_list as parse_buildpack_list};
pub use cnb::launch_processes;
pub use dockerfile::{BaseImage, base_images};
pub use stack::{StackError, StackOptions, build_stack, detect_mirror};
pub use static_site::StaticSite;
pub use upload::BUILTIN_BUILDPACKS;
