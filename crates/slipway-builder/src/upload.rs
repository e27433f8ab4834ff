//! The one tar archive a build uploads into `/` of its container: the app's source under
//! `app/`, the built-in buildpacks under `buildpacks/`, the config vars under `env/`. Every
//! entry belongs to the stack's `app` user, so the build (which runs as `app`) can change the
//! source and clear the config vars and buildpacks before the container is committed.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use rust_embed::RustEmbed;
use slipway_types::ConfigVars;

/// uid and gid of the stack's `app` user.
pub const APP_ID: u64 = 1000;

/// Built-in buildpacks in detection order: the first whose `bin/detect` succeeds builds the app.
pub const BUILTIN_BUILDPACKS: &[&str] = &["python", "nodejs", "static", "procfile"];

#[derive(RustEmbed)]
#[folder = "../../buildpacks"]
struct Buildpacks;

/// Files of the source tree the builder reads before the build starts.
#[derive(Debug, Default)]
pub struct SourceFiles {
    pub procfile: Option<String>,
    /// `.buildpacks`: buildpack URLs or names, one a line.
    pub buildpacks: Option<String>,
    pub dockerfile: Option<String>,
    /// `.dockerignore`: what a Dockerfile build leaves out of its context.
    pub dockerignore: Option<String>,
    pub static_json: Option<String>,
}

impl SourceFiles {
    /// Reads the files at the root of a `git archive`-style tar that decide how it builds.
    pub fn scan(source_tar: &[u8]) -> io::Result<SourceFiles> {
        let mut files = SourceFiles::default();
        let mut archive = tar::Archive::new(source_tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let Some(relative) = relative_path(&entry.path()?)? else {
                continue;
            };
            let slot = match relative.to_str() {
                Some("Procfile") => &mut files.procfile,
                Some(".buildpacks") => &mut files.buildpacks,
                Some("Dockerfile") => &mut files.dockerfile,
                Some(".dockerignore") => &mut files.dockerignore,
                Some("static.json") => &mut files.static_json,
                _ => continue,
            };
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            *slot = Some(String::from_utf8_lossy(&data).into_owned());
        }
        Ok(files)
    }
}

pub struct UploadArchive {
    builder: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

impl UploadArchive {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }

    pub fn finish(self) -> io::Result<Bytes> {
        self.builder.into_inner().map(Bytes::from)
    }

    /// Copies a `git archive`-style tar under `app/`.
    pub fn add_source(&mut self, source_tar: &[u8]) -> io::Result<()> {
        let mut archive = tar::Archive::new(source_tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let entry_type = entry.header().entry_type();
            let kept = [
                tar::EntryType::Regular,
                tar::EntryType::Continuous,
                tar::EntryType::Directory,
                tar::EntryType::Symlink,
                tar::EntryType::Link,
            ];
            if !kept.contains(&entry_type) {
                continue;
            }
            let Some(relative) = relative_path(&entry.path()?)? else {
                continue;
            };
            let path = Path::new("app").join(&relative);
            let mode = entry.header().mode()? & 0o7777;
            let mtime = entry.header().mtime()?;
            match entry_type {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                    entry.read_to_end(&mut data)?;
                    self.file(&path, mode, mtime, &data)?;
                }
                tar::EntryType::Directory => self.dir(&path, mode, mtime)?,
                tar::EntryType::Symlink => {
                    let target = entry.link_name()?.ok_or_else(|| {
                        invalid(format!("symlink `{}` has no target", relative.display()))
                    })?;
                    self.symlink(&path, &target, mtime)?;
                }
                tar::EntryType::Link => {
                    let target = entry.link_name()?.ok_or_else(|| {
                        invalid(format!("hard link `{}` has no target", relative.display()))
                    })?;
                    let target = relative_path(&target)?.ok_or_else(|| {
                        invalid(format!("hard link `{}` has no target", relative.display()))
                    })?;
                    self.hard_link(&path, &Path::new("app").join(target), mtime)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies a folder of the host (a fetched buildpack) under `prefix`, keeping file modes
    /// and symlinks; `.git` is left out.
    pub fn add_host_dir(&mut self, prefix: &str, dir: &Path) -> io::Result<()> {
        let prefix = Path::new(prefix);
        self.dir(prefix, 0o755, 0)?;
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let mut entries: Vec<_> =
                std::fs::read_dir(dir.join(&relative))?.collect::<io::Result<_>>()?;
            entries.sort_by_key(std::fs::DirEntry::file_name);
            for entry in entries {
                if relative.as_os_str().is_empty() && entry.file_name() == ".git" {
                    continue;
                }
                let inner = relative.join(entry.file_name());
                let path = prefix.join(&inner);
                let metadata = std::fs::symlink_metadata(entry.path())?;
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    metadata.permissions().mode() & 0o7777
                };
                if metadata.is_symlink() {
                    let target = std::fs::read_link(entry.path())?;
                    self.symlink(&path, &target, 0)?;
                } else if metadata.is_dir() {
                    self.dir(&path, mode, 0)?;
                    pending.push(inner);
                } else if metadata.is_file() {
                    let data = std::fs::read(entry.path())?;
                    self.file(&path, mode, 0, &data)?;
                }
            }
        }
        Ok(())
    }

    /// Adds one file at `path` (relative to `/`).
    pub fn add_file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.file(Path::new(path), mode, 0, data)
    }

