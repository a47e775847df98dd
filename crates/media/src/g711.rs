//! ITU-T G.711 A-law and µ-law, by the reference algorithm.
//!
//! Encoding works on 16-bit linear PCM and keeps the top 13 (A-law) or 14 (µ-law) bits, as the
//! reference does. Decoding uses 256-entry tables built at compile time from the same
//! algorithm, so the per-packet path is a table lookup.

use crate::rtp::PayloadType;

/// The two codecs every emergency caller's phone is expected to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law (Europe, Indonesia and most of the world outside North America and Japan).
    Pcma,
    /// G.711 µ-law (North America, Japan).
    Pcmu,
}

impl Codec {
    /// The static RTP payload type of RFC 3551 (8 for PCMA, 0 for PCMU).
    pub const fn static_payload_type(self) -> PayloadType {
        match self {
            Codec::Pcma => PayloadType(8),
            Codec::Pcmu => PayloadType(0),
        }
    }

    /// The codec a static payload type stands for, if it is one of ours.
    ///
    /// Incoming packets should be decoded by their own payload type: an offerer may switch
    /// between the G.711 laws it offered.
    pub const fn from_static_payload_type(payload_type: PayloadType) -> Option<Codec> {
        match payload_type.0 {
            8 => Some(Codec::Pcma),
            0 => Some(Codec::Pcmu),
            _ => None,
        }
    }

    /// The encoding name used in `a=rtpmap` (`PCMA`, `PCMU`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }

    /// Encodes one linear sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcma => alaw_encoded(sample),
            Codec::Pcmu => ulaw_encoded(sample),
        }
    }

    /// The law's code word → linear sample table.
    fn decode_table(self) -> &'static [i16; 256] {
        match self {
            Codec::Pcma => &ALAW_TO_LINEAR,
            Codec::Pcmu => &ULAW_TO_LINEAR,
        }
    }

    /// Decodes one code word.
    pub fn decode_sample(self, code: u8) -> i16 {
        self.decode_table()[usize::from(code)]
    }

    /// The code word for digital silence (what an idle stream carries).
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    /// Encodes as many samples as fit in `out`; returns how many were written
    /// (`min(samples.len(), out.len())`).
    pub fn encode(self, samples: &[i16], out: &mut [u8]) -> usize {
        // One law per packet, chosen once: each loop is then a plain table lookup.
        let pairs = out.iter_mut().zip(samples);
        let written = pairs.len();
        match self {
            Codec::Pcma => pairs.for_each(|(code, &sample)| *code = alaw_encoded(sample)),
            Codec::Pcmu => pairs.for_each(|(code, &sample)| *code = ulaw_encoded(sample)),
        }
        written
    }

    /// Decodes as many code words as fit in `out`; returns how many were written
    /// (`min(payload.len(), out.len())`).
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        let table = self.decode_table();
        let pairs = out.iter_mut().zip(payload);
        let written = pairs.len();
        pairs.for_each(|(sample, &code)| *sample = table[usize::from(code)]);
        written
    }
}

/// Upper bounds of the eight A-law segments, in 13-bit magnitude.
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// Upper bounds of the eight µ-law segments, in biased 14-bit magnitude.
const ULAW_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// µ-law bias added before the segment search (0x84 in 16-bit scale, 0x21 in 14-bit scale).
const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude µ-law can represent before the bias is added.
const ULAW_CLIP: i32 = 8159;

/// The segment (exponent) of `magnitude`: the first segment whose end is not below it, or 8
/// when it is beyond the last one.
const fn segment(magnitude: i32, ends: &[i32; 8]) -> i32 {
    let mut seg = 0;
    while seg < 8 {
        if magnitude <= ends[seg] {
            return seg as i32;
        }
        seg += 1;
    }
    8
}

/// The code of every input a law distinguishes (A-law: `sample >> 3`, µ-law: `sample >> 2`),
/// offset to start at 0: encoding is then one lookup, as it runs for every sample sent on
/// every call.
const fn encode_table<const N: usize>(law: Codec) -> [u8; N] {
    let shift = match law {
        Codec::Pcma => 3,
        Codec::Pcmu => 2,
    };
    let mut table = [0; N];
    let mut i = 0;
    while i < N {
        let sample = ((i as i32 - (N / 2) as i32) << shift) as i16;
        table[i] = match law {
            Codec::Pcma => linear_to_alaw(sample),
            Codec::Pcmu => linear_to_ulaw(sample),
        };
        i += 1;
    }
    table
}

