//! The push receiver on arbitrary bodies: the in-place OTLP protobuf reader and the store take
//! them in or refuse them, and rendering what was taken in never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetric_dp::push::{PushLimits, Store};

fuzz_target!(|data: &[u8]| {
    let store = Store::new(PushLimits {
        max_senders: 4,
        max_series_per_sender: 64,
        ..PushLimits::default()
    });
    if store.ingest_protobuf(data).is_ok() {
        let _ = store.render();
    }
});
