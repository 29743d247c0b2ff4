//! The SSE framer and usage extractor on arbitrary bytes in arbitrary chunks: no panic, memory
//! carried between chunks stays bounded, and a JSON body of any shape is handled.

#![no_main]

use claude_gateway::sse::{Framer, MAX_FIELD};
use claude_gateway::usage::Extraction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte sets the chunk size, the rest is the stream.
    let Some((&size, stream)) = data.split_first() else { return };
    let mut framer = Framer::new();
    let mut x = Extraction::new();
    for chunk in stream.chunks(usize::from(size).max(1)) {
        framer.feed(chunk, &mut |e| {
            x.on_event(e);
        });
        assert!(framer.carried() <= 3 * MAX_FIELD);
    }
    let _ = (x.tokens(), x.status(true), x.status(false));
    let mut json = Extraction::new();
    json.on_json(stream);
    let _ = (json.tokens(), json.status(true));
});
