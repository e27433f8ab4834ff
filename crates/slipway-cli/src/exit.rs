//! How a command ends the program with a status of its own choosing, without an error
//! message: `run` ends with the one-off process's exit status.

/// Returned (inside `anyhow::Error`) by a command whose program should exit with `code` and
/// print nothing more; the binary downcasts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exit status {code}")]
pub struct Exit {
    pub code: u8,
}

impl Exit {
    /// The status of a process that exited with `code`; one a shell cannot show (negative, or
    /// above 255) is a plain failure.
    pub fn from_process(code: i64) -> Option<Exit> {
        match u8::try_from(code) {
            Ok(0) => None,
            Ok(code) => Some(Exit { code }),
            Err(_) => Some(Exit { code: 1 }),
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_success_and_out_of_range_codes_fail() {
        assert_eq!(Exit::from_process(0), None);
        assert_eq!(Exit::from_process(3), Some(Exit { code: 3 }));
        assert_eq!(Exit::from_process(255), Some(Exit { code: 255 }));
        assert_eq!(Exit::from_process(-1), Some(Exit { code: 1 }));
        assert_eq!(Exit::from_process(256), Some(Exit { code: 1 }));
    }
}
