//! Process-wide signal settings the command-line tools need.

/// Lets SIGPIPE end the process quietly, as it does for other Unix tools: Rust ignores it,
/// so `ebb decide ... | head` would panic on the closed pipe (exit 101). Only for commands
/// that print and exit; servers keep ignoring it, or a client that hangs up would kill them.
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code; it runs
    // before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
