//! A pseudo-terminal standing in for the board's USB serial port: the host
//! opens `/dev/pts/N` (or a stable link to it) as it would `/dev/ttyACM0`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;

/// The board's end of a pseudo-terminal. Dropping it is unplugging the
/// board: the host's reads fail and the path goes away.
#[derive(Debug)]
pub struct Pty {
    master: AsyncFd<File>,
    /// Held open so the master never reads EIO while the host has the
    /// port closed (between its reconnect attempts).
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// A fresh pseudo-terminal in raw mode: no echo, no line editing, no
    /// translation of `\n` or of the 0x00 delimiter.
    pub fn open() -> io::Result<Pty> {
        let r = openpty(None, None)?;
        let mut t = tcgetattr(&r.slave)?;
        cfmakeraw(&mut t);
        tcsetattr(&r.slave, SetArg::TCSANOW, &t)?;
        let path = nix::unistd::ttyname(&r.slave)?;
        let flags = OFlag::from_bits_truncate(fcntl(&r.master, FcntlArg::F_GETFL)?);
        fcntl(&r.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // `AsyncFd::new` is deprecated because a caller could close the fd
        // behind the reactor's back (tokio #8587). Here the AsyncFd owns the
        // File outright, so the fd stays open and the same for its whole
        // life: the condition `AsyncFd::register` makes the caller promise
        // in an `unsafe` block, which this workspace denies outside
        // hilt-record's `window.rs`.
        #[allow(deprecated)]
        let master = AsyncFd::new(File::from(r.master))?;
        Ok(Pty {
            master,
            _slave: r.slave,
            path,
        })
    }

    /// The slave side's path: what a host opens as its serial port.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what the host wrote (waits for it).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|f| f.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Write all of `buf` to the host.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|f| f.get_ref().write(buf)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Points `link` at `target`, replacing any previous link atomically (a
/// host polling the link never sees it missing).
pub fn point_link(link: &Path, target: &Path) -> io::Result<()> {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}
