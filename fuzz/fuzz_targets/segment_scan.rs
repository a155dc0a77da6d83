//! Hostile segment bytes: header parse and frame scan never panic, and what they accept is
//! consistent (frames lie inside the buffer, seqs continue).
#![no_main]
use foxing_journal::segment::{scan_frames, SegmentHeader, SEGMENT_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = match SegmentHeader::parse(data) {
        Ok(h) => h.first_seq,
        Err(_) => 1,
    };
    let body = data.get(SEGMENT_HEADER_LEN..).unwrap_or(&[]);
    let scan = scan_frames(body, SEGMENT_HEADER_LEN as u64, first);
    let mut next = first;
    for f in &scan.frames {
        assert_eq!(f.header.first_seq, next);
        next = f.header.last_seq() + 1;
        let start = f.offset as usize - SEGMENT_HEADER_LEN;
        let bytes = &body[start..start + f.header.frame_len()];
        let _ = foxing_proto::decode_frame(bytes);
    }
    assert!(scan.valid_end as usize <= data.len().max(SEGMENT_HEADER_LEN));
});
