//! A proxy-wasm filter that does only what any body-reading filter must: it holds the request
//! until the body is complete, copies the body into the VM and sets the routing header the
//! shipped routes need. With the plugin configuration `rewrite` it also writes the body back the
//! way an injected marker near its end makes the gateway do (drain the head, prepend it again,
//! set `content-length`). With `calls` it also makes the other host calls the gateway's default
//! configuration makes per request (headers read in one call, the session's shared data read
//! and written, metrics, properties for the record, the record written, the response read),
//! doing nothing with their answers: the floor its host calls alone set. `make bench` runs them
//! beside the gateway so the table shows which part of the cost is the wasm runtime's, which
//! the host calls' and which the gateway's own code's.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    rewrite: bool,
    calls: bool,
    counter: u32,
    histogram: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.calls = config == b"calls";
        self.rewrite = config == b"rewrite" || self.calls;
        if self.calls {
            self.counter = hostcalls::define_metric(MetricType::Counter, "floor.requests").unwrap();
            self.histogram =
                hostcalls::define_metric(MetricType::Histogram, "floor.duration_ms").unwrap();
        }
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            rewrite: self.rewrite,
            calls: self.calls.then_some((self.counter, self.histogram)),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    rewrite: bool,
    /// The metric ids of the `calls` mode.
    calls: Option<(u32, u32)>,
}

/// The shared-data key the `calls` mode reads and writes, as the gateway's session table does.
const SLOT: &str = "floor.session.0.0";

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.calls.is_some() {
            let _ = self.get_current_time();
            std::hint::black_box(self.get_http_request_headers_bytes());
            self.set_http_request_header("accept-encoding", Some("identity"));
        }
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
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        if self.rewrite && body.len() > 1 {
            // Everything but the closing brace, drained and put back in two pieces.
            let (head, mid) = body.split_at((body.len() - 1) / 2);
            let mid = &mid[..mid.len() - 1];
            self.set_http_request_body(0, body.len() - 1, mid);
            self.set_http_request_body(0, 0, head);
            self.set_http_request_header("content-length", Some(&body.len().to_string()));
        }
        std::hint::black_box(body);
        if let Some((counter, _)) = self.calls {
            let _ = self.get_current_time();
            std::hint::black_box(self.get_shared_data(SLOT));
            let _ = hostcalls::increment_metric(counter, 1);
        }
        self.set_http_request_header("x-claude-gateway-cluster", Some("plain"));
        if self.calls.is_some() {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.calls.is_some() {
            std::hint::black_box(self.get_http_response_headers_bytes());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.calls.is_some() {
            std::hint::black_box(self.get_http_response_body(0, body_size));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some((counter, histogram)) = self.calls else {
            return;
        };
        let _ = self.get_current_time();
        for path in [
            vec!["upstream", "address"],
            vec!["response", "code_details"],
            vec!["upstream", "request_attempt_count"],
        ] {
            std::hint::black_box(self.get_property(path));
        }
        let (value, cas) = self.get_shared_data(SLOT);
        let value = value.unwrap_or_else(|| vec![b'x'; 200]);
        let _ = self.set_shared_data(SLOT, Some(&value), cas);
        for _ in 0..5 {
            let _ = hostcalls::increment_metric(counter, 1);
        }
        let _ = hostcalls::record_metric(histogram, 1);
        let record = vec![b'r'; 1200];
        let _ = self.set_property(vec!["wasm.claude_gateway"], Some(&record));
    }
}
