//! Procfile parsing: `type: command` per line, `#` comments and blank lines ignored.

use std::collections::BTreeMap;

use crate::names::ProcessType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcfileError {
    #[error("Procfile line {line}: expected `type: command`, found `{text}`")]
    Syntax { line: usize, text: String },
    #[error(
        "Procfile line {line}: process type `{name}` is invalid: use up to 30 lowercase letters, digits, `_` or `-`, starting with a letter"
    )]
    BadType { line: usize, name: String },
    #[error("Procfile line {line}: process type `{name}` has no command")]
    EmptyCommand { line: usize, name: String },
    #[error("Procfile line {line}: process type `{name}` is defined twice")]
    Duplicate { line: usize, name: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    processes: BTreeMap<ProcessType, String>,
}

impl Procfile {
    pub fn parse(text: &str) -> Result<Self, ProcfileError> {
        let mut processes = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, command)) = trimmed.split_once(':') else {
                return Err(ProcfileError::Syntax {
                    line,
                    text: trimmed.to_owned(),
                });
            };
            let name = name.trim();
            let process: ProcessType = name.parse().map_err(|_| ProcfileError::BadType {
                line,
                name: name.to_owned(),
            })?;
            let command = command.trim();
            if command.is_empty() {
                return Err(ProcfileError::EmptyCommand {
                    line,
                    name: name.to_owned(),
                });
            }
            if processes.insert(process, command.to_owned()).is_some() {
                return Err(ProcfileError::Duplicate {
                    line,
                    name: name.to_owned(),
                });
            }
        }
        Ok(Self { processes })
    }

    pub fn from_map(processes: BTreeMap<ProcessType, String>) -> Self {
        Self { processes }
    }

    pub fn command(&self, process: &ProcessType) -> Option<&str> {
        self.processes.get(process).map(String::as_str)
    }

    pub fn processes(&self) -> &BTreeMap<ProcessType, String> {
        &self.processes
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Fills in process types this Procfile lacks from a buildpack's `default_process_types`.
    pub fn with_defaults(mut self, defaults: &BTreeMap<ProcessType, String>) -> Self {
        for (process, command) in defaults {
            self.processes
                .entry(process.clone())
                .or_insert_with(|| command.clone());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_commands() {
        let procfile = Procfile::parse(
            "# comment\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker:python w.py\nrelease: ./migrate --url=a:b\n",
        )
        .unwrap();
        assert_eq!(
            procfile.command(&ProcessType::web()),
            Some("gunicorn app:app --bind 0.0.0.0:$PORT")
        );
        assert_eq!(
            procfile.command(&"worker".parse().unwrap()),
            Some("python w.py")
        );
        assert_eq!(
            procfile.command(&"release".parse().unwrap()),
            Some("./migrate --url=a:b")
        );
        assert_eq!(procfile.processes().len(), 3);
    }

    #[test]
    fn bad_lines_name_the_line() {
        assert_eq!(
            Procfile::parse("web: ok\nthis is wrong").unwrap_err(),
            ProcfileError::Syntax {
                line: 2,
                text: "this is wrong".into()
            }
        );
        assert!(matches!(
            Procfile::parse("Web: x").unwrap_err(),
            ProcfileError::BadType { line: 1, .. }
        ));
        assert!(matches!(
            Procfile::parse("web:   ").unwrap_err(),
            ProcfileError::EmptyCommand { line: 1, .. }
        ));
        assert!(matches!(
            Procfile::parse("web: a\nweb: b").unwrap_err(),
            ProcfileError::Duplicate { line: 2, .. }
        ));
        assert!(
            Procfile::parse("web server: x")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn defaults_fill_gaps_without_overriding() {
        let procfile = Procfile::parse("web: mine").unwrap();
        let defaults = BTreeMap::from([
            (ProcessType::web(), "theirs".to_owned()),
            ("worker".parse().unwrap(), "work".to_owned()),
        ]);
        let merged = procfile.with_defaults(&defaults);
        assert_eq!(merged.command(&ProcessType::web()), Some("mine"));
        assert_eq!(merged.command(&"worker".parse().unwrap()), Some("work"));
    }
}
