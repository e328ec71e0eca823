//! Tracing set-up of the data-plane processes (feature `logging`): the
//! `RUST_LOG` filter (default `info`), one JSON object per line when
//! `WSRING_LOG_FORMAT=json` (for log collectors), to stderr; text is coloured
//! only when stderr is a terminal, so `kubectl logs` and log files get plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber; call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A failed write is dropped silently. Otherwise tracing-subscriber
        // reports it with eprintln!, which panics on the same broken stderr
        // and kills the task that logged: a router whose launcher and log
        // reader were gone lost its shutdown task that way and never exited,
        // not even on SIGTERM (tests/log_output.rs).
        .log_internal_errors(false);
    if std::env::var("WSRING_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
