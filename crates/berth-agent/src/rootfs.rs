//! Container root filesystems (overlayfs over the image's layer
//! directories, with the writable layer in the container's directory) and
//! the generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{RunnerError, SpecError};
use crate::sys::Sys;

/// The most overlayfs takes in one mount's options (a page).
pub const MAX_MOUNT_OPTIONS: usize = 4095;

/// The overlayfs options: lower dirs top first (the image's last layer
/// first), then upper and work.
pub fn overlay_options(
    container: &str,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, SpecError> {
    let bad = |reason: String| SpecError::Rootfs {
        container: container.into(),
        reason,
    };
    let mut lowers = Vec::new();
    for l in layers.iter().rev() {
        let s = l
            .to_str()
            .ok_or_else(|| bad(format!("layer path {} is not UTF-8", l.display())))?;
        if s.contains([',', ':', '\\']) {
            return Err(bad(format!("layer path {s} contains ',', ':' or '\\'")));
        }
        lowers.push(s);
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() > MAX_MOUNT_OPTIONS {
        return Err(bad(format!(
            "{} layers make overlay mount options of {} bytes (at most {MAX_MOUNT_OPTIONS})",
            layers.len(),
            opts.len()
        )));
    }
    Ok(opts)
}

/// Mounts the container's root filesystem at `<dir>/rootfs` unless it is
/// already mounted. `layers` empty gives an empty lower layer.
pub fn mount(
    sys: &dyn Sys,
    container: &str,
    layers: &[PathBuf],
    dir: &Path,
) -> Result<PathBuf, RunnerError> {
    let rootfs = dir.join("rootfs");
    if is_mounted(&rootfs) {
        return Ok(rootfs);
    }
    let upper = dir.join("upper");
    let work = dir.join("work");
    let mut lowers = layers.to_vec();
    if lowers.is_empty() {
        lowers.push(dir.join("empty"));
    }
    for d in [&rootfs, &upper, &work]
        .into_iter()
        .chain(lowers.iter().filter(|l| l.starts_with(dir)))
    {
        std::fs::create_dir_all(d).map_err(|e| RunnerError::io(d, e))?;
    }
    let opts = overlay_options(container, &lowers, &upper, &work)?;
    sys.mount_overlay(&opts, &rootfs)
        .map_err(|e| RunnerError::io(&rootfs, e))?;
    Ok(rootfs)
}

/// Decodes the octal escapes of a mountinfo path (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points listed in a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// Whether `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Unmounts everything at or under `dir`.
pub fn unmount_under(sys: &dyn Sys, dir: &Path) -> Result<(), RunnerError> {
    // A path can be mounted over several times.
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            sys.unmount(&m).map_err(|e| RunnerError::io(&m, e))?;
        }
    }
    Ok(())
}

/// The task's `/etc/hosts`.
pub fn hosts_file(hostname: &str, ip: Ipv4Addr) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

/// The task's `/etc/resolv.conf`: the host's name servers and search
/// domains, less loopback ones (unreachable from the task's namespace).
pub fn resolv_conf(host_resolv: &str) -> String {
    let mut out = String::new();
    for l in host_resolv.lines() {
        let l = l.trim();
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(addr) = f.next() {
                    let loopback = addr
                        .parse::<std::net::IpAddr>()
                        .map(|a| a.is_loopback())
                        .unwrap_or(true);
                    if !loopback {
                        out.push_str(&format!("nameserver {addr}\n"));
                    }
                }
            }
            Some("search") | Some("options") | Some("domain") => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push_str("# no name servers configured for tasks\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_are_top_first() {
        let layers = vec![
            PathBuf::from("/l/base"),
            PathBuf::from("/l/mid"),
            PathBuf::from("/l/top"),
        ];
        assert_eq!(
            overlay_options("c", &layers, Path::new("/c/upper"), Path::new("/c/work")).unwrap(),
            "lowerdir=/l/top:/l/mid:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(overlay_options(
            "c",
            &[PathBuf::from("/a:b")],
            Path::new("/u"),
            Path::new("/w")
        )
        .is_err());
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/berth/layers/sha256/{i:064}")))
            .collect();
        let err = overlay_options("c", &many, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(err.to_string().contains("200 layers"), "{err}");
    }

    #[test]
    fn mountinfo_parsing() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n37 35 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![PathBuf::from("/mnt/a b"), PathBuf::from("/proc")]
        );
        assert!(is_mounted(Path::new("/proc")));
    }

    #[test]
    fn etc_files() {
        let h = hosts_file("task-1", "10.213.1.5".parse().unwrap());
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.213.1.5\ttask-1\n"));
        let r =
            resolv_conf("# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com\n");
        assert_eq!(r, "nameserver 10.0.0.2\nsearch example.com\n");
        assert!(resolv_conf("nameserver 127.0.0.1\n").starts_with('#'));
    }
}
