//! The seam between the runner and the host (youki's `Syscall` habit):
//! every command the sandbox code runs (`ip`, `runc`) and every file it
//! touches outside the runner's own state directory (cgroupfs, mounts,
//! signals) goes through [`Sys`], so the sandbox logic is unit-tested
//! against a recording fake without root, while the integration tests run
//! [`RealSys`].

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// True when it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// A signal the runner sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

impl Sig {
    /// The name `runc kill` takes.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "TERM",
            Sig::Kill => "KILL",
        }
    }
}

/// Host operations used by the sandbox code.
pub trait Sys: Send + Sync + fmt::Debug {
    /// Runs `program args...` to completion, capturing its output.
    fn run(&self, program: &Path, args: &[String]) -> io::Result<CmdOutput>;
    /// Writes a whole (cgroup) file.
    fn write(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `rmdir`.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Names of the subdirectories of a directory (empty if it is missing).
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Mounts an overlay filesystem with the given options at `target`.
    fn mount_overlay(&self, options: &str, target: &Path) -> io::Result<()>;
    /// Unmounts `target` (lazily if it is busy).
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Sends a signal to a process.
    fn kill(&self, pid: i32, sig: Sig) -> io::Result<()>;
}

/// The real host.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn run(&self, program: &Path, args: &[String]) -> io::Result<CmdOutput> {
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(CmdOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn mount_overlay(&self, options: &str, target: &Path) -> io::Result<()> {
        let data = CString::new(options)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul in mount options"))?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
                    .map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn kill(&self, pid: i32, sig: Sig) -> io::Result<()> {
        let pid = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
        let sig = match sig {
            Sig::Term => rustix::process::Signal::TERM,
            Sig::Kill => rustix::process::Signal::KILL,
        };
        rustix::process::kill_process(pid, sig).map_err(io::Error::from)
    }
}

/// A recording fake for unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// Records every call; files and directories live in memory; command
    /// outputs are scripted by a prefix of the command line.
    #[derive(Debug, Default)]
    pub(crate) struct FakeSys {
        pub(crate) calls: Mutex<Vec<String>>,
        pub(crate) files: Mutex<BTreeMap<PathBuf, String>>,
        pub(crate) dirs: Mutex<BTreeSet<PathBuf>>,
        pub(crate) outputs: Mutex<Vec<(String, CmdOutput)>>,
    }

    impl FakeSys {
        pub(crate) fn script(&self, prefix: &str, success: bool, stdout: &str) {
            self.outputs.lock().unwrap().push((
                prefix.to_string(),
                CmdOutput {
                    success,
                    stdout: stdout.to_string(),
                    stderr: if success {
                        String::new()
                    } else {
                        "fake failure".into()
                    },
                },
            ));
        }

        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn record(&self, s: String) {
            self.calls.lock().unwrap().push(s);
        }
    }

    impl Sys for FakeSys {
        fn run(&self, program: &Path, args: &[String]) -> io::Result<CmdOutput> {
            let line = format!("{} {}", program.display(), args.join(" "));
            self.record(format!("run {line}"));
            let outputs = self.outputs.lock().unwrap();
            Ok(outputs
                .iter()
                .find(|(p, _)| line.starts_with(p.as_str()))
                .map(|(_, o)| o.clone())
                .unwrap_or(CmdOutput {
                    success: true,
                    ..Default::default()
                }))
        }
        fn write(&self, path: &Path, data: &str) -> io::Result<()> {
            self.record(format!("write {} {}", path.display(), data));
            self.files
                .lock()
                .unwrap()
                .insert(path.to_path_buf(), data.to_string());
            Ok(())
        }
        fn read(&self, path: &Path) -> io::Result<String> {
            self.files
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.record(format!("mkdir {}", path.display()));
            let mut dirs = self.dirs.lock().unwrap();
            for a in path.ancestors() {
                dirs.insert(a.to_path_buf());
            }
            Ok(())
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.record(format!("rmdir {}", path.display()));
            self.dirs.lock().unwrap().remove(path);
            Ok(())
        }
        fn exists(&self, path: &Path) -> bool {
            self.dirs.lock().unwrap().contains(path)
                || self.files.lock().unwrap().contains_key(path)
        }
        fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
            Ok(self
                .dirs
                .lock()
                .unwrap()
                .iter()
                .filter(|d| d.parent() == Some(path))
                .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect())
        }
        fn mount_overlay(&self, options: &str, target: &Path) -> io::Result<()> {
            self.record(format!("mount overlay {} {}", target.display(), options));
            Ok(())
        }
        fn unmount(&self, target: &Path) -> io::Result<()> {
            self.record(format!("umount {}", target.display()));
            Ok(())
        }
        fn kill(&self, pid: i32, sig: Sig) -> io::Result<()> {
            self.record(format!("kill {pid} {}", sig.name()));
            Ok(())
        }
    }
}
