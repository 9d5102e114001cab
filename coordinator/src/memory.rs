//! The coordinator's allocator: glibc's heaps per thread are capped (ADR 0037).
//!
//! glibc gives each thread that meets contention a heap ("arena") of its own, up to eight per
//! core, and an arena keeps what it once held. The coordinator's threads (the runtime's
//! workers, its blocking pool, the catalog's) all allocate the buffers of the agents'
//! connections, so their memory is spread over many arenas that each keep free space: with
//! 10,000 agents connected its RSS was 862 MiB with glibc's default and 744 MiB with two
//! arenas, at the same heartbeat latency (`tests/bench/agents.sh`).

/// Arenas glibc may create.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Caps glibc's arenas. Call it first thing, before any thread is started. Returns whether the
/// allocator took the setting (elsewhere there is nothing to set: `true`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn cap_heaps() -> bool {
    // SAFETY: mallopt only sets a parameter of the C allocator and takes no pointers; it is
    // called before the coordinator starts any thread, so every arena is created under the
    // cap.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1 }
}

/// Other C libraries have no such setting: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap_heaps() -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_takes_the_setting() {
        assert!(super::cap_heaps());
    }
}
