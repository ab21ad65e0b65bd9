//! What every certpilot Lambda function needs from its invocation context.

use std::time::Duration;

use tokio::time::Instant;

/// The invocation's deadline as a monotonic instant, from the context's `deadline` (ms).
pub fn invocation_deadline(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Instant::now() + Duration::from_millis(remaining_ms(deadline_ms, now_ms))
}

/// Milliseconds left before `deadline`. Lambda sends an epoch time in milliseconds; cargo
/// lambda's local emulator sends the function timeout itself (e.g. 600000), which as an
/// epoch time would be 1970. A value that old is read as the time budget it really is.
fn remaining_ms(deadline: u64, now_ms: u64) -> u64 {
    const A_YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    if deadline < A_YEAR_MS {
        deadline
    } else {
        deadline.saturating_sub(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_or_budgets() {
        let now = 1_795_000_000_000;
        assert_eq!(remaining_ms(now + 900_000, now), 900_000);
        assert_eq!(remaining_ms(now - 5, now), 0);
        assert_eq!(remaining_ms(600_000, now), 600_000);
    }
}
