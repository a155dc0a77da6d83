//! Hostile wire bytes from a network peer: the message decoder and both peers' session state
//! machines must return errors, never panic or allocate beyond the message limit.
#![no_main]
use foxing_proto::wire::{
    answer_hello, encode_message, JournalView, Message, MessageDecoder, ReplicaSession,
    ShipperSession, Welcome,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size, so message boundaries fall anywhere.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = (chunk as usize % 64) + 1;
    let mut dec = MessageDecoder::new();
    let mut replica = ReplicaSession::new("replica", 0, 0);
    let view = JournalView {
        journal_id: 7,
        first_seq: 1,
        durable_seq: 1000,
        durable_time_ns: 1,
        new_replica_start: 1,
        new_replica_apply_from: 1,
    };
    let mut shipper = ShipperSession::new(&Welcome {
        version: 1,
        journal_id: 7,
        start_seq: 1,
        apply_from_seq: 1,
        first_seq: 1,
        durable_seq: 1000,
        durable_time_ns: 1,
    });
    for c in rest.chunks(chunk) {
        dec.push(c);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    // What decodes re-encodes to the same bytes' meaning.
                    let mut d2 = MessageDecoder::new();
                    d2.push(&encode_message(&m));
                    assert_eq!(d2.next_message().expect("re-decode"), Some(m.clone()));
                    if let Message::Hello(h) = &m {
                        let _ = answer_hello(h, &view, true);
                    }
                    let _ = shipper.on_message(m.clone());
                    let _ = replica.on_message(m);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
