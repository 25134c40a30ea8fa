//! Voice gateway JSON: decoding client commands and encoding server messages.
//!
//! Client snowflakes may be strings or integers; the server always writes strings. Server
//! messages that a buffered resume may replay carry a top-level `seq` (voice gateway v8).

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde::Deserialize;
use serde_json::{Value, json};

use super::close::VoiceClose;
use crate::crypto::Mode;
use crate::limits::{SECRET_KEY_LEN, VOICE_MESSAGE_LEN_MAX, VOICE_STRING_LEN_MAX};

/// Voice gateway opcodes.
pub mod op {
    /// Client: start a session.
    pub const IDENTIFY: u64 = 0;
    /// Client: choose transport and encryption mode.
    pub const SELECT_PROTOCOL: u64 = 1;
    /// Server: SSRC, UDP endpoint, modes.
    pub const READY: u64 = 2;
    /// Client: keep the connection alive.
    pub const HEARTBEAT: u64 = 3;
    /// Server: chosen mode and secret key.
    pub const SESSION_DESCRIPTION: u64 = 4;
    /// Both: speaking state.
    pub const SPEAKING: u64 = 5;
    /// Server: heartbeat acknowledged.
    pub const HEARTBEAT_ACK: u64 = 6;
    /// Client: continue a session on a new connection.
    pub const RESUME: u64 = 7;
    /// Server: heartbeat interval.
    pub const HELLO: u64 = 8;
    /// Server: resume accepted.
    pub const RESUMED: u64 = 9;
    /// Server: users joined the call.
    pub const CLIENTS_CONNECT: u64 = 11;
    /// Both: video SSRCs of a user (client announces its own; server relays with `user_id`).
    pub const VIDEO: u64 = 12;
    /// Server: a user left the call.
    pub const CLIENT_DISCONNECT: u64 = 13;
    /// Client DAVE commands, ignored: this server always answers `dave_protocol_version: 0`.
    pub const DAVE_IGNORED: [u64; 2] = [23, 31];
}

/// A decoded client command.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCommand {
    /// Op 0.
    Identify(Identify),
    /// Op 1.
    SelectProtocol(SelectProtocol),
    /// Op 3.
    Heartbeat(Heartbeat),
    /// Op 5.
    Speaking(Speaking),
    /// Op 7.
    Resume(Resume),
    /// Op 12.
    Video(Video),
    /// A known opcode this server accepts and ignores.
    Ignored(u64),
}

/// Op 0 payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identify {
    /// Guild (or DM channel) id.
    #[serde(deserialize_with = "snowflake")]
    pub server_id: u64,
    /// The connecting user.
    #[serde(deserialize_with = "snowflake")]
    pub user_id: u64,
    /// The main gateway session id.
    #[serde(deserialize_with = "bounded_string")]
    pub session_id: String,
    /// The token from VOICE_SERVER_UPDATE.
    #[serde(deserialize_with = "bounded_string")]
    pub token: String,
    /// Highest DAVE version the client speaks; informational, we answer 0.
    #[serde(default)]
    pub max_dave_protocol_version: Option<u16>,
}

/// Op 1 payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SelectProtocol {
    /// Must be `udp`.
    #[serde(deserialize_with = "bounded_string")]
    pub protocol: String,
    /// Transport details; their shape depends on the protocol (an object for `udp`, SDP text
    /// for `webrtc`), so they are decoded only once the protocol is known.
    #[serde(default)]
    pub data: Value,
}

impl SelectProtocol {
    /// The `udp` transport details.
    pub fn udp_data(&self) -> Result<SelectProtocolData, VoiceClose> {
        SelectProtocolData::deserialize(&self.data).map_err(|_| VoiceClose::DecodeError)
    }
}

/// The `data` of op 1.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SelectProtocolData {
    /// The client's address as found by IP discovery.
    #[serde(deserialize_with = "bounded_string")]
    pub address: String,
    /// The client's port as found by IP discovery.
    pub port: u16,
    /// The encryption mode name.
    #[serde(deserialize_with = "bounded_string")]
    pub mode: String,
}

/// Op 3 payload: v8 sends `{t, seq_ack}`, older clients a bare nonce.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The nonce to echo (`t` in v8, the whole `d` before).
    pub nonce: Value,
    /// Whether the client used the v8 object form (the ACK mirrors it).
    pub object_form: bool,
    /// Last sequence number the client received.
    pub seq_ack: Option<u64>,
}

