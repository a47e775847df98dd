//! Canonical 16-bit PCM WAV: the 44-byte header we write recordings with, the size repair
//! for recordings a crash left behind, and a total reader for prompt files.
//!
//! File IO is the shell's job; this module only turns numbers into bytes and back.

use thiserror::Error;

/// Length of the canonical header (RIFF + `fmt ` + `data` chunk headers).
pub const HEADER_LEN: usize = 44;
/// Offset of the RIFF chunk size (file length − 8), patched when a recording is finalised.
pub const RIFF_SIZE_OFFSET: usize = 4;
/// Offset of the `data` chunk size, patched when a recording is finalised.
pub const DATA_SIZE_OFFSET: usize = 40;
/// `WAVE_FORMAT_PCM`.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE`, whose sub-format may be PCM.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Bytes from the RIFF size field's end to the data: "WAVE" + fmt chunk (24) + data header (8).
const RIFF_OVERHEAD: u32 = 36;

/// Shape of 16-bit PCM audio: channels and sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    /// Interleaved channels.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
}

/// Header sizes recomputed from a file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairedSizes {
    /// Value for the RIFF size field (offset 4).
    pub riff_size: u32,
    /// Value for the `data` size field (offset 40).
    pub data_size: u32,
}

/// A header of ours compared with its file's length ([`PcmFormat::check_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderCheck {
    /// The `data` size the header claims.
    pub claimed_data_size: u32,
    /// The sizes the file's length gives.
    pub sizes: RepairedSizes,
    /// Whether the header's size fields disagree with `sizes` and must be rewritten.
    pub needs_repair: bool,
}

impl PcmFormat {
    /// 8 kHz mono: prompts.
    pub const MONO_8K: PcmFormat = PcmFormat {
        channels: 1,
        sample_rate: 8000,
    };
    /// 8 kHz stereo: call recordings (left = caller, right = what the caller heard).
    pub const STEREO_8K: PcmFormat = PcmFormat {
        channels: 2,
        sample_rate: 8000,
    };

    /// Bytes per frame (all channels of one sample instant).
    pub const fn block_align(&self) -> u16 {
        self.channels.saturating_mul(2)
    }

    /// Bytes per second.
    pub const fn byte_rate(&self) -> u32 {
        self.sample_rate.saturating_mul(self.block_align() as u32)
    }

    /// The canonical header for `data_size` bytes of audio. Write it with 0 when a recording
    /// starts, and again with the real size when it ends.
    pub fn header(&self, data_size: u32) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        let riff_size = data_size.saturating_add(RIFF_OVERHEAD);
        let parts: [&[u8]; 13] = [
            b"RIFF",
            &riff_size.to_le_bytes(),
            b"WAVE",
            b"fmt ",
            &16u32.to_le_bytes(),
            &FORMAT_PCM.to_le_bytes(),
            &self.channels.to_le_bytes(),
            &self.sample_rate.to_le_bytes(),
            &self.byte_rate().to_le_bytes(),
            &self.block_align().to_le_bytes(),
            &16u16.to_le_bytes(),
            b"data",
            &data_size.to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            if let Some(slot) = header.get_mut(at..at + part.len()) {
                slot.copy_from_slice(part);
            }
            at += part.len();
        }
        header
    }

    /// Sizes for a recording of `file_len` bytes whose header was never finalised (the
    /// process died): data is everything after the header, cut to whole frames, and capped
    /// at what the 32-bit fields can express. `None` if the file is shorter than a header.
    pub fn repair_sizes(&self, file_len: u64) -> Option<RepairedSizes> {
        let audio_bytes = file_len.checked_sub(HEADER_LEN as u64)?;
        let block = u64::from(self.block_align().max(1));
        let max_data = u64::from(u32::MAX - RIFF_OVERHEAD);
        let data_size = audio_bytes.min(max_data) / block * block;
        let data_size = u32::try_from(data_size).ok()?;
        Some(RepairedSizes {
            riff_size: data_size + RIFF_OVERHEAD,
            data_size,
        })
    }

    /// The whole corrected header for a crash-left file of `file_len` bytes.
    pub fn repaired_header(&self, file_len: u64) -> Option<[u8; HEADER_LEN]> {
        Some(self.header(self.repair_sizes(file_len)?.data_size))
    }

    /// Compares the first bytes of a file of `file_len` bytes with its length. `None` when
    /// they are not a canonical header of this format — not one of our recordings, to be left
    /// alone — or the file is shorter than a header.
    pub fn check_header(&self, header: &[u8; HEADER_LEN], file_len: u64) -> Option<HeaderCheck> {
        let canonical = self.header(0);
        // Ours: the same bytes as our header everywhere but the two size fields, which a
        // crash leaves at any value.
        let after_riff_size = RIFF_SIZE_OFFSET + 4;
        let ours = header.get(..RIFF_SIZE_OFFSET) == canonical.get(..RIFF_SIZE_OFFSET)
            && header.get(after_riff_size..DATA_SIZE_OFFSET)
                == canonical.get(after_riff_size..DATA_SIZE_OFFSET);
        let sizes = self.repair_sizes(file_len).filter(|_| ours)?;
        let claimed_data_size = u32_at(header, DATA_SIZE_OFFSET).unwrap_or(0);
        let claimed_riff_size = u32_at(header, RIFF_SIZE_OFFSET).unwrap_or(0);
        Some(HeaderCheck {
            claimed_data_size,
            sizes,
            needs_repair: claimed_data_size != sizes.data_size
                || claimed_riff_size != sizes.riff_size,
        })
    }
}

