//! Discord-compatible gateway protocol (API v10, JSON): per-connection [`Session`] state
//! machine, commands, dispatch fan-out with a shared payload, resume ring, intents, rate limits
//! and transport compression.

pub mod command;
pub mod compress;
pub mod dispatch;
pub mod events;
pub mod intents;
pub mod opcode;
pub mod output;
pub mod ratelimit;
pub mod ready;
pub mod resume_ring;
pub mod session;
pub mod sharding;
pub mod snowflake;

pub use command::{
    Command, CommandError, Identify, LazyRequest, PresenceUpdate, RequestGuildMembers, Resume,
    VoiceStateUpdate,
};
pub use dispatch::SharedEvent;
pub use events::SessionEvent;
pub use opcode::{CloseCode, op};
pub use output::{OutFrame, OutputQueue};
pub use ready::{ReadyApplication, ReadyParams, ReadyUser};
pub use session::{GatewayConfig, Session, SessionError};
pub use snowflake::Snowflake;
