//! hiltd's config file: any text. Parsing and checking must end in a
//! config or an error naming the line and key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = hilt_daemon::Config::parse(text, "fuzz.toml");
});