/// Why bytes are not a WAV file we can read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WavError {
    /// Missing `RIFF`…`WAVE` signature.
    #[error("not a RIFF/WAVE file")]
    NotWave,
    /// No (complete) `fmt ` chunk before the data.
    #[error("WAV file has no complete `fmt ` chunk")]
    NoFormat,
    /// No `data` chunk.
    #[error("WAV file has no `data` chunk")]
    NoData,
}

/// A parsed WAV file, borrowing its audio bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavData<'a> {
    /// Format tag (1 = PCM; extensible files report their sub-format).
    pub format_tag: u16,
    /// Channels.
    pub channels: u16,
    /// Sample rate.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// The `data` chunk, clamped to the bytes present (files cut short still read).
    pub data: &'a [u8],
}

impl WavData<'_> {
    /// Whether this is 16-bit integer PCM.
    pub fn is_pcm16(&self) -> bool {
        self.format_tag == FORMAT_PCM && self.bits_per_sample == 16
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*bytes.get(at..)?.first_chunk::<2>()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk::<4>()?))
}

/// Walks the RIFF chunks of a WAV file. Total: any bytes give `Ok` or `Err`.
pub fn parse(bytes: &[u8]) -> Result<WavData<'_>, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let mut format: Option<(u16, u16, u32, u16)> = None;
    let mut at = 12usize;
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(bytes, at + 4)) {
        let body_start = at + 8;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = bytes.get(body_start..body_end).unwrap_or_default();
        match id {
            b"fmt " => {
                let tag = u16_at(body, 0).ok_or(WavError::NoFormat)?;
                let channels = u16_at(body, 2).ok_or(WavError::NoFormat)?;
                let rate = u32_at(body, 4).ok_or(WavError::NoFormat)?;
                let bits = u16_at(body, 14).ok_or(WavError::NoFormat)?;
                // Extensible: the sub-format GUID starts with the real format tag.
                let tag = if tag == FORMAT_EXTENSIBLE {
                    u16_at(body, 24).unwrap_or(tag)
                } else {
                    tag
                };
                format = Some((tag, channels, rate, bits));
            }
            b"data" => {
                let (format_tag, channels, sample_rate, bits_per_sample) =
                    format.ok_or(WavError::NoFormat)?;
                return Ok(WavData {
                    format_tag,
                    channels,
                    sample_rate,
                    bits_per_sample,
                    data: body,
                });
            }
            _ => {}
        }
        // Chunks are padded to even length.
        at = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err(if format.is_some() {
        WavError::NoData
    } else {
        WavError::NoFormat
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn with_hound(format: PcmFormat, samples: &[i16]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for &s in samples {
            writer.write_sample(s).expect("write");
        }
        writer.finalize().expect("finalize");
        cursor.into_inner()
    }

    #[test]
    fn our_header_is_byte_identical_to_hounds() {
        let samples = [1i16, -2, 3, -4, 5, -6];
        for format in [PcmFormat::MONO_8K, PcmFormat::STEREO_8K] {
            let file = with_hound(format, &samples);
            assert_eq!(file.len(), HEADER_LEN + 12);
            assert_eq!(&format.header(12)[..], &file[..HEADER_LEN], "{format:?}");
        }
    }

    #[test]
    fn header_reads_back_with_hound() {
        let mut file = PcmFormat::STEREO_8K.header(8).to_vec();
        file.extend_from_slice(&[1, 0, 2, 0, 3, 0, 4, 0]);
        let reader = hound::WavReader::new(Cursor::new(file)).expect("valid");
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 8000);
        let samples: Vec<i16> = reader.into_samples().map(|s| s.expect("sample")).collect();
        assert_eq!(samples, vec![1, 2, 3, 4]);
    }

    #[test]
    fn repair_counts_whole_frames_after_the_header() {
        let stereo = PcmFormat::STEREO_8K;
        assert_eq!(stereo.repair_sizes(43), None);
        assert_eq!(
            stereo.repair_sizes(44),
            Some(RepairedSizes {
                riff_size: 36,
                data_size: 0
            })
        );
        // 3 s of stereo plus a torn frame of 3 bytes.
        assert_eq!(
            stereo.repair_sizes(44 + 96_000 + 3),
            Some(RepairedSizes {
                riff_size: 96_036,
                data_size: 96_000
            })
        );
        // Beyond 4 GiB the fields saturate at the last whole frame that fits.
        let huge = stereo.repair_sizes(10 << 30).expect("long enough");
        assert_eq!(huge.data_size % 4, 0);
        assert!(u64::from(huge.riff_size) <= u64::from(u32::MAX));
        assert!(huge.data_size > u32::MAX - 40);
    }

    #[test]
    fn a_crash_left_file_becomes_readable_after_repair() {
        // The process died: header still says 0 bytes of data, and a frame is torn.
        let mut file = PcmFormat::STEREO_8K.header(0).to_vec();
        for i in 0..100i16 {
            file.extend_from_slice(&i.to_le_bytes());
            file.extend_from_slice(&(-i).to_le_bytes());
        }
        file.extend_from_slice(&[7, 7]);
        let header = PcmFormat::STEREO_8K
            .repaired_header(file.len() as u64)
            .expect("long enough");
        file[..HEADER_LEN].copy_from_slice(&header);
        let reader = hound::WavReader::new(Cursor::new(&file[..])).expect("valid");
        assert_eq!(reader.duration(), 100);
    }

    #[test]
    fn a_header_is_checked_against_the_file_length() {
        let stereo = PcmFormat::STEREO_8K;
        // Finalised: nothing to do.
        let done = stereo.check_header(&stereo.header(96_000), 44 + 96_000);
        assert_eq!(
            done,
            Some(HeaderCheck {
                claimed_data_size: 96_000,
                sizes: RepairedSizes {
                    riff_size: 96_036,
                    data_size: 96_000
                },
                needs_repair: false,
            })
        );
        // The process died: the header still says 0 and a frame is torn.
        let crashed = stereo
            .check_header(&stereo.header(0), 44 + 96_000 + 3)
            .expect("ours");
        assert_eq!(crashed.claimed_data_size, 0);
        assert_eq!(crashed.sizes.data_size, 96_000);
        assert!(crashed.needs_repair);
        // A right data size under a wrong RIFF size is repaired too.
        let mut riff_wrong = stereo.header(96_000);
        riff_wrong[RIFF_SIZE_OFFSET] ^= 1;
        let check = stereo.check_header(&riff_wrong, 44 + 96_000);
        assert!(check.expect("ours").needs_repair);
    }

    #[test]
    fn only_our_own_headers_of_whole_length_are_checked() {
        let stereo = PcmFormat::STEREO_8K;
        // Another format (a mono prompt), or not a WAV at all: not ours.
        assert_eq!(
            stereo.check_header(&PcmFormat::MONO_8K.header(0), 1000),
            None
        );
        assert_eq!(stereo.check_header(&[0x55; HEADER_LEN], 1000), None);
        // Shorter than a header: nothing to check.
        assert_eq!(stereo.check_header(&stereo.header(0), 43), None);
    }

    #[test]
    fn parse_reads_hound_files_and_skips_unknown_chunks() {
        let file = with_hound(PcmFormat::MONO_8K, &[10, 20, 30]);
        let wav = parse(&file).expect("parses");
        assert!(wav.is_pcm16());
        assert_eq!((wav.channels, wav.sample_rate), (1, 8000));
        assert_eq!(wav.data, &[10, 0, 20, 0, 30, 0]);

        // A LIST chunk of odd length (padded) between fmt and data, as editors write.
        let mut edited = file[..36].to_vec();
        edited.extend_from_slice(b"LIST");
        edited.extend_from_slice(&3u32.to_le_bytes());
        edited.extend_from_slice(&[1, 2, 3, 0]);
        edited.extend_from_slice(&file[36..]);
        assert_eq!(parse(&edited).expect("parses").data, wav.data);
    }

    #[test]
    fn parse_clamps_a_data_chunk_cut_short() {
        let mut file = PcmFormat::MONO_8K.header(1000).to_vec();
        file.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(parse(&file).expect("parses").data, &[1, 0, 2, 0]);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b""), Err(WavError::NotWave));
        assert_eq!(parse(b"RIFF\0\0\0\0AVI LIST"), Err(WavError::NotWave));
        assert_eq!(parse(b"RIFF\0\0\0\0WAVE"), Err(WavError::NoFormat));
        let header = PcmFormat::MONO_8K.header(0);
        assert_eq!(parse(&header[..36]), Err(WavError::NoData));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_riff_wave_prefixed_bytes(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = parse(&bytes);
        }

        #[test]
        fn header_round_trips_through_parse(channels in 1u16..8, rate in 1u32..200_000, frames in 0u32..1000) {
            let format = PcmFormat { channels, sample_rate: rate };
            let data_size = frames * u32::from(format.block_align());
            let mut file = format.header(data_size).to_vec();
            file.resize(HEADER_LEN + data_size as usize, 0);
            let wav = parse(&file).expect("parses");
            prop_assert!(wav.is_pcm16());
            prop_assert_eq!((wav.channels, wav.sample_rate), (channels, rate));
            prop_assert_eq!(wav.data.len(), data_size as usize);
        }

        #[test]
        fn repair_never_panics_and_is_whole_frames(len in any::<u64>(), channels in 0u16..16) {
            let format = PcmFormat { channels, sample_rate: 8000 };
            if let Some(sizes) = format.repair_sizes(len) {
                prop_assert_eq!(sizes.riff_size, sizes.data_size + 36);
                prop_assert_eq!(sizes.data_size % u32::from(format.block_align().max(1)), 0);
                prop_assert!(u64::from(sizes.data_size) + 44 <= len);
            }
        }
    }
}
