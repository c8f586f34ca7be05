//! Who may have written a file or directory the binaries trust: the control plane's data
//! directory and API token file, the plugin's workdir (its sockets and Envoy bootstrap) and
//! dataplane token file. Pure: the caller reads the owner and mode (`stat`) and asks here.
//!
//! Rule: the owner is the process's effective user or root, and neither group nor others may
//! write. Anyone else who could write there could swap a token, plant a socket or a bootstrap
//! pointing Envoy elsewhere. Reading is not checked: Kubernetes mounts Secrets `0644` by
//! default, and a token's readers are the pod's own containers.

/// Why a path cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// Owned by another user.
    #[error(
        "{path} is owned by uid {owner}, not by this process (uid {me}) or root: another user could change it; chown it or choose another path"
    )]
    ForeignOwner {
        /// The path.
        path: String,
        /// Its owner.
        owner: u32,
        /// The process's effective uid.
        me: u32,
    },
    /// Writable by group or others.
    #[error(
        "{path} is writable by {who} (mode {mode:04o}): another user could change it; run `chmod go-w {path}` or choose another path"
    )]
    Writable {
        /// The path.
        path: String,
        /// `group`, `others` or `group and others`.
        who: &'static str,
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks `path` with permission bits `mode` owned by `owner`, for a process whose effective
/// uid is `me`.
pub fn check_trusted(path: &str, mode: u32, owner: u32, me: u32) -> Result<(), OwnershipError> {
    if owner != me && owner != 0 {
        return Err(OwnershipError::ForeignOwner {
            path: path.to_string(),
            owner,
            me,
        });
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "group",
        (false, true) => "others",
        (true, true) => "group and others",
    };
    Err(OwnershipError::Writable {
        path: path.to_string(),
        who,
        mode: mode & 0o7777,
    })
}

/// [`check_trusted`] on what `stat` returned for `path`.
pub fn check_metadata(path: &std::path::Path, md: &std::fs::Metadata, me: u32) -> Result<(), OwnershipError> {
    use std::os::unix::fs::MetadataExt;
    check_trusted(&path.display().to_string(), md.mode(), md.uid(), me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_or_root_and_no_foreign_writers() {
        assert_eq!(check_trusted("/d", 0o700, 1000, 1000), Ok(()));
        assert_eq!(check_trusted("/d", 0o755, 0, 1000), Ok(()));
        assert_eq!(check_trusted("/t", 0o644, 0, 1000), Ok(()));
        let e = check_trusted("/tmp/x", 0o777, 1000, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/tmp/x is writable by group and others (mode 0777): another user could change it; run `chmod go-w /tmp/x` or choose another path"
        );
        assert!(matches!(
            check_trusted("/d", 0o770, 1000, 1000),
            Err(OwnershipError::Writable { who: "group", .. })
        ));
        assert!(matches!(
            check_trusted("/d", 0o700, 1001, 1000),
            Err(OwnershipError::ForeignOwner { .. })
        ));
    }
}