    /// Adds the embedded built-in buildpacks under `buildpacks/`. rust-embed keeps no file
    /// modes, so everything in a `bin/` folder is made executable.
    pub fn add_builtin_buildpacks(&mut self) -> io::Result<()> {
        for name in Buildpacks::iter() {
            let relative = Path::new(name.as_ref());
            if relative.components().count() < 2 {
                continue;
            }
            let Some(file) = Buildpacks::get(&name) else {
                continue;
            };
            let executable = relative
                .components()
                .nth(1)
                .is_some_and(|c| c.as_os_str() == "bin");
            let mode = if executable { 0o755 } else { 0o644 };
            let path = Path::new("buildpacks").join(relative);
            self.file(&path, mode, 0, &file.data)?;
        }
        Ok(())
    }

    /// Adds ENV_DIR: one file per config var, named after it and holding its exact value.
    pub fn add_env_dir(&mut self, config: &ConfigVars) -> io::Result<()> {
        self.dir(Path::new("env"), 0o700, 0)?;
        for (key, value) in config.iter() {
            self.file(
                &Path::new("env").join(key.as_str()),
                0o600,
                0,
                value.as_bytes(),
            )?;
        }
        Ok(())
    }

    fn header(entry_type: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(APP_ID);
        header.set_gid(APP_ID);
        header.set_size(0);
        header
    }

    /// Adds the parent folders not yet in the archive; the engine would otherwise create them
    /// owned by root, where the build cannot write.
    fn parents(&mut self, path: &Path) -> io::Result<()> {
        let mut missing: Vec<PathBuf> = path
            .ancestors()
            .skip(1)
            .filter(|dir| !dir.as_os_str().is_empty() && !self.dirs.contains(*dir))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in missing {
            self.dir(&dir, 0o755, 0)?;
        }
        Ok(())
    }

    fn dir(&mut self, path: &Path, mode: u32, mtime: u64) -> io::Result<()> {
        if self.dirs.contains(path) {
            return Ok(());
        }
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Directory, mode, mtime);
        self.builder.append_data(&mut header, path, io::empty())?;
        self.dirs.insert(path.to_owned());
        Ok(())
    }

    fn file(&mut self, path: &Path, mode: u32, mtime: u64, data: &[u8]) -> io::Result<()> {
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Regular, mode, mtime);
        header.set_size(data.len() as u64);
        self.builder.append_data(&mut header, path, data)
    }

    fn symlink(&mut self, path: &Path, target: &Path, mtime: u64) -> io::Result<()> {
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, mtime);
        self.builder.append_link(&mut header, path, target)
    }

    fn hard_link(&mut self, path: &Path, target: &Path, mtime: u64) -> io::Result<()> {
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Link, 0o644, mtime);
        self.builder.append_link(&mut header, path, target)
    }
}

