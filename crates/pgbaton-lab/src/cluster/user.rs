//! The OS user the servers run as: this process's own, or, when it is root (which PostgreSQL
//! refuses), the `postgres` user or `nobody`.

use std::ffi::CString;

use super::ClusterError;

/// The OS user the server runs as when this process is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ServerUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// The OS user `(uid, gid)` that throwaway servers run as: `None` when this process is not root
/// (they run as this user), else the `postgres` user, or `nobody`. For companions of the server
/// that refuse root too (PgBouncer).
pub fn server_os_user() -> Result<Option<(u32, u32)>, ClusterError> {
    Ok(server_user()?.map(|u| (u.uid, u.gid)))
}

/// `None` when not root; else the `postgres` OS user, or `nobody`.
pub(super) fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| lookup_user(name))
        .map(Some)
        .ok_or(ClusterError::NoServerUser)
}

fn lookup_user(name: &str) -> Option<ServerUser> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points its strings into `buf`,
    // which outlives the call; only the numeric ids are read afterwards.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(ServerUser {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}
