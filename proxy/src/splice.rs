//! Splicing websocket tunnels in the kernel (Linux, with the privileges to load eBPF programs).
//!
//! A tunnel copied in user space wakes the proxy twice per message, once on each hop; on a
//! virtual machine each wake-up of an idle CPU costs tens of microseconds. Spliced, the kernel
//! moves every segment one socket of a tunnel receives straight out of the other socket, in the
//! softirq that received it: no thread of the proxy runs until a side closes.
//!
//! Two socket hashes, keyed by socket cookie:
//! - `targets` holds, under each tunnel socket's cookie, the *other* socket of its tunnel; no
//!   program is attached to it;
//! - `members` holds each tunnel socket under its own cookie; its stream verdict program runs for
//!   every segment a member receives and redirects it out of `targets[cookie]`.
//!
//! A socket is put in `targets` before either joins `members`, so the first segment the verdict
//! sees already has somewhere to go. Bytes that arrived before the join are pushed through the
//! verdict too, in order, by re-running the socket's data-ready callback (raising
//! `SO_RCVLOWAT` does that). Closing a socket removes it from both maps.
//!
//! When the proxy cannot load the program (not root, no `CAP_BPF`, an old kernel), tunnels are
//! copied in user space as before; nothing else changes.
#![allow(unsafe_code)] // the bpf(2) system call and socket options no safe crate here wraps

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Most tunnel sockets spliced at once (two per tunnel); a tunnel past it is copied.
const MAX_SOCKETS: u32 = 65_536;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_STREAM_VERDICT: u32 = 5;
const BPF_FUNC_GET_SOCKET_COOKIE: i32 = 46;
const BPF_FUNC_SK_REDIRECT_HASH: i32 = 72;
const BPF_NOEXIST: u64 = 1;
/// `BPF_PSEUDO_MAP_FD`: a 64-bit immediate load whose value is a map's file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// The loaded maps and program. Loaded at most once per process.
pub struct KernelSplice {
    targets: OwnedFd,
    members: OwnedFd,
    /// Attached to `members`, which keeps it alive; held so that it is closed with them.
    _verdict: OwnedFd,
}

static KERNEL: OnceLock<Option<KernelSplice>> = OnceLock::new();

/// The process's kernel splice, loaded at the first call; `None` when it cannot be loaded here.
pub fn kernel() -> Option<&'static KernelSplice> {
    KERNEL
        .get_or_init(|| match KernelSplice::load() {
            Ok(splice) => {
                tracing::info!("websocket tunnels are spliced in the kernel (eBPF sockmap)");
                Some(splice)
            }
            Err(error) => {
                tracing::info!(
                    %error,
                    "websocket tunnels are copied in user space: no kernel splice here"
                );
                None
            }
        })
        .as_ref()
}

