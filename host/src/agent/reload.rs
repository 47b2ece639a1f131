//! Serving a new set of components without a restart (SIGHUP, `dev --watch`): changed
//! definitions are registered with `implementAgent`, then new tasks go to the new components
//! while tasks already assigned finish on the ones they started with.

use std::sync::Arc;

use super::{Agent, AgentError, ServedComponent, actions_of};

/// Why a reload was refused; the agent keeps serving what it served.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new set is not servable (an action key twice, or no action).
    #[error("the new components cannot be served")]
    Unservable(#[source] AgentError),
    /// The server did not take the new definitions.
    #[error("the server did not take the new definitions")]
    Registration(#[from] super::RegistrationError),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Actions served now.
    pub actions: usize,
    /// Whether the definitions changed and were registered (false: same definitions, only
    /// the components or their settings were replaced).
    pub registered: bool,
}

impl Agent {
    /// Serves `components` from now on. The new definitions are registered first (so the
    /// old set keeps serving if the server refuses them); tasks already assigned finish on
    /// their old components.
    pub async fn reload(&self, components: Vec<ServedComponent>) -> Result<Reloaded, ReloadError> {
        let (slots, implementations) =
            actions_of(&components, &self.metrics).map_err(ReloadError::Unservable)?;
        let changed = *self.implementations() != *implementations;
        if changed {
            let agent = self.graphql.ensure(&self.config.name).await?;
            self.graphql
                .implement(&agent, &self.config.name, &implementations)
                .await?;
        }
        let actions = implementations.len();
        // Swapped together, right after the server took the definitions: an ASSIGN for a new
        // action can only follow the registration.
        self.dispatcher.replace_actions(slots);
        *self
            .implementations
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::from(implementations);
        Ok(Reloaded {
            actions,
            registered: changed,
        })
    }
}
