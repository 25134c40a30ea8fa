//! Real Opus audio for the voice load: one second of a tone encoded once with libopus
//! (`audiopus`), replayed frame by frame by every speaker. The SFUs never decode audio, but
//! real frames give real packet sizes.

#[cfg(feature = "opus")]
use audiopus::coder::Encoder;
#[cfg(feature = "opus")]
use audiopus::{Application, Bitrate, Channels, SampleRate};

use crate::BenchError;

/// Samples per 20 ms frame at 48 kHz mono.
pub const FRAME_SAMPLES: usize = 960;
/// Frames encoded: one second, replayed in a loop.
pub const FRAMES: usize = 50;
/// Tone frequency, Hz (concert A).
pub const TONE_HZ: f64 = 440.0;
/// Tone amplitude, a share of full scale.
pub const TONE_AMPLITUDE: f64 = 0.3;
/// Encoder bitrate, bits per second (what Discord's clients use for voice by default).
pub const BITRATE_BPS: i32 = 64_000;
/// Largest encoded frame kept (libopus' own recommended output buffer).
pub const ENCODED_LEN_MAX: usize = 1275;
/// Sample rate, Hz.
#[cfg(feature = "opus")]
const RATE_HZ: f64 = 48_000.0;

/// Encodes [`FRAMES`] frames of the tone; returns them in order.
#[cfg(feature = "opus")]
pub fn tone_frames() -> Result<Vec<Vec<u8>>, BenchError> {
    let err = |e: audiopus::Error| BenchError::Client(format!("libopus: {e}"));
    let mut enc =
        Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).map_err(err)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(BITRATE_BPS))
        .map_err(err)?;
    let mut frames = Vec::with_capacity(FRAMES);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut out = [0u8; ENCODED_LEN_MAX];
    for f in 0..FRAMES {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * FRAME_SAMPLES + i) as f64 / RATE_HZ;
            let v = (2.0 * std::f64::consts::PI * TONE_HZ * t).sin() * TONE_AMPLITUDE;
            *s = (v * f64::from(i16::MAX)) as i16;
        }
        let n = enc.encode(&pcm, &mut out).map_err(err)?;
        frames.push(out.get(..n).unwrap_or_default().to_vec());
    }
    Ok(frames)
}

/// Without libopus linked there are no real frames to send: the scenario refuses to run rather
/// than send something that is not Opus.
#[cfg(not(feature = "opus"))]
pub fn tone_frames() -> Result<Vec<Vec<u8>>, BenchError> {
    Err(BenchError::Invalid(
        "hearth-bench was built without the `opus` feature (libopus); \
         bench/run-voice.sh installs libopus-dev and builds with --features opus"
            .into(),
    ))
}

#[cfg(all(test, feature = "opus"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tone_encodes_to_real_frames() {
        let frames = tone_frames().unwrap();
        assert_eq!(frames.len(), FRAMES);
        for f in &frames {
            // Not the 3-byte silence frame the SFU drops, and within one MTU.
            assert!(f.len() > 3 && f.len() <= ENCODED_LEN_MAX, "{}", f.len());
        }
        let mut dec = audiopus::coder::Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        let n = dec
            .decode(Some(frames[10].as_slice()), &mut pcm[..], false)
            .unwrap();
        assert_eq!(n, FRAME_SAMPLES);
    }
}
