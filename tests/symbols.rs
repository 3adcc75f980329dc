//! The preload library's exported symbols are exactly the list in
//! `preload/exported-symbols.txt`: the libc (and libssl) functions it
//! interposes, all of them code. rustc gives a cdylib a version script that
//! exports only its `#[no_mangle] extern` items (in preload's sources
//! `#[cfg_attr(not(test), no_mangle)]`, so that its unit-test binary does
//! not interpose on itself), so what this guards against is a hook added or
//! lost by accident (a `no_mangle` removed, a cfg that drops a file of
//! hooks) and anything else that would interpose on the app: a
//! Rust-internal symbol, a data symbol, the unwinder.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `(name, nm's type letter)` of every dynamic symbol the library defines.
fn defined_symbols(library: &Path) -> Vec<(String, String)> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library)
        .output()
        .unwrap_or_else(|e| panic!("running nm (binutils) failed: {e}"));
    assert!(
        out.status.success(),
        "nm -D --defined-only {} failed: {}",
        library.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("nm prints text")
        .lines()
        .filter_map(|line| {
            // `ADDRESS TYPE NAME`, the name possibly with a `@VERSION`.
            let mut f = line.split_whitespace().rev();
            let name = f.next()?;
            let kind = f.next()?;
            Some((name.to_owned(), kind.to_owned()))
        })
        .collect()
}

fn expected() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload/exported-symbols.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_preload_library_exports_exactly_its_hooks() {
    let library = &support::binaries().library;
    let symbols = defined_symbols(library);
    assert!(
        symbols.len() > 10,
        "nm found almost nothing in {}: {symbols:?}",
        library.display()
    );
    let exported: BTreeSet<String> = symbols.iter().map(|(n, _)| n.clone()).collect();
    let want = expected();
    let added: Vec<_> = exported.difference(&want).collect();
    let lost: Vec<_> = want.difference(&exported).collect();
    assert!(
        added.is_empty() && lost.is_empty(),
        "{} exports differ from preload/exported-symbols.txt\n  \
         exported but not listed (a new hook? a leaked internal symbol?): {added:?}\n  \
         listed but not exported (a hook lost?): {lost:?}\n\
         Update the list only if the change is meant.",
        library.display()
    );
    // Every export is code: a data symbol of ours would shadow the app's.
    let not_code: Vec<_> = symbols.iter().filter(|(_, k)| k != "T").collect();
    assert!(
        not_code.is_empty(),
        "exports that are not plain functions (nm type other than T): {not_code:?}"
    );
}

#[test]
fn the_expected_list_is_sorted_and_has_no_duplicates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload/exported-symbols.txt");
    let text = std::fs::read_to_string(path).expect("read the list");
    let names: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        names, sorted,
        "keep one symbol per line, sorted (LC_ALL=C sort)"
    );
}
