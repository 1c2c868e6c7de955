//! The one error enum of the plugin host.

use std::fmt;
use std::path::PathBuf;

use evently_core::PolicyError;

/// `Result` with [`PluginError`] as the default error.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// A resource limit a plugin call can run into (see [`Limits`](crate::Limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// The wall-clock deadline ([`Limits::timeout`](crate::Limits::timeout)), enforced by epoch interruption.
    Time,
    /// The instruction budget ([`Limits::fuel`](crate::Limits::fuel)).
    Fuel,
    /// The linear-memory cap ([`Limits::memory_bytes`](crate::Limits::memory_bytes)).
    Memory,
    /// The wasm stack ([`Limits::stack_bytes`](crate::Limits::stack_bytes)).
    Stack,
    /// The table-size cap ([`Limits::table_elements`](crate::Limits::table_elements)).
    Table,
    /// The cap on the size of the answer ([`Limits::output_bytes`](crate::Limits::output_bytes)).
    Output,
    /// More calls at once than the instance pool holds ([`HostConfig::max_concurrent_calls`](crate::HostConfig::max_concurrent_calls)).
    Concurrency,
}

impl Limit {
    /// Stable lower-case name, used in [`PolicyError::LimitExceeded`] and in metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Limit::Time => "time",
            Limit::Fuel => "fuel",
            Limit::Memory => "memory",
            Limit::Stack => "stack",
            Limit::Table => "table",
            Limit::Output => "output size",
            Limit::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything loading or calling a plugin can fail with.
///
/// Load-time variants (`Io` to `Config`) mean the module was refused and never runs. Call-time variants
/// (`Trap` to `Instantiate`) describe one failed call; the host keeps serving, and the engine's
/// [`PolicyFailureMode`](evently_core::PolicyFailureMode) decides whether the operation is rejected or
/// falls back to the built-in policy. Each call-time variant converts into a [`PolicyError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component (not wasm at all, or a core module).
    #[error("plugin {plugin} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// Plugin name.
        plugin: String,
        /// What the bytes are instead.
        reason: String,
    },
    /// The component is malformed or does not validate.
    #[error("plugin {plugin} does not compile: {message}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// The validator's or compiler's message.
        message: String,
    },
    /// The component imports something. Plugins are granted no capability (no WASI, no host functions).
    #[error(
        "plugin {plugin} imports `{import}`, which is not granted: plugins get no capabilities"
    )]
    ForbiddenImport {
        /// Plugin name.
        plugin: String,
        /// The import's name.
        import: String,
    },
    /// The component does not export the hook it was loaded for, or exports it with another signature
    /// (for example, built against another version of `policy.wit`).
    #[error("plugin {plugin} does not implement {interface}: {message}")]
    Interface {
        /// Plugin name.
        plugin: String,
        /// The interface expected.
        interface: &'static str,
        /// What is missing or different.
        message: String,
    },
    /// The component does not fit the configured limits even before running (initial memory, number of
    /// instances, tables or memories).
    #[error("plugin {plugin} does not fit the host's limits: {message}")]
    TooLarge {
        /// Plugin name.
        plugin: String,
        /// What does not fit.
        message: String,
    },
    /// The host configuration is invalid.
    #[error("invalid plugin host configuration: {field}: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    #[error("plugin {plugin} trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The trap.
        message: String,
    },
    /// The call ran into a resource limit and was stopped.
    #[error("plugin {plugin} exceeded its {limit} limit")]
    LimitExceeded {
        /// Plugin name.
        plugin: String,
        /// Which limit.
        limit: Limit,
    },
    /// The plugin returned its own `policy-error`.
    #[error("plugin {plugin} declined ({code}): {message}")]
    Declined {
        /// Plugin name.
        plugin: String,
        /// The WIT `error-code`, e.g. `invalid-request`.
        code: &'static str,
        /// The plugin's message.
        message: String,
    },
    /// The answer is outside the allowed range (negative price, unknown or repeated waiting entry, more
    /// seats than are free).
    #[error("plugin {plugin} gave an invalid answer: {message}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// What was wrong.
        message: String,
    },
    /// The per-call instance could not be created for another reason.
    #[error("plugin {plugin} could not be instantiated: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl PluginError {
    /// Short stable name of the variant, used as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Io { .. } => "io",
            PluginError::NotAComponent { .. } => "not_a_component",
            PluginError::Compile { .. } => "compile",
            PluginError::ForbiddenImport { .. } => "forbidden_import",
            PluginError::Interface { .. } => "interface",
            PluginError::TooLarge { .. } => "too_large",
            PluginError::Config { .. } => "config",
            PluginError::Trap { .. } => "trap",
            PluginError::LimitExceeded { .. } => "limit",
            PluginError::Declined { .. } => "declined",
            PluginError::InvalidOutput { .. } => "invalid_output",
            PluginError::Instantiate { .. } => "instantiate",
        }
    }
}

impl From<PluginError> for PolicyError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::LimitExceeded { plugin, limit } => PolicyError::LimitExceeded {
                policy: plugin,
                limit: limit.as_str().to_string(),
            },
            PluginError::InvalidOutput { plugin, message } => PolicyError::InvalidOutput {
                policy: plugin,
                message,
            },
            PluginError::Declined {
                plugin,
                code,
                message,
            } => PolicyError::Failed {
                policy: plugin,
                message: format!("{code}: {message}"),
            },
            PluginError::Trap { plugin, message }
            | PluginError::Instantiate { plugin, message } => PolicyError::Failed {
                policy: plugin,
                message,
            },
            other => {
                let message = other.to_string();
                let policy = match other {
                    PluginError::NotAComponent { plugin, .. }
                    | PluginError::Compile { plugin, .. }
                    | PluginError::ForbiddenImport { plugin, .. }
                    | PluginError::Interface { plugin, .. }
                    | PluginError::TooLarge { plugin, .. } => plugin,
                    _ => "plugin host".to_string(),
                };
                PolicyError::Failed { policy, message }
            }
        }
    }
}