impl KernelSplice {
    /// Creates the two socket hashes and attaches the verdict program to `members`.
    ///
    /// # Errors
    /// What the kernel refused (typically `EPERM` without the privilege to load programs).
    pub fn load() -> io::Result<Self> {
        let targets = create_sockhash()?;
        let members = create_sockhash()?;
        let program: Vec<u8> = [
            insn(0xbf, 6, 1, 0, 0),                               // r6 = skb
            insn(0x85, 0, 0, 0, BPF_FUNC_GET_SOCKET_COOKIE), // r0 = the receiving socket's cookie
            insn(0x7b, 10, 0, -8, 0),                        // *(u64 *)(fp - 8) = r0
            insn(0xbf, 1, 6, 0, 0),                          // r1 = skb
            insn(0x18, 2, PSEUDO_MAP_FD, 0, targets.as_raw_fd()), // r2 = targets
            insn(0, 0, 0, 0, 0),                             // (upper half of the 64-bit load)
            insn(0xbf, 3, 10, 0, 0),                         // r3 = fp
            insn(0x07, 3, 0, 0, -8),                         // r3 += -8: the cookie
            insn(0xb7, 4, 0, 0, 0),                          // r4 = 0: out of the other socket
            insn(0x85, 0, 0, 0, BPF_FUNC_SK_REDIRECT_HASH),  // r0 = redirect (or drop)
            insn(0x95, 0, 0, 0, 0),                          // return r0
        ]
        .concat();
        let license = c"Dual MIT/GPL";
        let verdict = Attr::new()
            .u32(0, BPF_PROG_TYPE_SK_SKB)
            .u32(4, (program.len() / 8) as u32)
            .u64(8, program.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .call_fd(BPF_PROG_LOAD)?;
        Attr::new()
            .u32(0, members.as_raw_fd() as u32)
            .u32(4, verdict.as_raw_fd() as u32)
            .u32(8, BPF_SK_SKB_STREAM_VERDICT)
            .call(BPF_PROG_ATTACH)?;
        Ok(Self {
            targets,
            members,
            _verdict: verdict,
        })
    }

    /// Splices the two connected TCP sockets: from now on the kernel sends every byte either
    /// receives out of the other, including bytes already waiting in its receive queue. Nothing
    /// may read from or write to them in user space afterwards (closing and shutting down are
    /// fine).
    ///
    /// # Errors
    /// When the kernel refused (the maps are full, a socket is not an established TCP socket);
    /// the sockets are then left as they were.
    pub fn join(&self, a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<()> {
        let (cookie_a, cookie_b) = (cookie(a)?, cookie(b)?);
        let steps = [
            (&self.targets, cookie_a, b),
            (&self.targets, cookie_b, a),
            (&self.members, cookie_a, a),
            (&self.members, cookie_b, b),
        ];
        for (done, (map, key, socket)) in steps.iter().enumerate() {
            if let Err(error) = update(map.as_fd(), *key, *socket) {
                // Undo in reverse, members first, so no verdict runs without its target.
                for (map, key, _) in steps[..done].iter().rev() {
                    let _ = delete(map.as_fd(), *key);
                }
                return Err(error);
            }
        }
        // Re-running each socket's data-ready callback (now the verdict's) sends what arrived
        // before the join.
        set_int(a, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1)?;
        set_int(b, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1)?;
        Ok(())
    }
}

/// The socket, taken out of tokio's `TcpStream` and registered with the runtime for reading
/// only: a `TcpStream` is registered for writing too, and a spliced socket becomes writable again
/// after every message the kernel sends out of it, which would wake its thread each time.
///
/// # Errors
/// When the socket cannot be registered.
pub(crate) fn watch(
    socket: tokio::net::TcpStream,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::TcpStream>> {
    let socket = socket.into_std()?;
    // SAFETY: the `AsyncFd` owns the `std::net::TcpStream`, which owns its file descriptor until
    // it is dropped and always returns that one from `as_raw_fd`.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

/// Byte counts of a TCP socket, for activity and for knowing when the kernel has passed on
/// everything a closed side sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Bytes received from the peer, whether read yet or not.
    pub(crate) received: u64,
    /// Bytes received but still in the receive queue.
    pub(crate) unread: u64,
    /// Bytes ever written into the socket (acknowledged or still queued).
    pub(crate) written: u64,
}

/// The socket's [`Counts`].
///
/// # Errors
/// When `getsockopt`/`ioctl` fail (not a TCP socket).
pub(crate) fn counts(socket: BorrowedFd<'_>) -> io::Result<Counts> {
    let info = tcp_info(socket)?;
    let unread = queued(socket, libc::FIONREAD)?;
    let unsent = queued(socket, libc::TIOCOUTQ)?;
    Ok(Counts {
        received: info.tcpi_bytes_received,
        unread,
        written: info.tcpi_bytes_acked + unsent,
    })
}

/// Bytes the socket has received from its peer, read or not (one system call: the activity
/// poll needs no more).
pub(crate) fn received(socket: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(tcp_info(socket)?.tcpi_bytes_received)
}

fn tcp_info(socket: BorrowedFd<'_>) -> io::Result<libc::tcp_info> {
    // SAFETY: `tcp_info` is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a live socket, and a `tcp_info` buffer of the length passed.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// `ioctl(FIONREAD)` (unread bytes) or `ioctl(TIOCOUTQ)` (bytes written and not acknowledged).
fn queued(socket: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: a live socket and a c_int out-parameter, as both requests take.
    let r = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut value as *mut libc::c_int) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(value).unwrap_or(0))
}

fn cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a live socket, and a u64 buffer of the length passed.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

fn set_int(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a live socket, and a c_int option value of the length passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn create_sockhash() -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, BPF_MAP_TYPE_SOCKHASH)
        .u32(4, 8) // key: a socket cookie
        .u32(8, 4) // value: a socket's file descriptor, when updating
        .u32(12, MAX_SOCKETS)
        .call_fd(BPF_MAP_CREATE)
}

fn update(map: BorrowedFd<'_>, key: u64, socket: BorrowedFd<'_>) -> io::Result<()> {
    let fd: u32 = socket.as_raw_fd() as u32;
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u64 as u64)
        .u64(16, &fd as *const u32 as u64)
        .u64(24, BPF_NOEXIST)
        .call(BPF_MAP_UPDATE_ELEM)
}

fn delete(map: BorrowedFd<'_>, key: u64) -> io::Result<()> {
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u64 as u64)
        .call(BPF_MAP_DELETE_ELEM)
}

/// One eBPF instruction: opcode, destination and source registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0x0f) | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// `union bpf_attr` as bytes; each command reads the fields it needs, the rest stay zero.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32(mut self, offset: usize, value: u32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(mut self, offset: usize, value: u64) -> Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn raw(mut self, command: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the buffer is as long as the size passed, and every pointer stored in it (the
        // caller's locals: key, value, program, license) outlives this call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                self.0.as_mut_ptr(),
                self.0.len() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }

    fn call(self, command: libc::c_long) -> io::Result<()> {
        self.raw(command).map(drop)
    }

    fn call_fd(self, command: libc::c_long) -> io::Result<OwnedFd> {
        let fd = RawFd::try_from(self.raw(command)?)
            .map_err(|_| io::Error::other("bpf(2) returned no file descriptor"))?;
        // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
