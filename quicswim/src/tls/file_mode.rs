//! Secret files readable by others: a private key or a token that any local user can read
//! is no longer only this node's. Checked on load with a warning (not an error: some
//! deployments mount secrets group-readable on purpose, and refusing to start would turn a
//! hardening hint into an outage).

use std::path::Path;

use tracing::warn;

/// Whether `path` can be read by anyone but its owner (Unix permission bits); `None` when
/// that cannot be told (not Unix, or the file's metadata is unreadable).
pub fn readable_by_others(path: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        Some(mode & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs a WARN naming `path` (a `what`: "private key", "API token") when others can read it.
pub fn warn_if_readable_by_others(path: &Path, what: &str) {
    if readable_by_others(path) == Some(true) {
        warn!(
            file = %path.display(),
            "{what} is readable by other users; restrict it with `chmod 600 {}`",
            path.display()
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn group_or_world_bits_make_a_file_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&path), Some(false));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(readable_by_others(&path), Some(true));
        assert_eq!(readable_by_others(&dir.path().join("missing")), None);
    }
}