/// Op 5 payload from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speaking {
    /// Bitfield: 1 microphone, 2 soundshare, 4 priority.
    pub speaking: u32,
    /// Ignored by the server, echoed in events.
    pub delay: u32,
    /// The SSRC the client claims; the server uses the one it granted.
    pub ssrc: Option<u32>,
}

/// Op 7 payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Resume {
    /// Guild (or DM channel) id.
    #[serde(deserialize_with = "snowflake")]
    pub server_id: u64,
    /// The main gateway session id used to Identify.
    #[serde(deserialize_with = "bounded_string")]
    pub session_id: String,
    /// The voice token.
    #[serde(deserialize_with = "bounded_string")]
    pub token: String,
    /// Last sequence number the client received (v8); absent means "replay nothing".
    #[serde(default)]
    pub seq_ack: Option<i64>,
}

/// Op 12 payload from a client: the SSRCs it will send video on (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Video {
    /// The audio SSRC (the one granted in Ready).
    #[serde(default)]
    pub audio_ssrc: u32,
    /// The video SSRC, 0 when video is off.
    #[serde(default)]
    pub video_ssrc: u32,
    /// The retransmission SSRC, 0 when none.
    #[serde(default)]
    pub rtx_ssrc: u32,
}

#[derive(Deserialize)]
struct Envelope {
    op: u64,
    #[serde(default)]
    d: Value,
}

#[derive(Deserialize)]
struct HeartbeatObject {
    #[serde(default)]
    t: Value,
    #[serde(default)]
    seq_ack: Option<i64>,
}

#[derive(Deserialize)]
struct SpeakingRaw {
    speaking: Value,
    #[serde(default)]
    delay: Option<u32>,
    #[serde(default)]
    ssrc: Option<u32>,
}

fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(D::Error::custom),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| D::Error::custom("snowflake out of range")),
        _ => Err(D::Error::custom("snowflake must be a string or an integer")),
    }
}

fn bounded_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    if s.len() > VOICE_STRING_LEN_MAX {
        return Err(D::Error::custom("string too long"));
    }
    Ok(s)
}

fn payload<T: serde::de::DeserializeOwned>(d: Value) -> Result<T, VoiceClose> {
    serde_json::from_value(d).map_err(|_| VoiceClose::DecodeError)
}

/// Decodes one text message from a client.
pub fn decode(text: &str) -> Result<ClientCommand, VoiceClose> {
    if text.len() > VOICE_MESSAGE_LEN_MAX {
        return Err(VoiceClose::DecodeError);
    }
    let env: Envelope = serde_json::from_str(text).map_err(|_| VoiceClose::DecodeError)?;
    Ok(match env.op {
        op::IDENTIFY => ClientCommand::Identify(payload(env.d)?),
        op::SELECT_PROTOCOL => ClientCommand::SelectProtocol(payload(env.d)?),
        op::HEARTBEAT => ClientCommand::Heartbeat(decode_heartbeat(env.d)?),
        op::SPEAKING => ClientCommand::Speaking(decode_speaking(env.d)?),
        op::RESUME => ClientCommand::Resume(payload(env.d)?),
        op::VIDEO => ClientCommand::Video(payload(env.d)?),
        o if op::DAVE_IGNORED.contains(&o) => ClientCommand::Ignored(o),
        _ => return Err(VoiceClose::UnknownOpcode),
    })
}

fn decode_heartbeat(d: Value) -> Result<Heartbeat, VoiceClose> {
    match d {
        Value::Object(_) => {
            let h: HeartbeatObject = payload(d)?;
            Ok(Heartbeat {
                nonce: h.t,
                object_form: true,
                // A negative ack (-1 = "nothing yet") acknowledges nothing.
                seq_ack: h.seq_ack.and_then(|s| u64::try_from(s).ok()),
            })
        }
        Value::Number(_) | Value::String(_) | Value::Null => Ok(Heartbeat {
            nonce: d,
            object_form: false,
            seq_ack: None,
        }),
        _ => Err(VoiceClose::DecodeError),
    }
}

fn decode_speaking(d: Value) -> Result<Speaking, VoiceClose> {
    let raw: SpeakingRaw = payload(d)?;
    let speaking = match raw.speaking {
        // Pre-v4 clients sent a boolean.
        Value::Bool(b) => u32::from(b),
        Value::Number(n) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(VoiceClose::DecodeError)?,
        _ => return Err(VoiceClose::DecodeError),
    };
    Ok(Speaking {
        speaking,
        delay: raw.delay.unwrap_or(0),
        ssrc: raw.ssrc,
    })
}

fn frame(op: u64, d: Value, seq: Option<u64>) -> String {
    match seq {
        Some(s) => json!({ "op": op, "d": d, "seq": s }).to_string(),
        None => json!({ "op": op, "d": d }).to_string(),
    }
}

