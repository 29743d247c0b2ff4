//! The response side of the downstream instance: each chunk is read for usage as it passes and
//! never held back. What the answer's dialect needs is done on the way: a Bedrock event stream
//! becomes SSE chunk by chunk (or is only decoded, for a client that speaks Bedrock), a vendor's
//! error body becomes the API's envelope, Bedrock's token count the API's shape.

use super::effects::ResponseHeaders;
use super::host;
use super::stats::Stats;
use crate::dialect::answer::{self, MAX_REWRITTEN, Treatment};
use crate::eventstream::Transcoder;
use crate::metrics;
use crate::sse::Framer;
use crate::tools::{ToolConfig, ToolWatch};
use crate::usage::Extraction;
use std::rc::Rc;

/// How the body is read for usage.
enum Reader {
    /// Not read (other endpoints, or usage accounting off).
    Off,
    /// Server-sent events, framed as they arrive.
    Events(Framer),
    /// A JSON body, copied (bounded) and parsed at its end.
    Json(Vec<u8>),
}

pub struct Response {
    reader: Reader,
    treatment: Treatment,
    /// Bedrock's event stream, decoded frame by frame.
    transcoder: Option<Transcoder>,
    /// The models a consumer may use (`Treatment::Models`).
    pub models: Vec<crate::pattern::Pattern>,
    /// A vendor's error or count answer, held to be rewritten (bounded, a few hundred bytes).
    held: Vec<u8>,
    /// The status and `x-amzn-errortype` of an error to rewrite.
    error: (u32, Option<String>),
    pub extraction: Extraction,
    /// The tool calls of the answer, when the configuration watches them.
    pub tools: ToolWatch,
    config: Option<Rc<crate::config::Config>>,
    /// The response reached its end.
    pub ended: bool,
    pub first_content_ns: Option<u64>,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            reader: Reader::Off,
            treatment: Treatment::Pass,
            transcoder: None,
            models: Vec::new(),
            held: Vec::new(),
            error: (0, None),
            extraction: Extraction::new(),
            tools: ToolWatch::new(),
            config: None,
            ended: false,
            first_content_ns: None,
        }
    }
}

impl Response {
    /// Usage was read (or the response ended), so the record has an extraction status.
    pub fn was_read(&self) -> bool {
        !matches!(self.reader, Reader::Off) || self.ended
    }

    /// The response head: decides how the body is read and changed, and changes the head to
    /// match (content type, length, the status of a rewritten error). With `read`, the body is
    /// read for usage and for the tool calls the configuration watches.
    pub fn start(
        &mut self,
        id: u32,
        headers: &ResponseHeaders,
        treatment: Treatment,
        read: Option<Rc<crate::config::Config>>,
        end_of_stream: bool,
    ) {
        self.treatment = treatment;
        let read_usage = read.is_some();
        self.config = read.filter(|c| c.tools.enabled);
        let content_type = headers.get("content-type").unwrap_or_default();
        match treatment {
            Treatment::Pass => {}
            Treatment::Transcode | Treatment::Observe => self.transcoder = Some(Transcoder::new()),
            Treatment::Error | Treatment::CountTokens | Treatment::Models => {
                let status = headers.status().map_or(0, u32::from);
                let aws = headers.get("x-amzn-errortype").map(str::to_owned);
                // The status can only change now, before the body says what it is: only AWS's
                // errors (named by their header) get the status the API would have used.
                if treatment == Treatment::Error && aws.is_some() {
                    if let Some((s, _)) = answer::error(status, aws.as_deref(), b"{}") {
                        set_header(id, ":status", &s.to_string());
                    }
                }
                self.error = (status, aws);
                set_header(id, "content-type", "application/json");
            }
        }
        if treatment == Treatment::Transcode {
            set_header(id, "content-type", "text/event-stream");
            set_header(id, "cache-control", "no-cache");
        }
        if treatment != Treatment::Pass && treatment != Treatment::Observe {
            // The length changes: the body goes out chunked.
            if let Err(e) = host::remove_response_header("content-length") {
                log::debug!("#{id} {e}");
            }
        }
        if read_usage {
            let sse = content_type.starts_with("text/event-stream") || self.transcoder.is_some();
            self.reader = if sse {
                Reader::Events(Framer::new())
            } else {
                Reader::Json(Vec::new())
            };
        }
        if end_of_stream {
            self.done(id, None);
        }
    }

