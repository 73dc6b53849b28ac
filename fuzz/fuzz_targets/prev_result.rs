//! `prevResult` as DEL and CHECK read it. Nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = vpc_cni_cni::parse_prev(&v);
        let _ = vpc_cni_cni::parse_prev(&serde_json::json!({ "prevResult": v }));
    }
});
