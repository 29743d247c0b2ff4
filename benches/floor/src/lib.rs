//! A proxy-wasm filter that does only what any body-reading filter must: it holds the request
//! until the body is complete, copies the body into the VM and sets the routing header the
//! shipped routes need. `make bench` runs it beside the gateway so the table shows which part of
//! the cost is the wasm runtime's and which is the gateway's own.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Floor) });
}}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(self.get_http_request_body(0, body_size));
        self.set_http_request_header("x-claude-gateway-cluster", Some("plain"));
        Action::Continue
    }
}