static ALAW_ENCODE: [u8; 8192] = encode_table(Codec::Pcma);
static ULAW_ENCODE: [u8; 16384] = encode_table(Codec::Pcmu);

#[inline]
fn alaw_encoded(sample: i16) -> u8 {
    // (sample >> 3) + 4096 is in 0..8192 for every i16.
    ALAW_ENCODE[((i32::from(sample) >> 3) + 4096) as usize]
}

#[inline]
fn ulaw_encoded(sample: i16) -> u8 {
    // (sample >> 2) + 8192 is in 0..16384 for every i16.
    ULAW_ENCODE[((i32::from(sample) >> 2) + 8192) as usize]
}

/// Linear 16-bit → A-law (G.711 §A, even bits inverted).
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let mut magnitude = (sample as i32) >> 3;
    let sign_mask: i32 = if magnitude >= 0 {
        0xD5
    } else {
        magnitude = -magnitude - 1;
        0x55
    };
    let seg = segment(magnitude, &ALAW_SEGMENT_END);
    let code = if seg >= 8 {
        0x7F
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        (seg << 4) | ((magnitude >> shift) & 0x0F)
    };
    // The value is confined to 8 bits by the masks above.
    ((code ^ sign_mask) & 0xFF) as u8
}

/// Linear 16-bit → µ-law (G.711 §B, all bits inverted).
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let mut magnitude = (sample as i32) >> 2;
    let sign_mask: i32 = if magnitude < 0 {
        magnitude = -magnitude;
        0x7F
    } else {
        0xFF
    };
    if magnitude > ULAW_CLIP {
        magnitude = ULAW_CLIP;
    }
    magnitude += ULAW_BIAS >> 2;
    let seg = segment(magnitude, &ULAW_SEGMENT_END);
    let code = if seg >= 8 {
        0x7F
    } else {
        (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)
    };
    ((code ^ sign_mask) & 0xFF) as u8
}

const fn alaw_to_linear(code: u8) -> i16 {
    let code = (code ^ 0x55) as i32;
    let mantissa = (code & 0x0F) << 4;
    let seg = (code & 0x70) >> 4;
    let magnitude = match seg {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (seg - 1),
    };
    // At most 0x7E00 in magnitude: always fits an i16.
    if code & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let code = (!code) as i32;
    let magnitude = (((code & 0x0F) << 3) + ULAW_BIAS) << ((code & 0x70) >> 4);
    // At most 0x7F7B - 0x84: always fits an i16.
    if code & 0x80 != 0 {
        (ULAW_BIAS - magnitude) as i16
    } else {
        (magnitude - ULAW_BIAS) as i16
    }
}

/// Builds a 256-entry decode table (a macro because const fns cannot call fn pointers).
macro_rules! decode_table {
    ($decode:ident) => {{
        let mut table = [0i16; 256];
        let mut code = 0usize;
        while code < 256 {
            table[code] = $decode(code as u8);
            code += 1;
        }
        table
    }};
}

