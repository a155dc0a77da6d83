//! Hostile frame bytes: decode must return an error or records, never panic or over-allocate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, recs)) = foxing_proto::decode_frame(data) {
        assert_eq!(recs.len(), h.record_count as usize);
        // What decodes must re-encode to a frame that decodes to the same records.
        let again = foxing_proto::encode_frame(&recs, 1).expect("re-encode");
        assert_eq!(foxing_proto::decode_frame(&again).expect("re-decode").1, recs);
    }
});
