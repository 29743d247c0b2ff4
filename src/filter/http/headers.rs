//! The request's headers as the filter sees and changes them: read from Envoy once, cached,
//! and changed only when a change changes something (each change is a host call).

use super::Http;
use crate::filter::effects;
use crate::filter::host;
use crate::plan::HeaderOp;

impl Http {
    pub(super) fn request_header(&self, name: &str) -> Option<String> {
        host::request_header(name).unwrap_or_else(|e| {
            log::warn!("#{} {e}", self.id);
            None
        })
    }

    /// Reads every request header in one host call, so later lookups cost none.
    pub(super) fn load_headers(&mut self) {
        match host::request_headers() {
            Ok(pairs) => {
                self.seen.headers.reserve(pairs.len());
                for (name, value) in pairs {
                    // The first value of a repeated header, as a single lookup returns.
                    if self.seen.headers.contains_key(&name) {
                        self.seen.repeated.push(name);
                    } else {
                        self.seen.headers.insert(name, Some(value));
                    }
                }
                self.seen.all_headers = true;
            }
            Err(e) => log::warn!("#{} {e}", self.id),
        }
    }

    /// A request header, read from Envoy at most once per request.
    pub(super) fn cached_header(&mut self, name: &str) -> Option<String> {
        if let Some(v) = self.seen.headers.get(name) {
            return v.clone();
        }
        if self.seen.all_headers {
            // Every header is in the map: an absent one costs no allocation.
            return None;
        }
        let v = self.request_header(name);
        self.seen.headers.insert(name.to_owned(), v.clone());
        v
    }

    pub(super) fn set_request_header(&mut self, name: &str, value: &str) {
        if self.changes(name, Some(value)) {
            if let Err(e) = host::set_request_header(name, value) {
                log::warn!("#{} cannot set {name}: {e}", self.id);
            }
        }
    }

    /// Applies header changes, skipping those that change nothing: each one is a host call.
    pub(super) fn apply_headers(&mut self, ops: &[HeaderOp]) {
        let needed: Vec<HeaderOp> = ops
            .iter()
            .filter(|op| match op {
                HeaderOp::Set(name, value) => self.changes(name, Some(value)),
                HeaderOp::Remove(name) => self.changes(name, None),
            })
            .cloned()
            .collect();
        effects::apply_headers(self.id, &needed);
    }

    /// Records that `name` is about to become `new` (`None`: removed); false if it already is
    /// (a header the request does not have needs no removal).
    pub(super) fn changes(&mut self, name: &str, new: Option<&str>) -> bool {
        let unchanged = match self.seen.headers.get(name) {
            _ if self.seen.repeated.iter().any(|r| r == name) => false,
            Some(current) => current.as_deref() == new,
            None => self.seen.all_headers && new.is_none(),
        };
        if !unchanged {
            self.seen
                .headers
                .insert(name.to_owned(), new.map(str::to_owned));
        }
        !unchanged
    }
}
