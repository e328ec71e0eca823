//! Tracing set-up of the data-plane processes (feature `logging`): the
//! `RUST_LOG` filter (default `info`), one JSON object per line when
//! `WSRING_LOG_FORMAT=json` (for log collectors), to stderr.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber; call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WSRING_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
