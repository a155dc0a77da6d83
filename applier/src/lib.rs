//! The applier: turns a journal into a replica tree, contained beneath its root, crash-safe,
//! and able to restore any point in time.

pub mod apply;
pub mod fs;
pub mod model;
pub mod net;
pub mod pitr;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod tree;

/// Allocations up to this size come from the heap, not from a fresh mmap each time (frames
/// the recorder writes are a few MiB; the format allows up to 64 MiB, which still works, via mmap).
pub const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free heap memory kept for reuse before it is returned to the kernel.
pub const MALLOC_TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Tunes glibc's allocator for applying: every batch of frames allocates and frees buffers of
/// several MiB (stored frame, decompressed frame, record payloads). With the default dynamic
/// thresholds glibc kept returning them to the kernel and faulting fresh zeroed pages back in,
/// which cost about half of applying large writes (measured: 1 GiB of 64 KiB writes on tmpfs,
/// 1.5-1.9 s -> 0.8-1.1 s). Memory stays bounded by the read batch (run::READ_BATCH_BYTES).
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES) == 1
    };
    if !ok {
        tracing::debug!("mallopt refused the allocator thresholds; keeping glibc's defaults");
    }
}
