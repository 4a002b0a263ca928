//! What the examples share: logging set up the way the `skelseg` binary does it.

/// Logs to stderr at `default` level (`RUST_LOG` overrides it), with ANSI colours only on a
/// terminal and never when `NO_COLOR` is set to anything but the empty string — the binary's
/// rule (`log_colours` in `src/bin/skelseg/common.rs`), so a log redirected to a file holds no
/// escape codes.
pub fn init_logging(default: &str) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}