    /// One body chunk (`size` bytes in Envoy's buffer); the chunk Envoy forwards is replaced
    /// when the treatment rewrites it.
    pub fn chunk(&mut self, id: u32, stats: &Stats, size: usize, end: bool, max_json: usize) {
        let rewrites = !matches!(self.treatment, Treatment::Pass | Treatment::Observe);
        let reads = !matches!(self.reader, Reader::Off) || self.transcoder.is_some() || rewrites;
        let chunk = if size > 0 && reads {
            match host::response_body(0, size) {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("#{id} {e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        match self.treatment {
            Treatment::Pass => self.read(&chunk, max_json),
            Treatment::Transcode | Treatment::Observe => {
                if let Some(t) = &mut self.transcoder {
                    t.feed(&chunk, &mut out);
                    if end {
                        t.finish(&mut out);
                    }
                }
                self.read(&out, max_json);
            }
            Treatment::Error | Treatment::CountTokens | Treatment::Models => {
                // A models list is a few KiB, vendors' answers a few hundred bytes.
                let cap = if self.treatment == Treatment::Models {
                    16 * MAX_REWRITTEN
                } else {
                    MAX_REWRITTEN
                };
                if self.held.len() + chunk.len() <= cap {
                    self.held.extend_from_slice(&chunk);
                }
                if end {
                    out = self.rewritten();
                    self.read(&out, max_json);
                }
            }
        }
        if rewrites {
            // Replace the chunk (an empty one at the end of a chunked body takes the bytes).
            if let Err(e) = host::set_response_body(0, size, &out) {
                log::warn!("#{id} cannot rewrite the response: {e}");
            }
        }
        if end {
            self.done(id, Some(stats));
        }
    }

    /// The held vendor answer in the API's shape.
    fn rewritten(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        match self.treatment {
            Treatment::CountTokens => answer::count_tokens(&held).unwrap_or(held),
            Treatment::Models => crate::keys::models::visible(&held, &self.models).unwrap_or(held),
            _ => {
                let (status, aws) = &self.error;
                answer::error(*status, aws.as_deref(), &held).map_or(held, |(_, body)| body)
            }
        }
    }

    /// Feeds SSE or JSON bytes (the client's view of the body) to the usage reader.
    fn read(&mut self, bytes: &[u8], max_json: usize) {
        match &mut self.reader {
            Reader::Off => {}
            Reader::Events(framer) => {
                let (extraction, watch) = (&mut self.extraction, &mut self.tools);
                let tools = self.config.as_deref().map(|c| &c.tools);
                let mut first_content = false;
                framer.feed(bytes, &mut |e| {
                    first_content |= extraction.on_event(e);
                    if let Some(t) = tools {
                        watch.on_event(t, &e);
                    }
                });
                if first_content {
                    self.first_content_ns = host::now_nanos().ok();
                }
            }
            Reader::Json(buf) => {
                if buf.len() + bytes.len() <= max_json {
                    buf.extend_from_slice(bytes);
                } else {
                    // Too large to read: the usage is reported as failed, the body flows on.
                    self.reader = Reader::Off;
                    self.extraction.on_json(b"");
                }
            }
        }
    }

    /// The response is complete (also called from the trailers callback).
    pub fn done(&mut self, id: u32, stats: Option<&Stats>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(t) = &self.transcoder {
            if let Some(m) = t.metrics() {
                self.extraction.fallback(
                    m.input_tokens,
                    m.output_tokens,
                    m.cache_read_input_tokens,
                    m.cache_write_input_tokens,
                );
            }
            if let (Some(f), Some(stats)) = (t.failure(), stats) {
                log::debug!("#{id} event stream cut short: {}", f.as_str());
                stats.add(&metrics::transcode_failures(f.as_str()), 1);
            }
        }
        let tools = self.config.clone();
        let tools: Option<&ToolConfig> = tools.as_deref().map(|c| &c.tools);
        if let Reader::Json(buf) = &self.reader {
            self.extraction.on_json(buf);
            if let Some(t) = tools {
                self.tools.on_json(t, buf);
            }
            self.reader = Reader::Off;
        }
        if let Some(t) = tools {
            self.tools.finish(t);
        }
    }
}

fn set_header(id: u32, name: &str, value: &str) {
    if let Err(e) = host::set_response_header(name, value) {
        log::warn!("#{id} cannot set {name}: {e}");
    }
}
