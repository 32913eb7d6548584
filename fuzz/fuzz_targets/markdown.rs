#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopchat_relay::fuzzing::markdown(data));
