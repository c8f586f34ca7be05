//! The MADS request decoders (JSON and binary protobuf DiscoveryRequest) on arbitrary bodies:
//! they return a request or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meshmetric_mads::http::decode_json(data);
    let _ = meshmetric_mads::http::decode_protobuf(data);
});
