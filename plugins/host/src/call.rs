//! One plugin call's runtime: the wasmtime store it runs in, with the host's limits installed and
//! its epoch deadline set, and how its errors are classified. Shared by the host (which loads
//! plugins) and the loaded policies (which call them).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, PoolConcurrencyLimitError, ResourceLimiter, Store, Trap};

use crate::config::Limits;
use crate::error::{Limit, PluginError, Result};

/// Period of the epoch ticker that enforces [`Limits::timeout`].
pub(crate) const EPOCH_TICK: Duration = Duration::from_micros(TICK_US);
const TICK_US: u64 = 1000;

/// What every call needs: the engine, the limits, the deadline in epoch ticks, and the ticker thread
/// that moves the epoch on (it runs as long as a host or a loaded plugin holds the runtime).
pub(crate) struct Runtime {
    engine: Engine,
    pub(crate) limits: Limits,
    deadline_ticks: u64,
    _ticker: Ticker,
}

impl Runtime {
    /// Starts the epoch ticker for `engine`.
    pub(crate) fn new(engine: Engine, limits: Limits, deadline_ticks: u64) -> Result<Self> {
        let ticker = Ticker::start(engine.clone())?;
        Ok(Self {
            engine,
            limits,
            deadline_ticks,
            _ticker: ticker,
        })
    }

    /// A fresh store for one call, with the limits installed.
    pub(crate) fn store(&self) -> Store<CallState> {
        let l = &self.limits;
        let mut store = Store::new(&self.engine, CallState::new(l));
        store.limiter(|s| s);
        if let Some(fuel) = l.fuel {
            // Cannot fail: the engine consumes fuel exactly when `l.fuel` is set.
            let _ = store.set_fuel(fuel);
        }
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Self> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("evently-plugin-epoch".into())
            .spawn(move || {
                // One increment per tick, never a catch-up burst: ticks owed from before a call
                // started would count against that call and stop it early. A late wake-up (a busy
                // machine) makes a deadline late, never early.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Config {
                field: "epoch ticker",
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per-call store data: the limits, and which one was hit (set by the limiter before it traps).
pub(crate) struct CallState {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub(crate) hit: Option<Limit>,
}

impl CallState {
    fn new(l: &Limits) -> Self {
        Self {
            memory_bytes: l.memory_bytes,
            table_elements: l.table_elements,
            instances: l.instances as usize,
            tables: l.tables as usize,
            memories: l.memories as usize,
            hit: None,
        }
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(Limit::Memory);
            return Err(wasmtime::Error::msg("linear-memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(Limit::Table);
            return Err(wasmtime::Error::msg("table limit reached"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }
    fn tables(&self) -> usize {
        self.tables
    }
    fn memories(&self) -> usize {
        self.memories
    }
}

/// Where in a call an error happened; decides how an error that is not a limit is classified.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Instantiate,
    Call,
}

/// Turns a wasmtime error into a typed [`PluginError`].
pub(crate) fn classify(
    plugin: &str,
    hit: Option<Limit>,
    phase: Phase,
    err: wasmtime::Error,
) -> PluginError {
    let limit = |limit| PluginError::LimitExceeded {
        plugin: plugin.to_string(),
        limit,
    };
    if let Some(l) = hit {
        return limit(l);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => limit(Limit::Fuel),
            Trap::Interrupt => limit(Limit::Time),
            Trap::StackOverflow => limit(Limit::Stack),
            // Raised while lifting the answer out of the guest's memory: malformed output.
            Trap::StringOutOfBounds
            | Trap::ListOutOfBounds
            | Trap::InvalidDiscriminant
            | Trap::InvalidChar
            | Trap::UnalignedPointer => PluginError::InvalidOutput {
                plugin: plugin.to_string(),
                message: trap.to_string(),
            },
            other => PluginError::Trap {
                plugin: plugin.to_string(),
                message: other.to_string(),
            },
        };
    }
    if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return limit(Limit::Concurrency);
    }
    match phase {
        Phase::Instantiate => PluginError::Instantiate {
            plugin: plugin.to_string(),
            message: format!("{err:#}"),
        },
        // Errors that are not traps during a call come from lifting the answer (bad UTF-8, a list
        // that does not fit in memory, ...).
        Phase::Call => PluginError::InvalidOutput {
            plugin: plugin.to_string(),
            message: format!("{err:#}"),
        },
    }
}
