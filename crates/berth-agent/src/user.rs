//! Resolving a container's `user` (`name`, `uid`, `name:group`,
//! `uid:gid`) against the image's `/etc/passwd` and `/etc/group`, the way
//! Docker does.

use crate::error::SpecError;

/// The numeric identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` memberships).
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `user` (None or empty: root) for `container`, given the
/// contents of the image's passwd and group files when they exist.
///
/// A numeric uid that passwd does not list is fine (gid 0, like Docker);
/// a name that it does not list is an error.
pub fn resolve_user(
    container: &str,
    user: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let user = user.unwrap_or("").trim();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let (uid, mut gid, name) = if u.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = u.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name.to_string())),
            None => (uid, 0, None),
        }
    } else {
        match passwd_entries(passwd).find(|e| e.name == u) {
            Some(e) => (e.uid, e.gid, Some(e.name.to_string())),
            None => {
                return Err(SpecError::UnknownUser {
                    container: container.into(),
                    user: u.into(),
                })
            }
        }
    };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match group_entries(group).find(|e| e.name == g) {
                Some(e) => e.gid,
                None => {
                    return Err(SpecError::UnknownGroup {
                        container: container.into(),
                        group: g.into(),
                    })
                }
            },
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for e in group_entries(group) {
            if e.gid != gid
                && e.members.contains(&name.as_str())
                && !additional_gids.contains(&e.gid)
            {
                additional_gids.push(e.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nwww:x:33:33:www:/var/www:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwww:x:33:\nappg:x:1001:\nextra:x:2000:app,www\nother:x:2001:www\n";

    fn r(user: Option<&str>) -> Result<ResolvedUser, SpecError> {
        resolve_user("c", user, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn default_is_root() {
        assert_eq!(r(None).unwrap(), ResolvedUser::default());
        assert_eq!(r(Some("")).unwrap(), ResolvedUser::default());
    }

    #[test]
    fn names_resolve_through_passwd_and_group() {
        assert_eq!(
            r(Some("app")).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![2000]
            }
        );
        assert_eq!(
            r(Some("www:extra")).unwrap(),
            ResolvedUser {
                uid: 33,
                gid: 2000,
                additional_gids: vec![2001]
            }
        );
        assert_eq!(r(Some("app:7")).unwrap().gid, 7);
    }

    #[test]
    fn numeric_ids_need_no_passwd() {
        let u = resolve_user("c", Some("1234:5678"), None, None).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        assert_eq!(resolve_user("c", Some("4321"), None, None).unwrap().gid, 0);
        // A numeric uid listed in passwd takes its primary group.
        assert_eq!(r(Some("33")).unwrap().gid, 33);
    }

    #[test]
    fn unknown_names_fail() {
        assert_eq!(
            r(Some("nobody")).unwrap_err().to_string(),
            "container c: unable to find user nobody: no matching entries in passwd file"
        );
        assert!(matches!(
            r(Some("app:nogroup")),
            Err(SpecError::UnknownGroup { .. })
        ));
        assert!(resolve_user("c", Some("app"), None, None).is_err());
    }
}