/// The entry's path inside the app, `None` for the root itself; a path that climbs out of it
/// is an error.
pub(crate) fn relative_path(path: &Path) -> io::Result<Option<PathBuf>> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "entry `{}` points outside the app",
                    path.display()
                )));
            }
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Names of the built-in buildpacks that ship in the binary.
    fn embedded_buildpack_names() -> BTreeSet<String> {
        Buildpacks::iter()
            .filter_map(|path| {
                let (name, _) = path.split_once('/')?;
                Some(name.to_owned())
            })
            .collect()
    }

    struct Entry {
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn entries(tar: &[u8]) -> BTreeMap<String, Entry> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                let header = entry.header().clone();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (
                    path,
                    Entry {
                        kind: header.entry_type(),
                        mode: header.mode().unwrap(),
                        uid: header.uid().unwrap(),
                        link: header.link_name().unwrap().map(|l| l.display().to_string()),
                        data,
                    },
                )
            })
            .collect()
    }

    /// A tar like `git archive` writes: a pax global header, `./`-less paths, no root entry.
    fn git_archive() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut global = tar::Header::new_ustar();
        global.set_entry_type(tar::EntryType::XGlobalHeader);
        let comment = b"52 comment=0123456789abcdef0123456789abcdef01234567\n";
        global.set_size(comment.len() as u64);
        builder
            .append_data(&mut global, "pax_global_header", &comment[..])
            .unwrap();
        for (path, mode, data) in [
            (
                "Procfile",
                0o644,
                &b"web: python3 -m http.server $PORT\n"[..],
            ),
            ("bin/run", 0o755, &b"#!/bin/sh\n"[..]),
            ("deep/er/file.txt", 0o644, &b"x"[..]),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data).unwrap();
        }
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_mode(0o777);
        link.set_size(0);
        builder.append_link(&mut link, "run", "bin/run").unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn source_lands_under_app_owned_by_the_app_user() {
        let files = SourceFiles::scan(&git_archive()).unwrap();
        assert_eq!(
            files.procfile.as_deref(),
            Some("web: python3 -m http.server $PORT\n")
        );
        assert_eq!(files.buildpacks, None);
        assert_eq!(files.dockerfile, None);
        let mut upload = UploadArchive::new();
        upload.add_source(&git_archive()).unwrap();
        let tar = upload.finish().unwrap();
        let entries = entries(&tar);
        assert!(
            !entries
                .keys()
                .any(|path| path.contains("pax_global_header"))
        );
        for path in ["app", "app/bin", "app/deep", "app/deep/er"] {
            assert_eq!(entries[path].kind, tar::EntryType::Directory, "{path}");
        }
        assert!(entries.values().all(|entry| entry.uid == APP_ID));
        assert_eq!(entries["app/bin/run"].mode, 0o755);
        assert_eq!(entries["app/deep/er/file.txt"].data, b"x");
        assert_eq!(entries["app/run"].kind, tar::EntryType::Symlink);
        assert_eq!(entries["app/run"].link.as_deref(), Some("bin/run"));
    }

    #[test]
    fn source_paths_may_not_leave_the_app() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        {
            let name = b"../evil";
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        }
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let error = UploadArchive::new().add_source(&tar).unwrap_err();
        assert!(error.to_string().contains("`../evil`"), "{error}");
    }

    #[test]
    fn builtin_buildpacks_are_executable_and_complete() {
        let mut upload = UploadArchive::new();
        upload.add_builtin_buildpacks().unwrap();
        let entries = entries(&upload.finish().unwrap());
        for name in BUILTIN_BUILDPACKS {
            for script in ["detect", "compile", "release"] {
                let path = format!("buildpacks/{name}/bin/{script}");
                assert_eq!(entries[&path].mode, 0o755, "{path}");
                assert!(entries[&path].data.starts_with(b"#!/usr/bin/env bash"));
            }
        }
        assert!(!entries.contains_key("buildpacks/README.md"));
        assert_eq!(
            embedded_buildpack_names(),
            BUILTIN_BUILDPACKS.iter().map(|s| s.to_string()).collect()
        );
    }

    #[test]
    fn host_folders_keep_modes_and_symlinks_but_not_git() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::write(dir.path().join("bin/compile"), "#!/bin/sh\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("bin/compile"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("compile", dir.path().join("bin/build")).unwrap();
        let mut upload = UploadArchive::new();
        upload.add_host_dir("buildpacks/mine", dir.path()).unwrap();
        let entries = entries(&upload.finish().unwrap());
        assert_eq!(entries["buildpacks/mine/bin/compile"].mode, 0o755);
        assert_eq!(entries["buildpacks/mine/bin/compile"].uid, APP_ID);
        assert_eq!(
            entries["buildpacks/mine/bin/build"].link.as_deref(),
            Some("compile")
        );
        assert!(!entries.keys().any(|path| path.contains(".git")));
    }

    #[test]
    fn scan_finds_the_files_that_decide_the_build() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("Dockerfile", "FROM slipway/stack:trixie\n"),
            ("static.json", "{}"),
            (".buildpacks", "nodejs\n"),
            ("sub/Procfile", "web: no\n"),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, path, data.as_bytes())
                .unwrap();
        }
        let files = SourceFiles::scan(&builder.into_inner().unwrap()).unwrap();
        assert_eq!(
            files.dockerfile.as_deref(),
            Some("FROM slipway/stack:trixie\n")
        );
        assert_eq!(files.static_json.as_deref(), Some("{}"));
        assert_eq!(files.buildpacks.as_deref(), Some("nodejs\n"));
        assert_eq!(files.procfile, None);
    }

    #[test]
    fn env_dir_holds_one_private_file_per_var() {
        let config: ConfigVars = [
            ("GREETING".parse().unwrap(), "hello\nworld".to_owned()),
            ("EMPTY".parse().unwrap(), String::new()),
        ]
        .into_iter()
        .collect();
        let mut upload = UploadArchive::new();
        upload.add_env_dir(&config).unwrap();
        let entries = entries(&upload.finish().unwrap());
        assert_eq!(entries["env"].mode, 0o700);
        assert_eq!(entries["env/GREETING"].data, b"hello\nworld");
        assert_eq!(entries["env/GREETING"].mode, 0o600);
        assert_eq!(entries["env/EMPTY"].data, b"");
    }
}
