//! Hand-written attack components for the sandbox attack tests: WAT components whose linear
//! memories are spread over several memories of one core instance (multi-memory) or over
//! several core instances, written against the action world directly (no SDK, no WASI).

/// How a memory hog spreads the memory it grows.
#[derive(Debug, Clone, Copy)]
pub enum Spread {
    /// `n` extra memories in the main core instance (multi-memory).
    Memories(u32),
    /// `n` extra core instances with one memory each.
    Instances(u32),
}

/// What the hog's `grow` action fails with when every memory grew.
pub const GREW: &str = "all memories grown";

/// A component with one action, `grow`, that grows every memory of `spread` by `pages` wasm
/// pages (64 KiB each) and then fails with [`GREW`] (so a run that got that far says so
/// without a yield). Its main memory starts at one page.
pub fn memory_hog(spread: Spread, pages: u32) -> Vec<u8> {
    let describe =
        r#"[{"key":"grow","version":"1","name":"Grow","kind":"FUNCTION","args":[],"returns":[]}]"#;
    let mut memories = String::new();
    let mut grows = String::new();
    let mut imports = String::new();
    let mut instances = String::new();
    let mut links = String::new();
    match spread {
        Spread::Memories(count) => {
            for index in 1..=count {
                memories += &format!("(memory $m{index} 0)\n");
                grows += &format!(
                    "(if (i32.eq (memory.grow $m{index} (i32.const {pages})) (i32.const -1)) \
                     (then unreachable))\n"
                );
            }
        }
        Spread::Instances(count) => {
            for index in 0..count {
                imports +=
                    &format!("(import \"hog{index}\" \"grow\" (func $hog{index} (result i32)))\n");
                grows += &format!(
                    "(if (i32.eq (call $hog{index}) (i32.const -1)) (then unreachable))\n"
                );
                instances += &format!("(core instance $hog{index} (instantiate $Hog))\n");
                links += &format!("(with \"hog{index}\" (instance $hog{index}))\n");
            }
        }
    }
    let wat = format!(
        r#"
(component
  (core module $Hog
    (memory (export "memory") 0)
    (func (export "grow") (result i32) (memory.grow (i32.const {pages}))))
  (core module $Main
    {imports}
    (memory (export "memory") 1)
    {memories}
    (global $bump (mut i32) (i32.const 8192))
    (data (i32.const 1024) "{describe_text}")
    (data (i32.const 4096) "{GREW}")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      (local.set $ptr (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (global.set $bump (i32.add (local.get $ptr) (local.get 3)))
      (if (i32.gt_u (global.get $bump) (i32.const 65536)) (then unreachable))
      (local.get $ptr))
    (func (export "describe") (result i32)
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const {describe_len}))
      (i32.const 0))
    (func (export "run") (param i32 i32 i32 i32) (result i32)
      {grows}
      (i32.store8 (i32.const 16) (i32.const 1))
      (i32.store8 (i32.const 20) (i32.const 0))
      (i32.store (i32.const 24) (i32.const 4096))
      (i32.store (i32.const 28) (i32.const {grew_len}))
      (i32.const 16)))
  {instances}
  (core instance $main (instantiate $Main {links}))
  (type $run-error (variant (case "failed" string) (case "critical" string)))
  (func $describe (result string)
    (canon lift (core func $main "describe") (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc"))))
  (func $run (param "key" string) (param "args-json" string) (result (result (error $run-error)))
    (canon lift (core func $main "run") (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc"))))
  (component $Actions
    (type $error (variant (case "failed" string) (case "critical" string)))
    (import "import-type-run-error" (type $imported (eq $error)))
    (import "import-func-describe" (func $describe (result string)))
    (import "import-func-run" (func $run (param "key" string) (param "args-json" string)
      (result (result (error $imported)))))
    (export $exported "run-error" (type $imported))
    (export "describe" (func $describe))
    (export "run" (func $run) (func (param "key" string) (param "args-json" string)
      (result (result (error $exported))))))
  (instance $actions (instantiate $Actions
    (with "import-type-run-error" (type $run-error))
    (with "import-func-describe" (func $describe))
    (with "import-func-run" (func $run))))
  (export "arkitekt:rekuest/actions@0.1.0" (instance $actions)))
"#,
        describe_text = describe.replace('"', "\\\""),
        describe_len = describe.len(),
        grew_len = GREW.len(),
    );
    wat::parse_str(&wat).expect("the hand-written component is valid WAT")
}
