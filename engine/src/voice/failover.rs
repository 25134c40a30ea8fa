//! Voice-server failover, the pure part: which voice server a guild goes to, and the health
//! monitor each shard runs over every voice server of the node.
//!
//! A voice server leaves service in two ways: an operator drains it (`POST
//! /admin/voice/servers/{shard}/drain`), or it stops answering the health pings that every shard
//! sends it through the cross-shard mailboxes. Either way each guild owner shard moves the guilds
//! it owns off that server (`owner::move_guilds_off`): the voice states are registered on the
//! chosen server, every user in voice gets a new VOICE_SERVER_UPDATE (new token, new endpoint),
//! and the old server closes the guild's voice sessions with 4014. 4014 is what Discord documents
//! for "voice server changed"; discord.py 2.x answers it (and a VOICE_SERVER_UPDATE while
//! connected, which makes it close its own socket with 4014) by waiting for the new server update
//! and connecting to the new endpoint, whichever of the two arrives first. 4015 would make it try
//! to resume on the old endpoint instead.
//!
//! Everything here takes time as an argument and does no I/O; `mod.rs` sends the pings.

/// How often every shard pings every voice server; a ping must be answered before the next one
/// is due, so this is also the ping timeout.
pub const VOICE_HEALTH_INTERVAL_MS: u64 = 1_000;
/// Consecutive unanswered pings after which a shard considers a voice server down and moves its
/// guilds away. Five seconds of silence: a loaded 2-core test machine can stall a shard for a
/// second or two, and a needless failover costs every user of the server a reconnect.
pub const VOICE_HEALTH_MISSES_MAX: u32 = 5;
/// A round that comes this many intervals late says the *pinging* shard was stalled: its
/// outstanding pings are not held against their targets.
const LATE_ROUND_INTERVALS: u64 = 2;

const _: () = assert!(VOICE_HEALTH_INTERVAL_MS > 0 && VOICE_HEALTH_MISSES_MAX > 0);

/// What the voice server choice knows about one shard's voice server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerView {
    /// The shard.
    pub shard: usize,
    /// It runs a voice server.
    pub serving: bool,
    /// An operator drained it: it takes no new guilds.
    pub drained: bool,
    /// This shard's health monitor considers it down.
    pub down: bool,
    /// Participants assigned to it (published by the server, plus moves not yet applied).
    pub load: u64,
}

impl ServerView {
    /// Whether it may receive guilds.
    pub fn available(&self) -> bool {
        self.serving && !self.drained && !self.down
    }
}

/// The least loaded available server other than `avoid`; ties go to `prefer` (no hop for
/// control work), then to the lowest index.
pub fn pick_server(
    views: impl IntoIterator<Item = ServerView>,
    prefer: usize,
    avoid: Option<usize>,
) -> Option<usize> {
    views
        .into_iter()
        .filter(|v| v.available() && Some(v.shard) != avoid)
        .min_by_key(|v| (v.load, v.shard != prefer, v.shard))
        .map(|v| v.shard)
}

/// What the health monitor asks its shard to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthAction {
    /// Send ping `id` to the voice server of `shard`.
    Ping {
        /// Target shard.
        shard: usize,
        /// Matches the answer to the ping.
        id: u64,
    },
    /// `shard` missed too many pings: move guilds off it.
    Down(usize),
    /// `shard` answered again after being down: it may take guilds again.
    Up(usize),
}

/// Health settings (from `VoiceSpec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Ping interval, which is also the ping timeout.
    pub interval_ms: u64,
    /// Consecutive misses that make a server down.
    pub misses_max: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: VOICE_HEALTH_INTERVAL_MS,
            misses_max: VOICE_HEALTH_MISSES_MAX,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Target {
    /// The ping waiting for its answer.
    outstanding: Option<u64>,
    misses: u32,
    down: bool,
}

/// One shard's view of the health of every voice server (one slot per shard, fixed at start).
#[derive(Debug)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    targets: Vec<Target>,
    next_round_ms: Option<u64>,
    next_id: u64,
}

impl HealthMonitor {
    /// For a node of `shards` shards.
    pub fn new(shards: usize, cfg: HealthConfig) -> HealthMonitor {
        HealthMonitor {
            cfg: HealthConfig {
                interval_ms: cfg.interval_ms.max(1),
                misses_max: cfg.misses_max.max(1),
            },
            targets: vec![Target::default(); shards],
            next_round_ms: None,
            next_id: 0,
        }
    }

    /// Settings in use.
    pub fn config(&self) -> HealthConfig {
        self.cfg
    }

    /// Whether a round is due at `now_ms` (cheap; the shard asks every turn).
    pub fn due(&self, now_ms: u64) -> bool {
        self.next_round_ms.is_none_or(|t| now_ms >= t)
    }

    /// Runs a round if one is due: unanswered pings of the last round become misses (unless
    /// this shard itself ran late), then every server `serving` says exists is pinged.
    pub fn poll(
        &mut self,
        now_ms: u64,
        serving: impl Fn(usize) -> bool,
        out: &mut Vec<HealthAction>,
    ) {
        if !self.due(now_ms) {
            return;
        }
        let late = self.next_round_ms.is_some_and(|t| {
            now_ms.saturating_sub(t) >= self.cfg.interval_ms * (LATE_ROUND_INTERVALS - 1)
        });
        let misses_max = self.cfg.misses_max;
        for (shard, t) in self.targets.iter_mut().enumerate() {
            if t.outstanding.take().is_some() && !late {
                t.misses = t.misses.saturating_add(1);
                if t.misses >= misses_max && !t.down {
                    t.down = true;
                    out.push(HealthAction::Down(shard));
                }
            }
            if serving(shard) {
                let id = self.next_id;
                self.next_id += 1;
                t.outstanding = Some(id);
                out.push(HealthAction::Ping { shard, id });
            }
        }
        self.next_round_ms = Some(now_ms + self.cfg.interval_ms);
    }

