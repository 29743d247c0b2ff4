//! The proxy-wasm glue: the only code that imports `proxy_wasm`. Callbacks stay short: they
//! gather input through `host`, ask the pure core for a plan and apply it.

mod effects;
mod host;
mod http;
mod memory;
mod probe;
mod profile;
mod response;
mod root;
mod stats;
mod store;
mod sync;
mod upstream;

use host::LogLevel;

proxy_wasm::main! {{
    // No host calls here: Envoy restricts them while the module initializes.
    let _ = log::set_logger(&HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    // With `panic = "abort"` a panic traps the VM; make sure Envoy's log says why.
    std::panic::set_hook(Box::new(|info| {
        let _ = host::log(LogLevel::Critical, &info.to_string());
    }));
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}

/// Forwards the `log` macros to Envoy's log.
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        let _ = host::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Mirrors Envoy's log level so filtered-out lines cost no host call.
fn refresh_log_level() {
    let filter = match host::log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) | Err(_) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) => log::LevelFilter::Error,
        Ok(LogLevel::Critical) => log::LevelFilter::Off,
    };
    log::set_max_level(filter);
}
