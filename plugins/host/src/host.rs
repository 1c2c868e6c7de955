//! The plugin host: the engine and its instance pool, loading (validation, compilation, the on-disk
//! cache of compiled code) and pre-instantiation. Calls run in `call.rs`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, ModuleVersionStrategy,
    PoolingAllocationConfig,
};

use crate::bindings::{
    PRICING_INTERFACE, TYPES_INTERFACE, WAITLIST_INTERFACE, pricing::PricingPolicyPre,
    waitlist::WaitlistPolicyPre,
};
use crate::call::{CallState, EPOCH_TICK, Runtime};
use crate::config::HostConfig;
use crate::error::{PluginError, Result};
use crate::policy::{Hook, Plugin, WasmPricingPolicy, WasmWaitlistPolicy};

/// Loads plugins and runs them under limits. Create one per process and load every plugin through it:
/// they share one wasmtime engine, one instance pool and one compiled-code cache.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use evently_plugins::{HostConfig, PluginHost};
///
/// let host = PluginHost::new(HostConfig::with_cache_dir("/var/cache/evently/plugins"))?;
/// let pricing = host.load_pricing_file("target/plugins/early-bird-surge.wasm")?;
/// // let engine = evently_core::Evently::builder().store(store).pricing(pricing).build()?;
/// # let _ = pricing; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters of how plugins were loaded, for observability and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostStats {
    /// Modules compiled from wasm.
    pub compiled: u64,
    /// Modules taken from the on-disk cache.
    pub disk_hits: u64,
    /// Modules already compiled by this host.
    pub memory_hits: u64,
}

struct HostInner {
    engine: Engine,
    config: HostConfig,
    /// What each call runs in; loaded plugins hold it too, so their calls keep their deadline when
    /// the host is gone.
    runtime: Arc<Runtime>,
    cache_tag: String,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    compiled_count: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
}

/// Feeds a `Hash` into SHA-256, to get a digest that is stable across runs and Rust versions.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn engine(config: &HostConfig) -> Result<Engine> {
    let l = &config.limits;
    let n = config.concurrency();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(l.instances))
        .total_memories(n.saturating_mul(l.memories))
        .total_tables(n.saturating_mul(l.tables))
        .max_core_instances_per_component(l.instances)
        .max_memories_per_component(l.memories)
        .max_tables_per_component(l.tables)
        .max_memories_per_module(l.memories)
        .max_tables_per_module(l.tables)
        .table_elements(l.table_elements)
        .max_memory_size(l.memory_bytes);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        // Linux ≥ 6.7: when a call's instance is freed, find the pages it dirtied and reset just
        // those, keeping them mapped, instead of `madvise`-ing the slot and faulting pages back in
        // on the next call. This halves the warm per-call cost (see `docs/benchmarks.md`).
        // Without the ioctl, keeping memory resident would mean `memset`-ing it all: not done.
        // At most 1 MiB of dirty pages per slot is kept (more is returned with `madvise`), so a
        // plugin that touches its whole memory cannot pin it.
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(l.memory_bytes.min(1 << 20))
            .table_keep_resident(64 << 10);
    }
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(l.fuel.is_some())
        .max_wasm_stack(l.stack_bytes)
        // Same input, same answer: no host-dependent NaN bits or relaxed-SIMD results.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| PluginError::Config {
        field: "limits",
        reason: format!("wasmtime refused the configuration: {e}"),
    })
}

