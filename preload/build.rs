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
    order_startup_code();
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

/// Places the functions a traced process runs at start-up and while idle
/// (`startup-symbols.txt`, written by `scripts/startup-order.sh`) together
/// at the start of the library's code. The kernel maps a file's pages 64
/// KiB at a time around each fault; spread over the 1.4 MiB of code, the
/// hundred-odd functions an idle process runs made about 1 MiB of it
/// resident in every traced process. Only with LLD (rustc's default linker
/// on x86_64 Linux since 1.90), which takes `--symbol-ordering-file`; a
/// name the build does not have (another compiler, changed code) is
/// skipped without a word, so a stale list costs memory, never a build.
fn order_startup_code() {
    if env::var("CARGO_PKG_NAME").ok().as_deref() != Some("lumigo-preload")
        || env::var("CARGO_CFG_TARGET_ARCH").ok().as_deref() != Some("x86_64")
        || !rustc_links_with_lld()
    {
        return;
    }
    let list = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("startup-symbols.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    if list.is_file() {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this rustc links x86_64 Linux libraries with its own LLD by
/// default (1.90 and later), and no other linker was asked for.
fn rustc_links_with_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("fuse-ld") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
