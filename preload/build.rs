//! Links the unwinder into the library instead of depending on
//! `libgcc_s.so.1`.
//!
//! rustc links every Rust cdylib on glibc against `libgcc_s` for unwinding
//! (we need it: a panic in tracing work is caught before it reaches the
//! app). Loading that second library costs each traced process about as
//! much as all the rest of the loader's work on ours (BENCHMARKS.md, row 4).
//! `-static-libgcc` does not help, because rustc names `-lgcc_s` itself; so
//! the link gets a directory, searched before the system's, holding a
//! `libgcc_s.so` that is a linker script pointing at the static
//! `libgcc_eh.a`. The unwinder's symbols stay local to the library (the
//! cdylib's version script exports only our hooks), so the app's own
//! unwinder is never interposed.
//!
//! Where the toolchain has no `libgcc_eh.a`, nothing changes.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    // Cargo reruns a build script when its own source changes; besides that
    // only the compiler matters. (A `rerun-if-changed=build.rs` would name a
    // file that does not exist for the transport crate, which shares this
    // script, and make it rebuild every time.)
    println!("cargo:rerun-if-env-changed=CC");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || target_env != "gnu" {
        return;
    }
    // `cc` is the host's compiler, whose libgcc_eh.a would not link into a
    // cross-compiled library: there, leave the default alone.
    if env::var("TARGET").ok() != env::var("HOST").ok() {
        return;
    }
    let Some(libgcc_eh) = static_unwinder() else {
        println!("cargo:warning=libgcc_eh.a not found: the library will need libgcc_s.so.1");
        return;
    };
    let dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("static-unwinder");
    fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwinder");
    let script = format!("INPUT({})\n", libgcc_eh.display());
    fs::write(dir.join("libgcc_s.so"), script).expect("write the libgcc_s.so linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// The C compiler's own `libgcc_eh.a` (an absolute path), if it has one.
fn static_unwinder() -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (path.is_absolute() && path.is_file()).then_some(path)
}
