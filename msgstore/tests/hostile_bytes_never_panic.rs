//! Every decoder of on-disk bytes takes hostile input: random or mutated bytes give an error or
//! a value, never a panic or an unbounded allocation.

use msgstore::codec::decode_version;
use msgstore::manifest::Manifest;
use msgstore::message::{Body, Version};
use msgstore::sim::sample_message;
use msgstore::sst::{self, Compression, FOOTER_BYTES};
use msgstore::wal::{
    HeaderState, SegmentHeader, decode_header, encode_header, encode_record, scan_records,
};
use proptest::prelude::*;

fn valid_sst() -> Vec<u8> {
    let v: Vec<Version> = (1..200u64)
        .map(|i| Version {
            seq: i,
            body: Body::Message(sample_message(1, i << 22)),
        })
        .collect();
    sst::build(v.iter(), Compression::Lz4).0
}

fn valid_segment() -> Vec<u8> {
    let h = SegmentHeader {
        number: 1,
        start_seq: 1,
    };
    let mut buf = Vec::new();
    encode_header(&h, &mut buf);
    let mut scratch = Vec::new();
    for i in 1..50u64 {
        encode_record(
            &Version {
                seq: i,
                body: Body::Message(sample_message(1, i << 22)),
            },
            &mut scratch,
            &mut buf,
        );
    }
    buf
}

fn decode_sst_everything(bytes: &[u8]) {
    let size = bytes.len() as u64;
    let Some(tail) = bytes
        .len()
        .checked_sub(FOOTER_BYTES)
        .and_then(|s| bytes.get(s..))
    else {
        return;
    };
    let Ok(footer) = sst::decode_footer(tail, size) else {
        return;
    };
    let start = footer.meta_offset as usize;
    let Some(meta_bytes) = bytes.get(start..start + footer.meta_len as usize) else {
        return;
    };
    let Ok(meta) = sst::decode_meta(meta_bytes, footer) else {
        return;
    };
    for b in &meta.blocks {
        if let Some(blk) = bytes.get(b.offset as usize..(b.offset + u64::from(b.len)) as usize) {
            let _ = sst::decode_block(blk);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_version(&bytes);
        let _ = Manifest::decode(&bytes);
        let _ = sst::decode_block(&bytes);
        decode_sst_everything(&bytes);
        if let HeaderState::Valid(h) = decode_header(&bytes) {
            let _ = scan_records(&bytes, &h);
        }
        let _ = scan_records(&bytes, &SegmentHeader { number: 0, start_seq: 0 });
    }

    #[test]
    fn mutated_sorted_file(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..8)) {
        let mut bytes = valid_sst();
        for (i, x) in &flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        decode_sst_everything(&bytes);
    }

    #[test]
    fn mutated_segment_keeps_a_valid_prefix(at in any::<prop::sample::Index>(), x in 1..=255u8) {
        let good = valid_segment();
        let mut bytes = good.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= x;
        if let HeaderState::Valid(h) = decode_header(&bytes) {
            let scan = scan_records(&bytes, &h);
            // Everything before the damaged byte is intact and replayed.
            prop_assert!(scan.end_offset as usize <= good.len());
            let clean = scan_records(&good, &h);
            let intact = clean.records.iter().zip(&scan.records).take_while(|(a, b)| a == b).count();
            prop_assert_eq!(intact, scan.records.len());
        }
    }
}