/// A-law code word → linear 16-bit.
static ALAW_TO_LINEAR: [i16; 256] = decode_table!(alaw_to_linear);
/// µ-law code word → linear 16-bit.
static ULAW_TO_LINEAR: [i16; 256] = decode_table!(ulaw_to_linear);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_encode_tables_agree_with_the_g711_formulas_for_every_sample() {
        for sample in i16::MIN..=i16::MAX {
            assert_eq!(
                Codec::Pcma.encode_sample(sample),
                linear_to_alaw(sample),
                "{sample}"
            );
            assert_eq!(
                Codec::Pcmu.encode_sample(sample),
                linear_to_ulaw(sample),
                "{sample}"
            );
        }
    }

    #[test]
    fn every_alaw_code_round_trips_decode_then_encode() {
        for code in 0..=255u8 {
            let linear = Codec::Pcma.decode_sample(code);
            assert_eq!(
                Codec::Pcma.encode_sample(linear),
                code,
                "A-law {code:#04x} → {linear}"
            );
        }
    }

    #[test]
    fn every_ulaw_code_round_trips_except_negative_zero() {
        for code in 0..=255u8 {
            let linear = Codec::Pcmu.decode_sample(code);
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                Codec::Pcmu.encode_sample(linear),
                expected,
                "µ-law {code:#04x} → {linear}"
            );
        }
        // 0x7F is µ-law's "negative zero": it decodes to 0 like 0xFF does.
        assert_eq!(Codec::Pcmu.decode_sample(0x7F), 0);
        assert_eq!(Codec::Pcmu.decode_sample(0xFF), 0);
    }

    #[test]
    fn reference_values_match_g711_tables() {
        // Values from the G.711 reference decoder tables.
        assert_eq!(Codec::Pcma.decode_sample(0xD5), 8);
        assert_eq!(Codec::Pcma.decode_sample(0x55), -8);
        assert_eq!(Codec::Pcma.decode_sample(0xAA), 32256);
        assert_eq!(Codec::Pcma.decode_sample(0x2A), -32256);
        assert_eq!(Codec::Pcmu.decode_sample(0x80), 32124);
        assert_eq!(Codec::Pcmu.decode_sample(0x00), -32124);
        assert_eq!(Codec::Pcma.silence(), 0xD5);
        assert_eq!(Codec::Pcmu.silence(), 0xFF);
        assert_eq!(Codec::Pcma.encode_sample(i16::MAX), 0xAA);
        assert_eq!(Codec::Pcma.encode_sample(i16::MIN), 0x2A);
        assert_eq!(Codec::Pcmu.encode_sample(i16::MAX), 0x80);
        assert_eq!(Codec::Pcmu.encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn decoding_is_odd_symmetric_around_the_sign_bit() {
        for code in 0..=0x7Fu8 {
            assert_eq!(
                Codec::Pcma.decode_sample(code),
                -Codec::Pcma.decode_sample(code | 0x80)
            );
            assert_eq!(
                Codec::Pcmu.decode_sample(code),
                -Codec::Pcmu.decode_sample(code | 0x80)
            );
        }
    }

    #[test]
    fn slice_helpers_stop_at_the_shorter_buffer() {
        let samples = [0i16, 1000, -1000, 20000];
        let mut codes = [0u8; 3];
        assert_eq!(Codec::Pcma.encode(&samples, &mut codes), 3);
        let mut back = [0i16; 8];
        assert_eq!(Codec::Pcma.decode(&codes, &mut back), 3);
        assert_eq!(back[3..], [0; 5]);
    }

    #[test]
    fn payload_types_are_the_static_ones() {
        assert_eq!(Codec::Pcma.static_payload_type(), PayloadType(8));
        assert_eq!(Codec::Pcmu.static_payload_type(), PayloadType(0));
        assert_eq!(
            Codec::from_static_payload_type(PayloadType(8)),
            Some(Codec::Pcma)
        );
        assert_eq!(Codec::from_static_payload_type(PayloadType(18)), None);
    }

    proptest! {
        /// Quantisation error stays within half a step of the segment the sample falls in.
        #[test]
        fn encode_decode_error_is_bounded(sample in any::<i16>()) {
            for codec in [Codec::Pcma, Codec::Pcmu] {
                let back = codec.decode_sample(codec.encode_sample(sample));
                let error = (i32::from(sample) - i32::from(back)).abs();
                // Largest step is 1024 (A-law) / 1024 (µ-law) at full scale; relative error ≤ ~3.2 %.
                let bound = (i32::from(sample).abs() / 16).max(16) + 16;
                prop_assert!(error <= bound, "{codec:?} {sample} → {back} (error {error})");
            }
        }

        /// Encoding is monotonic: a louder sample never gets a quieter code.
        #[test]
        fn encoding_is_monotonic(a in any::<i16>(), b in any::<i16>()) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            for codec in [Codec::Pcma, Codec::Pcmu] {
                let low_back = codec.decode_sample(codec.encode_sample(low));
                let high_back = codec.decode_sample(codec.encode_sample(high));
                prop_assert!(low_back <= high_back);
            }
        }
    }
}