/// Op 8 Hello.
pub fn hello(heartbeat_interval_ms: u64) -> String {
    frame(
        op::HELLO,
        json!({ "v": 8, "heartbeat_interval": heartbeat_interval_ms }),
        None,
    )
}

/// Op 2 Ready. `heartbeat_interval` is repeated here because Discord's own Ready carries it;
/// clients take the real one from Hello.
pub fn ready(seq: u64, ssrc: u32, ip: &str, port: u16, heartbeat_interval_ms: u64) -> String {
    let modes: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
    frame(
        op::READY,
        json!({
            "ssrc": ssrc,
            "ip": ip,
            "port": port,
            "modes": modes,
            "heartbeat_interval": heartbeat_interval_ms,
        }),
        Some(seq),
    )
}

/// Op 4 Session Description; `dave_protocol_version` must be present (0: no end-to-end layer).
pub fn session_description(seq: u64, mode: Mode, key: &[u8; SECRET_KEY_LEN]) -> String {
    frame(
        op::SESSION_DESCRIPTION,
        json!({
            "mode": mode.as_str(),
            "secret_key": key.as_slice(),
            "dave_protocol_version": 0,
        }),
        Some(seq),
    )
}

/// Op 6 Heartbeat ACK mirroring the heartbeat's form.
pub fn heartbeat_ack(hb: &Heartbeat) -> String {
    let d = if hb.object_form {
        json!({ "t": hb.nonce })
    } else {
        hb.nonce.clone()
    };
    frame(op::HEARTBEAT_ACK, d, None)
}

/// Op 9 Resumed.
pub fn resumed() -> String {
    frame(op::RESUMED, Value::Null, None)
}

/// Op 5 Speaking about another user.
pub fn speaking(seq: u64, user_id: u64, ssrc: u32, speaking: u32) -> String {
    frame(
        op::SPEAKING,
        json!({ "user_id": user_id.to_string(), "ssrc": ssrc, "speaking": speaking }),
        Some(seq),
    )
}

/// Op 11 Clients Connect.
pub fn clients_connect(seq: u64, user_ids: &[u64]) -> String {
    let ids: Vec<String> = user_ids.iter().map(u64::to_string).collect();
    frame(op::CLIENTS_CONNECT, json!({ "user_ids": ids }), Some(seq))
}

/// Op 12 Video about another user.
pub fn video(seq: u64, user_id: u64, v: &Video) -> String {
    frame(
        op::VIDEO,
        json!({
            "user_id": user_id.to_string(),
            "audio_ssrc": v.audio_ssrc,
            "video_ssrc": v.video_ssrc,
            "rtx_ssrc": v.rtx_ssrc,
        }),
        Some(seq),
    )
}

