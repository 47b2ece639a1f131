//! The sandbox's own rules on top of wasmtime-wasi's filesystem: WASI functions the host
//! shadows in the linker so a guest with a directory grant cannot booby-trap it or hoard
//! host file descriptors.
//!
//! - `symlink-at` always fails with `not-permitted`: a symlink left in a writable grant would
//!   be followed out of it by the next host tool that reads the output directory.
//! - `link-at` (hard links) always fails with `not-permitted` too: wasmtime-wasi keeps both
//!   paths inside writable grants, but a hard link to a symlink the host left in a grant
//!   (`sub/up -> ../x`, harmless where it is) moves where that symlink points.
//! - `open-at` fails with `insufficient-memory` once the task holds its component's
//!   [`open_files`](super::limits::HostResourceCaps::open_files) open files and directories,
//!   or when all running tasks together would hold more than the process's
//!   [`DescriptorBudget`] (WASI 0.2 has no "too many open files" code).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

use super::host_api::TaskState;

/// Descriptors kept back for the host itself (sockets, compiled code, cache and log files)
/// when the process's open-file limit is shared out to guests; a quarter of the limit if
/// that is more.
const HOST_RESERVE: usize = 256;

/// The host file descriptors all running tasks together may hold: the process's open-file
/// limit minus a reserve for the host, so no guest, however many run at once, can leave the
/// agent unable to accept a connection or open its cache.
#[derive(Debug)]
pub struct DescriptorBudget {
    limit: usize,
    held: AtomicUsize,
}

impl DescriptorBudget {
    /// The budget of this process: raises the soft open-file limit to the hard one (as Go's
    /// runtime does), then keeps [`HOST_RESERVE`] (or a quarter) back for the host.
    pub fn for_this_process() -> Self {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if let Err(error) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!("cannot raise the open-file limit: {error}");
                limit = getrlimit(Resource::Nofile);
            }
        }
        let files = limit.current.map_or(usize::MAX, |files| {
            usize::try_from(files).unwrap_or(usize::MAX)
        });
        Self::with_limit(files.saturating_sub(HOST_RESERVE.max(files / 4)))
    }

    /// A budget of `limit` descriptors.
    pub fn with_limit(limit: usize) -> Self {
        DescriptorBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// How many descriptors guests may hold together.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A new task's share, counting nothing yet.
    pub(crate) fn claim(self: &Arc<Self>) -> DescriptorClaim {
        DescriptorClaim {
            budget: self.clone(),
            counted: 0,
        }
    }
}

/// What one task holds of the [`DescriptorBudget`]; given back when the task's store drops.
#[derive(Debug)]
pub(crate) struct DescriptorClaim {
    budget: Arc<DescriptorBudget>,
    counted: usize,
}

impl DescriptorClaim {
    /// Counts this task as holding `wanted` descriptors (what its table holds now plus the one
    /// it asks for); `false`, counting nothing more, when that would overdraw the budget.
    /// Closed descriptors are given back here, at the task's next open, or when it ends.
    fn hold(&mut self, wanted: usize) -> bool {
        let counted = self.counted;
        let updated = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let total = held.saturating_sub(counted).saturating_add(wanted);
                (wanted <= counted || total <= self.budget.limit).then_some(total)
            });
        if updated.is_ok() {
            self.counted = wanted;
        }
        updated.is_ok()
    }
}

impl Drop for DescriptorClaim {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.counted, Ordering::AcqRel);
    }
}

/// The linker instance holding wasmtime-wasi's `descriptor` methods (its WIT version; guests
/// importing any 0.2.x version resolve to it).
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `symlink-at`, `link-at` and `open-at` in `linker` (which already holds wasmtime-wasi).
pub(crate) fn shadow_filesystem(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define_shadows(linker);
    linker.allow_shadowing(false);
    result
}

fn define_shadows(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |_store, _params: (Resource<Descriptor>, String, String)| {
            Ok((Err::<(), _>(ErrorCode::NotPermitted),))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.link-at",
        |_store,
         _params: (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| Ok((Err::<(), _>(ErrorCode::NotPermitted),)),
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (dir, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let open = open_descriptors(&mut state.table);
                if open >= state.resource_caps.open_files || !state.descriptors.hold(open + 1) {
                    return Ok((Err(ErrorCode::InsufficientMemory),));
                }
                let mut filesystem = state.filesystem();
                let opened = HostDescriptor::open_at(
                    &mut filesystem,
                    dir,
                    path_flags,
                    path,
                    open_flags,
                    flags,
                )
                .await;
                match opened {
                    Ok(descriptor) => Ok((Ok(descriptor),)),
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            })
        },
    )?;
    Ok(())
}

/// How many files and directories the task holds open (its preopens included).
fn open_descriptors(table: &mut ResourceTable) -> usize {
    table
        .iter_mut()
        .filter(|entry| entry.is::<Descriptor>())
        .count()
}
