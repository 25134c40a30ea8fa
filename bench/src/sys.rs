//! Thin wrappers over the few OS calls the harness needs: CPU pinning, resource limits, signals.
//!
//! `unsafe` here is only FFI into libc with arguments built on the stack; each call says why it
//! is sound.

use std::io;

use crate::limits::NOFILE_HARD;

/// Pins the calling thread (`pid` 0) or process `pid` to one CPU core.
pub fn pin_to_core(pid: libc::pid_t, core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "core index too large",
        ));
    }
    // SAFETY: `core` was checked against CPU_SETSIZE above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` lives for the call and its size is passed alongside.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit on the stack.
    if unsafe { libc::setrlimit(resource, &lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_rlimit(resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-parameter on the stack.
    if unsafe { libc::getrlimit(resource, &mut lim) } == 0 {
        Ok((lim.rlim_cur, lim.rlim_max))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (at most [`NOFILE_HARD`] is expected
/// here). Returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let (_, hard) = get_rlimit(libc::RLIMIT_NOFILE)?;
    set_rlimit(libc::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// Lifts RLIMIT_MEMLOCK (glommio registers locked io_uring buffers). Needs root or a high
/// hard limit; a failure is reported, not fatal, since the peer may still start.
pub fn raise_memlock() -> io::Result<()> {
    if set_rlimit(
        libc::RLIMIT_MEMLOCK,
        libc::RLIM_INFINITY,
        libc::RLIM_INFINITY,
    )
    .is_ok()
    {
        return Ok(());
    }
    // Without CAP_SYS_RESOURCE (containers) the hard limit is the ceiling; kernels >= 5.12
    // charge io_uring memory to the cgroup instead, so glommio still starts.
    let (_, hard) = get_rlimit(libc::RLIMIT_MEMLOCK)?;
    set_rlimit(libc::RLIMIT_MEMLOCK, hard, hard)?;
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("RLIMIT_MEMLOCK stays at the hard limit, {hard} bytes"),
    ))
}

/// Gives the harness's process tree priority `nice` over everything else on the machine.
///
/// With autogroup scheduling (the default here) nice values only order processes within one
/// session, and each session gets an equal share: a nice -19 spinner still gets half a core next
/// to one build. So for a negative value the harness starts its own session (a new autogroup that
/// the servers and clients it spawns inherit) and sets that group's nice too. If it already leads
/// a process group (started from an interactive shell), setsid fails and the caller's whole
/// session is boosted instead. Needs root.
pub fn prioritise_tree(nice: i32) -> io::Result<()> {
    if nice < 0 {
        // SAFETY: setsid has no arguments; failure (already a group leader) is tolerated.
        unsafe { libc::setsid() };
        let path = "/proc/self/autogroup";
        if std::path::Path::new(path).exists() {
            std::fs::write(path, nice.to_string())?;
        }
    }
    set_nice(nice)
}

/// Sets the calling process's nice value (negative needs root).
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority has no memory arguments; `who` 0 is the calling process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The limits every spawned server gets, applied in the child between fork and exec: only
/// async-signal-safe syscalls, no allocation.
pub fn child_setup(core: usize, nice: i32) -> io::Result<()> {
    pin_to_core(0, core)?;
    set_nice(nice)?;
    let (_, hard) = get_rlimit(libc::RLIMIT_NOFILE)?;
    set_rlimit(libc::RLIMIT_NOFILE, hard.min(NOFILE_HARD), hard)?;
    // Best effort: without root glommio reports its own, clearer error.
    let _ = raise_memlock();
    Ok(())
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
