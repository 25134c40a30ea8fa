//! The servers the gateway scenarios compare: Hearth's gateway and nginx + Nchan.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A WebSocket server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GwTarget {
    /// `hearth`'s Discord-compatible gateway: upgrade, Hello, Identify, READY.
    Hearth,
    /// nginx with the Nchan module: upgrade on `/sub/<channel>` subscribes; nothing else.
    Nchan,
}

impl GwTarget {
    /// Every target, in report order (Hearth first: ratios are Hearth ÷ peer).
    pub const ALL: [GwTarget; 2] = [GwTarget::Hearth, GwTarget::Nchan];

    /// Lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GwTarget::Hearth => "hearth",
            GwTarget::Nchan => "nchan",
        }
    }
}

impl fmt::Display for GwTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GwTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GwTarget::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target {s:?} (hearth, nchan)"))
    }
}

/// A target that could not be measured, and why; reports list these instead of numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GwFailure {
    /// Which target.
    pub target: GwTarget,
    /// The error.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in GwTarget::ALL {
            assert_eq!(t.name().parse::<GwTarget>(), Ok(t));
        }
        assert!("monoio".parse::<GwTarget>().is_err());
    }
}
