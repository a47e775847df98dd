//! Handing freed heap back to the system. glibc keeps what the many short-lived allocations
//! of each call free in its arenas: on the soak bench the gateway's RSS crept up by about
//! 0.4 kB per call over 30,000 calls while its live heap stayed flat (heaptrack), and one
//! `malloc_trim` gave 15 MB back. Trimming once a minute keeps RSS at the live heap's size.

use std::time::Duration;

const EVERY: Duration = Duration::from_secs(60);

/// Trims the heap once a minute for as long as the runtime lives.
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(EVERY);
        tick.tick().await; // the first tick is immediate: nothing to give back yet
        loop {
            tick.tick().await;
            // A walk over the allocator's arenas (milliseconds): off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(trim).await {
                tracing::warn!(error = %e, "heap trim failed");
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers; it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
