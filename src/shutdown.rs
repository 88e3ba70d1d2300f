//! SIGINT/SIGTERM to a cancellation token.
//!
//! Two phases: the token (stop taking new work) fires on the first signal; the worker's
//! grace period then decides when running work is interrupted. A second signal exits
//! at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGINT or SIGTERM. A second signal exits the
/// process at once with status 130.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    // The streams are created once and polled twice: a fresh listener per wait could
    // see the first signal again.
    let streams =
        signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
    match streams {
        Ok((mut interrupt, mut terminate)) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutdown signal received; stopping");
                fired.cancel();
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::warn!("second signal received; exiting now");
                std::process::exit(130);
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGINT/SIGTERM; stop the process with SIGKILL")
        }
    }
    token
}
