//! The control API's bearer token, read from a file by the agent (`--api-token-file`) and by
//! the client commands (`--api-token-file` is the agent's flag; clients take the file from
//! `QUICSWIM_API_TOKEN_FILE`), so that the token never appears on a command line, where
//! every local user can read it in the process list.

use std::path::Path;

use anyhow::{bail, Context};

/// Where the client commands look for the token file's path.
pub const TOKEN_FILE_ENV: &str = "QUICSWIM_API_TOKEN_FILE";

/// Longest token accepted; a token is a secret of a few dozen characters.
const TOKEN_LEN_MAX: usize = 4096;

/// The token in `path` (its first line, trimmed). `origin` names where the path came from
/// (`--api-token-file`, or the environment variable) for the error messages. The caller warns
/// when the file is readable by other users (the agent in its log, a client on stderr).
pub fn read_token(path: &Path, origin: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the API token file {} ({origin})",
            path.display()
        )
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        bail!("the API token file {} ({origin}) is empty", path.display());
    }
    if token.len() > TOKEN_LEN_MAX {
        bail!(
            "the API token in {} ({origin}) is over {TOKEN_LEN_MAX} bytes",
            path.display()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "the API token in {} ({origin}) has characters an HTTP header cannot carry \
             (use printable ASCII without spaces)",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// The client commands' token: from the file named by [`TOKEN_FILE_ENV`], if set.
pub fn client_token() -> anyhow::Result<Option<String>> {
    match std::env::var_os(TOKEN_FILE_ENV) {
        Some(path) if !path.is_empty() => {
            let path = Path::new(&path);
            let token = read_token(path, TOKEN_FILE_ENV)?;
            // The client commands keep no log; this goes where the user looks.
            if quicswim::tls::readable_by_others(path) == Some(true) {
                eprintln!(
                    "warning: the API token file {} is readable by other users; restrict it \
                     with `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
            Ok(Some(token))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_token_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_token(&path, "--api-token-file").unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let err = read_token(&path, "--api-token-file")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty") && err.contains("token"), "{err}");
        std::fs::write(&path, "two words\n").unwrap();
        assert!(read_token(&path, "--api-token-file").is_err());
        let missing = read_token(&dir.path().join("none"), "--api-token-file").unwrap_err();
        assert!(format!("{missing:#}").contains("none"), "{missing:#}");
    }
}
