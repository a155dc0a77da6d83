//! Starting while a killed predecessor is still being torn down. A process killed with SIGKILL
//! holds its locks (and ports) until the kernel has closed its files: its eBPF programs, ring
//! buffer and mappings go first. A recorder or applier restarted the moment the previous one was
//! killed found the journal's or the state directory's lock still held and exited ("in use");
//! found by a stress-ng run restarting them at once. (The shipper waits for its UDP port the
//! same way in `serve::listen`, with an async sleep: its runtime has one thread.)

use std::time::{Duration, Instant};

/// How long a starting recorder or applier waits for a lock a dead predecessor still holds.
/// A live holder still gets the error after this wait.
pub const PREDECESSOR_WAIT_MS: u64 = 10_000;

/// Calls `f` until it succeeds, fails with an error `busy` does not match, or
/// PREDECESSOR_WAIT_MS has passed (then returns its last error). Logs once that it waits,
/// naming `what` is held.
pub fn retry_while_busy<T, E>(
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
    busy: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_millis(PREDECESSOR_WAIT_MS);
    let mut told = false;
    loop {
        match f() {
            Err(e) if busy(&e) && Instant::now() < deadline => {
                if !told {
                    tracing::info!(
                        "{what} is held (a previous process still exiting?): waiting up to {} s",
                        PREDECESSOR_WAIT_MS / 1000
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}