/// Op 13 Client Disconnect.
pub fn client_disconnect(seq: u64, user_id: u64) -> String {
    frame(
        op::CLIENT_DISCONNECT,
        json!({ "user_id": user_id.to_string() }),
        Some(seq),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn j(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn decodes_discord_py_identify_with_string_or_int_ids() {
        let s = r#"{"op":0,"d":{"server_id":"41771983423143937","user_id":80351110224678912,"session_id":"abc","token":"tok","max_dave_protocol_version":1}}"#;
        match decode(s).unwrap() {
            ClientCommand::Identify(i) => {
                assert_eq!(i.server_id, 41_771_983_423_143_937);
                assert_eq!(i.user_id, 80_351_110_224_678_912);
                assert_eq!((i.session_id.as_str(), i.token.as_str()), ("abc", "tok"));
                assert_eq!(i.max_dave_protocol_version, Some(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_heartbeat_forms() {
        let v8 = decode(r#"{"op":3,"d":{"t":1501184119561,"seq_ack":10}}"#).unwrap();
        let ClientCommand::Heartbeat(h) = v8 else {
            panic!()
        };
        assert_eq!((h.seq_ack, h.object_form), (Some(10), true));
        assert_eq!(
            j(&heartbeat_ack(&h)),
            json!({"op": 6, "d": {"t": 1501184119561u64}})
        );
        let old = decode(r#"{"op":3,"d":1501184119561}"#).unwrap();
        let ClientCommand::Heartbeat(h) = old else {
            panic!()
        };
        assert_eq!(
            j(&heartbeat_ack(&h)),
            json!({"op": 6, "d": 1501184119561u64})
        );
        let none_yet = decode(r#"{"op":3,"d":{"t":1,"seq_ack":-1}}"#).unwrap();
        let ClientCommand::Heartbeat(h) = none_yet else {
            panic!()
        };
        assert_eq!(h.seq_ack, None);
        assert_eq!(decode(r#"{"op":3,"d":[1]}"#), Err(VoiceClose::DecodeError));
    }

    #[test]
    fn decodes_speaking_int_and_bool() {
        let ClientCommand::Speaking(s) =
            decode(r#"{"op":5,"d":{"speaking":5,"delay":0,"ssrc":1}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((s.speaking, s.delay, s.ssrc), (5, 0, Some(1)));
        let ClientCommand::Speaking(s) = decode(r#"{"op":5,"d":{"speaking":true}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.speaking, 1);
        assert_eq!(
            decode(r#"{"op":5,"d":{"speaking":"x"}}"#),
            Err(VoiceClose::DecodeError)
        );
    }

    #[test]
    fn rejects_garbage_unknown_ops_and_oversize() {
        assert_eq!(decode("not json"), Err(VoiceClose::DecodeError));
        assert_eq!(decode(r#"{"d":{}}"#), Err(VoiceClose::DecodeError));
        assert_eq!(
            decode(r#"{"op":99,"d":{}}"#),
            Err(VoiceClose::UnknownOpcode)
        );
        assert_eq!(
            decode(r#"{"op":0,"d":{"server_id":"x"}}"#),
            Err(VoiceClose::DecodeError)
        );
        assert_eq!(
            decode(r#"{"op":12,"d":{}}"#),
            Ok(ClientCommand::Video(Video {
                audio_ssrc: 0,
                video_ssrc: 0,
                rtx_ssrc: 0
            }))
        );
        let big = format!(r#"{{"op":3,"d":"{}"}}"#, "a".repeat(VOICE_MESSAGE_LEN_MAX));
        assert_eq!(decode(&big), Err(VoiceClose::DecodeError));
        let long_token = format!(
            r#"{{"op":0,"d":{{"server_id":1,"user_id":2,"session_id":"s","token":"{}"}}}}"#,
            "t".repeat(VOICE_STRING_LEN_MAX + 1)
        );
        assert_eq!(decode(&long_token), Err(VoiceClose::DecodeError));
    }

    #[test]
    fn server_messages_have_documented_shapes() {
        let r: Value = serde_json::from_str(&ready(1, 7, "10.0.0.1", 50000, 13750)).unwrap();
        assert_eq!(r["op"], 2);
        assert_eq!(r["seq"], 1);
        assert_eq!(r["d"]["ssrc"], 7);
        assert_eq!(r["d"]["ip"], "10.0.0.1");
        assert_eq!(r["d"]["port"], 50000);
        assert_eq!(r["d"]["modes"][1], "aead_xchacha20_poly1305_rtpsize");
        let sd: Value = serde_json::from_str(&session_description(
            2,
            Mode::XChaCha20Poly1305RtpSize,
            &[9; 32],
        ))
        .unwrap();
        assert_eq!(sd["d"]["mode"], "aead_xchacha20_poly1305_rtpsize");
        assert_eq!(sd["d"]["secret_key"].as_array().unwrap().len(), 32);
        assert_eq!(sd["d"]["secret_key"][0], 9);
        assert_eq!(sd["d"]["dave_protocol_version"], 0);
        let sp: Value = serde_json::from_str(&speaking(3, 42, 7, 1)).unwrap();
        assert_eq!(
            (sp["d"]["user_id"].as_str(), &sp["d"]["ssrc"]),
            (Some("42"), &json!(7))
        );
        let cc: Value = serde_json::from_str(&clients_connect(4, &[1, 2])).unwrap();
        assert_eq!(cc["d"]["user_ids"], json!(["1", "2"]));
        let cd: Value = serde_json::from_str(&client_disconnect(5, 1)).unwrap();
        assert_eq!(cd["d"]["user_id"], "1");
        let h: Value = serde_json::from_str(&hello(13750)).unwrap();
        assert_eq!(h["d"]["heartbeat_interval"], 13750);
        assert!(h.get("seq").is_none());
        assert_eq!(j(&resumed()), json!({"op": 9, "d": null}));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn decode_never_panics(s in ".{0,300}") {
            let _ = decode(&s);
        }

        #[test]
        fn decode_never_panics_on_jsonish(op in 0u64..40, d in r#"\{("[a-z_]{1,12}":("[a-z0-9]{0,8}"|-?[0-9]{1,20}|true|null|\[\]),?){0,5}\}"#) {
            let _ = decode(&format!(r#"{{"op":{op},"d":{d}}}"#));
        }
    }
}