impl PluginHost {
    /// Builds a host: validates the configuration, creates the engine and its instance pool, starts
    /// the epoch ticker thread and creates the cache directory.
    pub fn new(config: HostConfig) -> Result<Self> {
        config.validate()?;
        let engine = engine(&config)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Config {
                field: "cache_dir",
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let cache_tag = format!(
            "wasmtime{}-{:016x}",
            ModuleVersionStrategy::WasmtimeVersion.as_str(),
            h.finish()
        );
        let deadline_ticks = config
            .limits
            .timeout
            .as_micros()
            .div_ceil(EPOCH_TICK.as_micros())
            .max(1) as u64
            // The call starts somewhere inside the current tick: one more tick makes the deadline a
            // lower bound (a call gets at least `timeout`, at most `timeout` + one tick).
            + 1;
        let runtime = Arc::new(Runtime::new(
            engine.clone(),
            config.limits.clone(),
            deadline_ticks,
        )?);
        Ok(Self {
            inner: Arc::new(HostInner {
                engine,
                config,
                runtime,
                cache_tag,
                compiled: Mutex::new(HashMap::new()),
                compiled_count: AtomicU64::new(0),
                disk_hits: AtomicU64::new(0),
                memory_hits: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration the host was built with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// How modules were loaded so far.
    pub fn stats(&self) -> HostStats {
        HostStats {
            compiled: self.inner.compiled_count.load(Ordering::Relaxed),
            disk_hits: self.inner.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.inner.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Loads a pricing plugin from bytes. `name` identifies it in logs, metrics and errors.
    ///
    /// Refused with a [`PluginError`] if the bytes are not a component, the component imports
    /// anything, does not export `evently:policy/pricing@1.0.0` with the expected signature, or does
    /// not fit the limits.
    pub fn load_pricing(&self, name: &str, wasm: &[u8]) -> Result<Arc<WasmPricingPolicy>> {
        let (component, hash) = self.inner.compile(name, wasm)?;
        let pre = self.inner.instance_pre(name, &component)?;
        let pre = PricingPolicyPre::new(pre).map_err(|e| PluginError::Interface {
            plugin: name.to_string(),
            interface: PRICING_INTERFACE,
            message: format!("{e:#}"),
        })?;
        let plugin = Plugin::new(name, hash, self.inner.runtime.clone(), Hook::Pricing(pre));
        plugin.trial()?;
        Ok(Arc::new(WasmPricingPolicy { plugin }))
    }

    /// Loads a waitlist plugin from bytes (see [`load_pricing`](Self::load_pricing)).
    pub fn load_waitlist(&self, name: &str, wasm: &[u8]) -> Result<Arc<WasmWaitlistPolicy>> {
        let (component, hash) = self.inner.compile(name, wasm)?;
        let pre = self.inner.instance_pre(name, &component)?;
        let pre = WaitlistPolicyPre::new(pre).map_err(|e| PluginError::Interface {
            plugin: name.to_string(),
            interface: WAITLIST_INTERFACE,
            message: format!("{e:#}"),
        })?;
        let plugin = Plugin::new(name, hash, self.inner.runtime.clone(), Hook::Waitlist(pre));
        plugin.trial()?;
        Ok(Arc::new(WasmWaitlistPolicy { plugin }))
    }

    /// Loads a plugin of either kind, whichever hook the component exports.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<LoadedPlugin> {
        let (component, _) = self.inner.compile(name, wasm)?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.inner.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if exports.iter().any(|e| e == PRICING_INTERFACE) {
            Ok(LoadedPlugin::Pricing(self.load_pricing(name, wasm)?))
        } else if exports.iter().any(|e| e == WAITLIST_INTERFACE) {
            Ok(LoadedPlugin::Waitlist(self.load_waitlist(name, wasm)?))
        } else {
            Err(PluginError::Interface {
                plugin: name.to_string(),
                interface: "evently:policy/pricing@1.0.0 or evently:policy/waitlist@1.0.0",
                message: if exports.is_empty() {
                    "the component exports nothing".to_string()
                } else {
                    format!("it exports only {}", exports.join(", "))
                },
            })
        }
    }

    /// Reads and loads a pricing plugin file; its name is `wasm:<file stem>`.
    pub fn load_pricing_file(&self, path: impl AsRef<Path>) -> Result<Arc<WasmPricingPolicy>> {
        let (name, bytes) = read(path.as_ref())?;
        self.load_pricing(&name, &bytes)
    }

    /// Reads and loads a waitlist plugin file; its name is `wasm:<file stem>`.
    pub fn load_waitlist_file(&self, path: impl AsRef<Path>) -> Result<Arc<WasmWaitlistPolicy>> {
        let (name, bytes) = read(path.as_ref())?;
        self.load_waitlist(&name, &bytes)
    }

    /// Reads and loads a plugin file of either kind; its name is `wasm:<file stem>`.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<LoadedPlugin> {
        let (name, bytes) = read(path.as_ref())?;
        self.load(&name, &bytes)
    }
}

/// A plugin loaded by [`PluginHost::load`], of whichever kind the component is.
#[derive(Clone)]
pub enum LoadedPlugin {
    /// A pricing plugin.
    Pricing(Arc<WasmPricingPolicy>),
    /// A waitlist plugin.
    Waitlist(Arc<WasmWaitlistPolicy>),
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadedPlugin::Pricing(p) => f.debug_tuple("Pricing").field(p).finish(),
            LoadedPlugin::Waitlist(p) => f.debug_tuple("Waitlist").field(p).finish(),
        }
    }
}

fn read(path: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    Ok((format!("wasm:{stem}"), bytes))
}

/// Refuses anything but a component binary, with a message saying what the bytes are instead.
fn check_header(plugin: &str, wasm: &[u8]) -> Result<()> {
    let refuse = |reason: &str| {
        Err(PluginError::NotAComponent {
            plugin: plugin.to_string(),
            reason: reason.to_string(),
        })
    };
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return refuse("the bytes are not WebAssembly (no \\0asm header)");
    }
    match wasm[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => refuse(
            "it is a core wasm module; link it into a component (wasm-component-ld, see docs/plugins.md)",
        ),
        _ => refuse("unknown WebAssembly version or layer"),
    }
}

impl HostInner {
    /// Compiles (or finds) the component for `wasm` and checks that it imports nothing.
    fn compile(&self, plugin: &str, wasm: &[u8]) -> Result<(Component, [u8; 32])> {
        check_header(plugin, wasm)?;
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        let cached = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        let component = match cached {
            Some(c) => {
                self.memory_hits.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = match self.read_cache(&hash) {
                    Some(c) => {
                        self.disk_hits.fetch_add(1, Ordering::Relaxed);
                        c
                    }
                    None => {
                        let c = Component::new(&self.engine, wasm).map_err(|e| {
                            PluginError::Compile {
                                plugin: plugin.to_string(),
                                message: format!("{e:#}"),
                            }
                        })?;
                        self.compiled_count.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(plugin, module = %hex(&hash), "compiled plugin");
                        self.write_cache(&hash, &c);
                        c
                    }
                };
                self.compiled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash, c.clone());
                c
            }
        };
        self.check_imports(plugin, &component)?;
        Ok((component, hash))
    }

    /// Plugins are granted nothing: the only import allowed is the type-only interface shared by the
    /// hooks (which a component may import to name its record types).
    fn check_imports(&self, plugin: &str, component: &Component) -> Result<()> {
        for (name, item) in component.component_type().imports(&self.engine) {
            let types_only = name == TYPES_INTERFACE
                && match &item.ty {
                    ComponentItem::ComponentInstance(i) => i
                        .exports(&self.engine)
                        .all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))),
                    _ => false,
                };
            if !types_only {
                return Err(PluginError::ForbiddenImport {
                    plugin: plugin.to_string(),
                    import: name.to_string(),
                });
            }
        }
        Ok(())
    }

    fn instance_pre(&self, plugin: &str, component: &Component) -> Result<InstancePre<CallState>> {
        let linker = Linker::<CallState>::new(&self.engine);
        linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::ForbiddenImport {
                plugin: plugin.to_string(),
                import: format!("{e:#}"),
            })
    }

    fn cache_path(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        Some(dir.join(format!("{}-{}.cwasm", hex(hash), self.cache_tag)))
    }

    /// A compiled component from the cache directory, if there is a sound one. A file that is
    /// truncated, corrupt or from another engine is ignored (and overwritten after compiling).
    fn read_cache(&self, hash: &[u8; 32]) -> Option<Component> {
        let path = self.cache_path(hash)?;
        let file = std::fs::read(&path).ok()?;
        if file.len() < 32 || Sha256::digest(&file[32..]).as_slice() != &file[..32] {
            tracing::warn!(path = %path.display(), "ignoring corrupt compiled-plugin cache file");
            return None;
        }
        // SAFETY: the payload was written by `write_cache` from `Component::serialize` of an engine
        // with the same compatibility hash (part of the file name), and its checksum matches, so it
        // is the artifact wasmtime produced. The cache directory must be writable only by the
        // service (documented on `HostConfig::cache_dir`).
        match unsafe { Component::deserialize(&self.engine, &file[32..]) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled-plugin cache file");
                None
            }
        }
    }

    /// Writes the compiled component atomically (temporary file, then rename). Failures are logged:
    /// the cache only saves compile time.
    fn write_cache(&self, hash: &[u8; 32], component: &Component) {
        let Some(path) = self.cache_path(hash) else {
            return;
        };
        let result = (|| -> std::result::Result<(), String> {
            let payload = component.serialize().map_err(|e| e.to_string())?;
            let mut file = Sha256::digest(&payload).to_vec();
            file.extend_from_slice(&payload);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &file).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-plugin cache file");
        }
    }
}
