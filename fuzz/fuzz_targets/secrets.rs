//! cargo-fuzz entry point; the target's body and its properties: `claude_gateway_fuzz::secrets`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| claude_gateway_fuzz::secrets(data));
