//! Hostile postcard batches: decode must return an error or records, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(recs) = foxing_proto::frame::decode_records(data) {
        for r in &recs {
            let _ = r.op.kind_name();
            if let foxing_proto::Op::Write { path, .. } = &r.op {
                let _ = path.check();
                let _ = path.to_string();
            }
        }
    }
});
