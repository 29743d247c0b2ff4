//! A proxy-wasm filter that does only what any body-reading filter must: it holds the request
//! until the body is complete, copies the body into the VM and sets the routing header the
//! shipped routes need. With the plugin configuration `rewrite` it also writes the body back the
//! way an injected marker near its end makes the gateway do (drain the head, prepend it again,
//! set `content-length`). `make bench` runs both beside the gateway so the table shows which
//! part of the cost is the wasm runtime's and which is the gateway's own.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { rewrite: false }) });
}}

struct Root {
    rewrite: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.rewrite = self.get_plugin_configuration().as_deref() == Some(b"rewrite");
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            rewrite: self.rewrite,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    rewrite: bool,
}

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
        self.set_http_request_header("x-claude-gateway-cluster", Some("plain"));
        Action::Continue
    }
}
