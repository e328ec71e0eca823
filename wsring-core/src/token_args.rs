//! The bearer-token flags shared by the router and ws-pod (feature `cli`):
//! `--token` or `--token-file`, declared once so both processes accept,
//! refuse and explain them the same way.
//!
//! Flatten [`TokenArgs`] into a clap parser with `#[command(flatten)]` (as
//! `redis_args::RedisArgs` is), then call [`TokenArgs::resolve`]
//! once at start-up: a missing, unreadable or empty token stops the process
//! with a message naming the flag instead of failing the first request.

use std::path::PathBuf;

use crate::Error;

/// `--token` (`WSRING_TOKEN`) or `--token-file` (`WSRING_TOKEN_FILE`), not both.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenArgs {
    /// Bearer token of the admin and push APIs; also signs the router's headers to pods.
    #[arg(
        id = "token",
        long = "token",
        value_name = "TOKEN",
        env = "WSRING_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub value: Option<String>,

    /// File holding the bearer token (a mounted Secret); surrounding whitespace is ignored.
    #[arg(
        id = "token_file",
        long = "token-file",
        value_name = "TOKEN_FILE",
        env = "WSRING_TOKEN_FILE"
    )]
    pub file: Option<PathBuf>,
}

impl TokenArgs {
    /// The flags of `--token VALUE` (tests and in-process launchers).
    pub fn value(token: impl Into<String>) -> Self {
        TokenArgs {
            value: Some(token.into()),
            file: None,
        }
    }

    /// The token from `--token` or the file of `--token-file`, surrounding
    /// whitespace removed. One of them is required, and the token must not be
    /// empty: an empty token would never authorize anything.
    pub fn resolve(&self) -> Result<String, Error> {
        let token = match (&self.value, &self.file) {
            (Some(token), _) => token.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::TokenConfig(format!("cannot read --token-file {}: {e}", path.display()))
                })?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(Error::TokenConfig(
                    "a bearer token is required: set --token (WSRING_TOKEN) or --token-file (WSRING_TOKEN_FILE)"
                        .into(),
                ))
            }
        };
        if token.is_empty() {
            return Err(Error::TokenConfig("the bearer token is empty".into()));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    #[test]
    fn the_flag_or_the_file_gives_the_trimmed_token() {
        assert_eq!(TokenArgs::value(" s3cret\n").resolve().unwrap(), "s3cret");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let from_file = TokenArgs {
            value: None,
            file: Some(path.clone()),
        };
        assert_eq!(from_file.resolve().unwrap(), "from-file");
        std::fs::remove_file(&path).unwrap();
        let err = from_file.resolve().unwrap_err();
        assert!(matches!(err, Error::TokenConfig(_)), "{err}");
        assert!(err.to_string().contains("--token-file"), "{err}");
    }

    #[test]
    fn a_token_is_required_and_not_empty() {
        let err = TokenArgs::default().resolve().unwrap_err();
        assert!(err.to_string().contains("--token"), "{err}");
        assert!(err.to_string().contains("WSRING_TOKEN_FILE"), "{err}");
        let err = TokenArgs::value("  ").resolve().unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn the_two_flags_conflict() {
        let cli = Cli::try_parse_from(["x", "--token", "t"]).unwrap();
        assert_eq!(cli.token, TokenArgs::value("t"));
        let cli = Cli::try_parse_from(["x", "--token-file", "/run/token"]).unwrap();
        assert_eq!(cli.token.file.as_deref(), Some("/run/token".as_ref()));
        let err =
            Cli::try_parse_from(["x", "--token", "t", "--token-file", "/run/token"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