    /// The answer to ping `id` from `shard`; `Up` when that server was down.
    pub fn on_pong(&mut self, shard: usize, id: u64) -> Option<HealthAction> {
        let t = self.targets.get_mut(shard)?;
        if t.outstanding != Some(id) {
            // Late answer to an earlier round: that round already counted it as a miss.
            return None;
        }
        t.outstanding = None;
        t.misses = 0;
        if t.down {
            t.down = false;
            return Some(HealthAction::Up(shard));
        }
        None
    }

    /// Whether `shard`'s voice server is considered down.
    pub fn is_down(&self, shard: usize) -> bool {
        self.targets.get(shard).is_some_and(|t| t.down)
    }

    /// Consecutive pings `shard` has missed.
    pub fn misses(&self, shard: usize) -> u32 {
        self.targets.get(shard).map_or(0, |t| t.misses)
    }

    /// Servers considered down.
    pub fn down_count(&self) -> usize {
        self.targets.iter().filter(|t| t.down).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(shard: usize, load: u64) -> ServerView {
        ServerView {
            shard,
            serving: true,
            drained: false,
            down: false,
            load,
        }
    }

    #[test]
    fn pick_skips_drained_down_idle_and_avoided_servers() {
        let mut vs = vec![view(0, 0), view(1, 5), view(2, 3), view(3, 9)];
        assert_eq!(pick_server(vs.clone(), 1, None), Some(0));
        vs[0].drained = true;
        assert_eq!(pick_server(vs.clone(), 1, None), Some(2));
        vs[2].down = true;
        assert_eq!(pick_server(vs.clone(), 1, None), Some(1));
        assert_eq!(pick_server(vs.clone(), 1, Some(1)), Some(3));
        vs[3].serving = false;
        assert_eq!(pick_server(vs, 1, Some(1)), None, "nowhere to go");
    }

    #[test]
    fn pick_prefers_the_asking_shard_on_ties() {
        let vs = [view(0, 2), view(1, 2), view(2, 2)];
        assert_eq!(pick_server(vs, 2, None), Some(2));
        assert_eq!(pick_server(vs, 2, Some(2)), Some(0));
    }

    fn round(m: &mut HealthMonitor, now: u64, serving: &[bool]) -> Vec<HealthAction> {
        let mut out = Vec::new();
        m.poll(now, |s| serving.get(s).copied().unwrap_or(false), &mut out);
        out
    }

    fn answer_all(m: &mut HealthMonitor, pings: &[HealthAction], except: Option<usize>) {
        for a in pings {
            if let HealthAction::Ping { shard, id } = *a
                && Some(shard) != except
            {
                assert_eq!(m.on_pong(shard, id), None);
            }
        }
    }

    #[test]
    fn a_silent_server_goes_down_after_the_miss_count_and_comes_back_on_an_answer() {
        let cfg = HealthConfig {
            interval_ms: 100,
            misses_max: 3,
        };
        let mut m = HealthMonitor::new(3, cfg);
        let serving = [true, true, false];
        let mut now = 0;
        let first = round(&mut m, now, &serving);
        assert_eq!(first.len(), 2, "only serving shards are pinged: {first:?}");
        answer_all(&mut m, &first, Some(1));
        let mut downs: Vec<HealthAction> = Vec::new();
        for _ in 0..3 {
            now += 100;
            assert!(m.due(now));
            let acts = round(&mut m, now, &serving);
            downs.extend(
                acts.iter()
                    .filter(|a| matches!(a, HealthAction::Down(_)))
                    .copied(),
            );
            answer_all(&mut m, &acts, Some(1));
        }
        assert_eq!(
            downs,
            vec![HealthAction::Down(1)],
            "down once, only shard 1"
        );
        assert!(m.is_down(1) && !m.is_down(0));
        assert_eq!(m.down_count(), 1);
        // It answers the next ping: up again, misses reset.
        now += 100;
        let acts = round(&mut m, now, &serving);
        let id = acts
            .iter()
            .find_map(|a| match a {
                HealthAction::Ping { shard: 1, id } => Some(*id),
                _ => None,
            })
            .expect("still pinged while down");
        assert_eq!(m.on_pong(1, id), Some(HealthAction::Up(1)));
        assert!(!m.is_down(1));
        assert_eq!(m.misses(1), 0);
    }

    #[test]
    fn late_answers_and_stalled_pingers_are_not_misread() {
        let cfg = HealthConfig {
            interval_ms: 100,
            misses_max: 2,
        };
        let mut m = HealthMonitor::new(1, cfg);
        let first = round(&mut m, 0, &[true]);
        assert!(!m.due(50), "not before the interval");
        let HealthAction::Ping { id: old, .. } = first[0] else {
            panic!("{first:?}");
        };
        let _ = round(&mut m, 100, &[true]);
        assert_eq!(m.misses(0), 1);
        assert_eq!(
            m.on_pong(0, old),
            None,
            "an answer to an older round is ignored"
        );
        assert_eq!(m.misses(0), 1);
        // This shard stalled for ten intervals: its own lateness is no miss of the target.
        let _ = round(&mut m, 1_200, &[true]);
        assert_eq!(m.misses(0), 1);
        assert!(!m.is_down(0));
    }
}
