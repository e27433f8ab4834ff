//! Cloud Native Buildpacks: what a buildpack's `launch.toml` declares. `build.sh` runs the
//! buildpack (`bin/detect`, `bin/build` with a layers folder) and hands the file to the
//! builder, which turns its processes into process types like a Procfile's.

use std::collections::BTreeMap;

use serde::Deserialize;
use slipway_types::ProcessType;

use crate::dockerfile::shell_words;

#[derive(Deserialize)]
struct LaunchToml {
    #[serde(default)]
    processes: Vec<RawProcess>,
}

#[derive(Deserialize)]
struct RawProcess {
    #[serde(rename = "type")]
    process_type: String,
    command: Command,
    #[serde(default)]
    args: Vec<String>,
    /// Before buildpack API 0.9 a string command ran through a shell unless `direct`.
    #[serde(default)]
    direct: bool,
    #[serde(rename = "working-dir")]
    working_dir: Option<String>,
}

/// Buildpack API 0.9 and later: an argv; before: a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Command {
    Argv(Vec<String>),
    Text(String),
}

/// The process types a `launch.toml` declares, each as a bash command line.
pub fn launch_processes(toml_text: &str) -> Result<BTreeMap<ProcessType, String>, String> {
    let launch: LaunchToml = toml::from_str(toml_text).map_err(|error| error.to_string())?;
    launch
        .processes
        .into_iter()
        .map(|process| {
            let process_type: ProcessType = process
                .process_type
                .parse()
                .map_err(|error: slipway_types::NameError| error.to_string())?;
            let mut line = match process.command {
                Command::Argv(argv) if argv.is_empty() => {
                    return Err(format!("process `{process_type}` has an empty command"));
                }
                Command::Argv(mut argv) => {
                    argv.extend(process.args);
                    shell_words(&argv)
                }
                Command::Text(text) if process.direct => {
                    let mut argv = vec![text];
                    argv.extend(process.args);
                    shell_words(&argv)
                }
                Command::Text(text) if process.args.is_empty() => text,
                Command::Text(text) => format!("{text} {}", shell_words(&process.args)),
            };
            if let Some(dir) = process.working_dir {
                line = format!("cd {} && {line}", shell_words(&[dir]));
            }
            Ok((process_type, line))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_processes_of_api_0_10() {
        let processes = launch_processes(
            r#"
            [[processes]]
            type = "web"
            command = ["node", "server.js"]
            args = ["--title", "hello world"]
            default = true

            [[processes]]
            type = "worker"
            command = ["python3", "-u", "worker.py"]
            working-dir = "/app/jobs"
            "#,
        )
        .unwrap();
        assert_eq!(
            processes[&ProcessType::web()],
            "node server.js --title 'hello world'"
        );
        assert_eq!(
            processes[&"worker".parse().unwrap()],
            "cd /app/jobs && python3 -u worker.py"
        );
    }

    #[test]
    fn string_commands_of_older_apis_run_through_the_shell() {
        let processes = launch_processes(
            "[[processes]]\ntype = \"web\"\ncommand = \"exec gunicorn app:app --bind 0.0.0.0:$PORT\"\n\n[[processes]]\ntype = \"direct\"\ncommand = \"/bin/serve\"\nargs = [\"$x\"]\ndirect = true\n",
        )
        .unwrap();
        assert_eq!(
            processes[&ProcessType::web()],
            "exec gunicorn app:app --bind 0.0.0.0:$PORT"
        );
        assert_eq!(processes[&"direct".parse().unwrap()], "/bin/serve '$x'");
    }

    #[test]
    fn no_processes_and_bad_files() {
        assert!(launch_processes("").unwrap().is_empty());
        assert!(
            launch_processes("[[labels]]\nkey = \"a\"\nvalue = \"b\"\n")
                .unwrap()
                .is_empty()
        );
        assert!(
            launch_processes("[[processes]]\ntype = \"Web Server\"\ncommand = [\"x\"]\n")
                .unwrap_err()
                .contains("`Web Server`")
        );
        assert!(
            launch_processes("[[processes]]\ntype = \"web\"\ncommand = []\n")
                .unwrap_err()
                .contains("empty command")
        );
        assert!(launch_processes("[[processes]\n").is_err());
    }
}
