//! From configured components to served ones: the runtime they need (pool slot size, fuel
//! metering) and loading each under its policy, checked against its settings. `run`, `dev`,
//! reloads and the tests all go through here.

use std::path::PathBuf;
use std::sync::Arc;

use super::ServedComponent;
use crate::config::{ComponentSettings, largest_memory};
use crate::error_chain::ErrorChain;
use crate::runtime::{
    ActionComponent, Allocation, ComponentCache, LoadError, Runtime, RuntimeConfig,
};

/// Pool slots beyond the task cap, so describing components at load (and reload) never waits
/// for a running task to free a slot.
pub const SPARE_SLOTS: u32 = 16;

/// What a runtime must be built for to serve a set of components. A reload cannot go beyond
/// the shape the process started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeShape {
    /// The pool's memory per task: the largest memory limit of any action.
    pub max_memory_bytes: u64,
    /// Whether guests are compiled with fuel metering: only when some action has a fuel
    /// budget (metering costs compute-heavy guests a few percent).
    pub fuel: bool,
}

impl RuntimeShape {
    /// The shape a runtime for `components` gets.
    pub fn of(components: &[ComponentSettings]) -> Self {
        RuntimeShape {
            max_memory_bytes: largest_memory(components),
            fuel: components
                .iter()
                .any(|component| component.policy.uses_fuel()),
        }
    }

    /// A pooling runtime of this shape with a slot for each of `concurrency` tasks plus
    /// [`SPARE_SLOTS`], compiling through `cache`.
    pub fn runtime_config(
        self,
        concurrency: usize,
        cache: Option<ComponentCache>,
    ) -> RuntimeConfig {
        let slots = u32::try_from(concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(SPARE_SLOTS);
        RuntimeConfig {
            allocation: Allocation::Pooling {
                slots,
                max_memory_bytes: self.max_memory_bytes,
            },
            cache,
            fuel: self.fuel,
        }
    }
}

/// Why configured components cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadComponentsError {
    /// No component was named.
    #[error("no components to serve: name .wasm files, or list them in the config file")]
    NoComponents,
    /// Every component was refused (each refusal was logged as it happened).
    #[error("none of the components could be loaded (see the errors above)")]
    NoneLoaded,
    /// The runtime refused the component.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The settings name an action the component does not have (its limits or grants would
    /// silently not apply).
    #[error(
        "{} has no action '{action}' (configured under [component.actions.{action}]); it has: \
         {known}",
        path.display()
    )]
    UnknownAction {
        /// The component file.
        path: PathBuf,
        /// The configured action key.
        action: String,
        /// The keys the component has, comma-separated.
        known: String,
    },
}

/// Loads every component under its policy. A component the runtime refuses is logged and left
/// out, and the others are served; it is an error when none can be loaded, or when a loaded
/// one lacks an action its settings configure.
pub async fn load_components(
    runtime: &Runtime,
    components: &[ComponentSettings],
) -> Result<Vec<ServedComponent>, LoadComponentsError> {
    if components.is_empty() {
        return Err(LoadComponentsError::NoComponents);
    }
    let mut served = Vec::with_capacity(components.len());
    for settings in components {
        match runtime
            .load_file(&settings.path, settings.policy.clone())
            .await
        {
            Ok(component) => served.push(checked(settings, component)?),
            Err(error) => tracing::error!(
                "{}; serving the other components without it",
                ErrorChain(&error)
            ),
        }
    }
    if served.is_empty() {
        return Err(LoadComponentsError::NoneLoaded);
    }
    Ok(served)
}

/// Loads one component under its policy, checked like [`load_components`] does; a refusal is
/// an error.
pub async fn load_component(
    runtime: &Runtime,
    settings: &ComponentSettings,
) -> Result<ServedComponent, LoadComponentsError> {
    let component = runtime
        .load_file(&settings.path, settings.policy.clone())
        .await?;
    checked(settings, component)
}

/// `component` to serve, once every action its settings name is known to exist.
fn checked(
    settings: &ComponentSettings,
    component: ActionComponent,
) -> Result<ServedComponent, LoadComponentsError> {
    let configured = settings
        .policy
        .action_limits
        .keys()
        .chain(settings.action_concurrency.keys())
        .chain(settings.policy.http.action_grants.keys());
    for action in configured {
        if component.definition(action).is_none() {
            let known: Vec<&str> = component
                .definitions()
                .iter()
                .map(|definition| definition.key.as_str())
                .collect();
            return Err(LoadComponentsError::UnknownAction {
                path: settings.path.clone(),
                action: action.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(ServedComponent {
        component: Arc::new(component),
        concurrency: settings.concurrency,
        action_concurrency: settings.action_concurrency.clone(),
    })
}
