//! The process's cleanup thread: work that must not run on a task others wait on, and that
//! nothing waits for (the WAL's purged entries and segments, `wal/`). A leaf of the crate:
//! imports nothing from it.

use std::io;
use std::sync::mpsc;
use std::sync::OnceLock;

/// Hands `work` to the process's one cleanup thread, which runs at a low CPU priority (nice 10),
/// for cleanup nothing waits on: on a busy node it mostly takes CPU the requests leave. One
/// thread, not one per call, and not the lowest priority: a nice-19 thread on saturated cores
/// gets so little CPU that purges could pile up faster than it frees them, each holding its
/// entries.
pub(crate) fn in_background(work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    type Work = Box<dyn FnOnce() + Send>;
    static CLEANER: OnceLock<mpsc::Sender<Work>> = OnceLock::new();
    let cleaner = match CLEANER.get() {
        Some(c) => c,
        None => {
            let (tx, rx) = mpsc::channel::<Work>();
            std::thread::Builder::new().name("cairn-cleanup".into()).spawn(move || {
                // SAFETY: plain syscalls with no pointers; on Linux, PRIO_PROCESS with a thread
                // id sets that thread's priority only. A failure leaves the default priority.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 10);
                }
                for work in rx {
                    work();
                }
            })?;
            // Two first callers at once: one sender wins, the other's thread ends at once.
            CLEANER.get_or_init(|| tx)
        }
    };
    cleaner.send(Box::new(work)).map_err(|_| io::Error::other("the cleanup thread has stopped"))
}
