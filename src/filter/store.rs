//! The keys module's shared store over Envoy's shared data (one namespace per `vm_id`, shared by
//! every worker of the process, with compare-and-swap).

use super::host;
use crate::keys::{SharedStore, Write};

pub struct EnvoyStore;

impl SharedStore for EnvoyStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        host::shared_get(key).unwrap_or_else(|e| {
            log::warn!("{e}");
            None
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Write {
        match host::shared_set(key, value, cas) {
            Ok(true) => Write::Done,
            Ok(false) => Write::Conflict,
            Err(e) => {
                log::warn!("{e}");
                Write::Failed
            }
        }
    }
}
