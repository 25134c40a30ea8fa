//! Per-connection command rate limit: a fixed window of `COMMAND_WINDOW_MS` starting at the
//! first command, `COMMANDS_PER_WINDOW_MAX` commands in it (close 4008 above). A fixed window
//! costs 12 bytes per session; a sliding log would cost 8 bytes per allowed command.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{COMMAND_WINDOW_MS, COMMANDS_PER_WINDOW_MAX};

/// Fixed-window command counter on the caller's clock.
#[derive(Debug, Clone, Default)]
pub struct CommandLimiter {
    window_start_ms: u64,
    count: u32,
}

impl CommandLimiter {
    /// Counts one command at `now_ms`; false when it exceeds the window's budget.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        if self.count == 0 || now_ms.saturating_sub(self.window_start_ms) >= COMMAND_WINDOW_MS {
            self.window_start_ms = now_ms;
            self.count = 0;
        }
        self.count += 1;
        self.count <= COMMANDS_PER_WINDOW_MAX
    }

    /// Commands left in the current window at `now_ms`.
    pub fn remaining(&self, now_ms: u64) -> u32 {
        if now_ms.saturating_sub(self.window_start_ms) >= COMMAND_WINDOW_MS {
            COMMANDS_PER_WINDOW_MAX
        } else {
            COMMANDS_PER_WINDOW_MAX.saturating_sub(self.count)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn window_boundaries() {
        let mut l = CommandLimiter::default();
        let t0 = 1_000;
        for i in 0..COMMANDS_PER_WINDOW_MAX {
            assert!(l.allow(t0 + u64::from(i)), "command {i}");
        }
        assert_eq!(l.remaining(t0 + 500), 0);
        assert!(!l.allow(t0 + COMMAND_WINDOW_MS - 1));
        // A new window opens exactly COMMAND_WINDOW_MS after the first command.
        assert_eq!(l.remaining(t0 + COMMAND_WINDOW_MS), COMMANDS_PER_WINDOW_MAX);
        assert!(l.allow(t0 + COMMAND_WINDOW_MS));
        assert_eq!(
            l.remaining(t0 + COMMAND_WINDOW_MS),
            COMMANDS_PER_WINDOW_MAX - 1
        );
    }
}
