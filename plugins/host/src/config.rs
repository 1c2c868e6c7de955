//! Host configuration: per-call limits, the instance pool and the compiled-code cache.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{PluginError, Result};

/// Limits applied to every plugin call. Each call runs in a fresh instance, so every limit is per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call, enforced by epoch interruption with a 1 ms tick: a call is
    /// stopped between `timeout - 1 ms` and `timeout` after it starts (plus scheduling delay).
    /// Default 5 ms. At least 2 ms, at most 10 s.
    pub timeout: Duration,
    /// Instruction budget of one call (wasmtime fuel, about one unit per wasm instruction), or `None`
    /// for no budget. Unlike the deadline it does not depend on the machine's load, so a plugin that
    /// runs out of fuel does so on every machine. Default 10,000,000.
    pub fuel: Option<u64>,
    /// Linear-memory cap in bytes (initial size plus growth). Default 16 MiB.
    pub memory_bytes: usize,
    /// Cap on the answer: the error message's bytes, or 4 bytes per chosen waitlist entry. Default 64 KiB.
    pub output_bytes: usize,
    /// Most elements in one table. Default 10,000.
    pub table_elements: usize,
    /// Most core instances one plugin may create. Default 8.
    pub instances: u32,
    /// Most tables one plugin may create. Default 4.
    pub tables: u32,
    /// Most linear memories one plugin may create. Default 1.
    pub memories: u32,
    /// Wasm stack size in bytes; deeper recursion traps with a stack-limit error. Default 256 KiB.
    pub stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(5),
            fuel: Some(10_000_000),
            memory_bytes: 16 << 20,
            output_bytes: 64 << 10,
            table_elements: 10_000,
            instances: 8,
            tables: 4,
            memories: 1,
            stack_bytes: 256 << 10,
        }
    }
}

/// Configuration of a [`PluginHost`](crate::PluginHost).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Where compiled plugins are kept between runs, keyed by the module's SHA-256 and the wasmtime
    /// version and settings. `None` (the default) compiles in memory only, once per host.
    ///
    /// The directory must be writable only by the service: compiled code read from it is trusted
    /// (each file carries a checksum that catches truncation and corruption, not tampering).
    pub cache_dir: Option<PathBuf>,
    /// Most plugin calls running at the same time, the size of the pre-allocated instance pool.
    /// A call beyond it fails with [`Limit::Concurrency`](crate::Limit::Concurrency). Default 128
    /// when zero.
    pub max_concurrent_calls: u32,
}

impl HostConfig {
    /// A configuration with the default limits and an on-disk cache in `dir`.
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: Some(dir.into()),
            ..Self::default()
        }
    }

    pub(crate) fn concurrency(&self) -> u32 {
        if self.max_concurrent_calls == 0 {
            128
        } else {
            self.max_concurrent_calls
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let l = &self.limits;
        let bad = |field, reason: &str| {
            Err(PluginError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if l.timeout < Duration::from_millis(2) || l.timeout > Duration::from_secs(10) {
            return bad("timeout", "must be 2 ms to 10 s");
        }
        if l.fuel == Some(0) {
            return bad("fuel", "must be positive (or None for no budget)");
        }
        if l.memory_bytes < 64 << 10 || l.memory_bytes > 1 << 30 {
            return bad("memory_bytes", "must be 64 KiB to 1 GiB");
        }
        if l.output_bytes < 64 || l.output_bytes > 16 << 20 {
            return bad("output_bytes", "must be 64 B to 16 MiB");
        }
        if l.table_elements == 0 || l.table_elements > 10_000_000 {
            return bad("table_elements", "must be 1 to 10,000,000");
        }
        if l.instances == 0 || l.instances > 100 {
            return bad("instances", "must be 1 to 100");
        }
        if l.tables == 0 || l.tables > 100 {
            return bad("tables", "must be 1 to 100");
        }
        if l.memories == 0 || l.memories > 16 {
            return bad("memories", "must be 1 to 16");
        }
        if l.stack_bytes < 16 << 10 || l.stack_bytes > 8 << 20 {
            return bad("stack_bytes", "must be 16 KiB to 8 MiB");
        }
        if self.concurrency() > 10_000 {
            return bad("max_concurrent_calls", "at most 10,000");
        }
        Ok(())
    }
}
