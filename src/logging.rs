//! Tracing set-up shared by every subcommand: `RUST_LOG` filter (default
//! `info`), JSON lines when `WSRING_LOG_FORMAT=json`, to stderr.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WSRING_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
