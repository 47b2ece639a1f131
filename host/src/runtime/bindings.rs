//! Host-side bindings of the `arkitekt:rekuest/action-component` world (`wit/rekuest.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "action-component",
    imports: { default: async | trappable },
    exports: { default: async },
    with: { "arkitekt:rekuest/calls.child": super::calls::ChildCall },
});

pub use arkitekt::rekuest::calls::{CallError, Target as WitTarget};
pub use arkitekt::rekuest::host::LogLevel as WitLogLevel;
pub use exports::arkitekt::rekuest::actions::RunError;
