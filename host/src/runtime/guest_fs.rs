//! The sandbox's own rules on top of wasmtime-wasi's filesystem: WASI functions the host
//! shadows in the linker so a guest with a directory grant cannot booby-trap it or hoard
//! host file descriptors.
//!
//! - `symlink-at` always fails with `not-permitted`: a symlink left in a writable grant would
//!   be followed out of it by the next host tool that reads the output directory.
//! - `link-at` (hard links) always fails with `not-permitted` too: wasmtime-wasi keeps both
//!   paths inside writable grants, but a hard link to a symlink the host left in a grant
//!   (`sub/up -> ../x`, harmless where it is) moves where that symlink points.
//! - `open-at` fails with `insufficient-memory` once the task holds
//!   [`MAX_OPEN_FILES`](super::limits::MAX_OPEN_FILES) open files and directories (WASI 0.2
//!   has no "too many open files" code).

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

use super::host_api::TaskState;
use super::limits::MAX_OPEN_FILES;

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
                if open_descriptors(&mut state.table) >= MAX_OPEN_FILES {
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
