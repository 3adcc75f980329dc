//! Libraries loaded with `RTLD_DEEPBIND` (PHP loads its extensions so, and
//! with them libcurl) look symbols up in their own dependencies before the
//! global scope, so their calls to `connect`, `send`, `SSL_write`… bind to
//! libc and libssl and never reach our hooks. After such a load we give
//! them the binding a normal load would have given: each of their call
//! slots (GOT entries of `JUMP_SLOT`/`GLOB_DAT` relocations) that names a
//! symbol we export is re-pointed at our hook.
//!
//! What is patched, precisely. Objects: those that appeared after the first
//! `dlopen` with `RTLD_DEEPBIND` ([`note_deepbind`]), in the base namespace
//! (a `dlmopen` namespace has its own libc and is left alone), other than
//! this library. Symbols: the functions this library exports, read from its
//! own dynamic symbol table: the hooks, listed once, where they are defined.
//! A slot is re-pointed only if all of these hold:
//! - a global lookup of the name finds our hook (nothing ahead of us in the
//!   global scope defines it), so a normal load would have bound it to us;
//! - the object's own dependency scope (`dlsym` on its handle) defines it
//!   outside the object, and that definition is the one our hook forwards
//!   to (`RTLD_NEXT` from us), or the hook finds its real function per
//!   caller (OpenSSL's);
//! - the slot holds that definition, or still points into the object
//!   itself (a lazy PLT stub not yet resolved).
//!
//! Anything else (a slot already ours, bound elsewhere, or an object of
//! another namespace) is left as it is, so patching is idempotent, and an
//! object loaded without `RTLD_DEEPBIND` that happens to be looked at ends
//! up exactly as its own lazy binding would have left it. Each slot is
//! changed with one aligned compare-and-swap of a pointer (a thread calling
//! through it sees the old or the new target, both valid); slots in the
//! object's RELRO pages are made writable for that store and read-only
//! again. An object is only touched once `dlopen(RTLD_NOLOAD)` of it has
//! returned: that waits for a `dlopen` in progress on another thread, so
//! the loader has finished relocating it.
//!
//! x86_64 and aarch64 (the architectures of [`CallRelocs::HOST`] and of the
//! `dlopen` trampoline).

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use libc::{c_int, c_void, dl_phdr_info, size_t};
use lumigo_core::elf::{CallRelocs, Dynamic, Image, PF_R, PF_W, PT_DYNAMIC, PT_GNU_RELRO, PT_LOAD};
use lumigo_core::lumigo_debug;

/// Set at the first `dlopen` with `RTLD_DEEPBIND`: until then nothing here
/// does any work.
static SEEN: AtomicBool = AtomicBool::new(false);

/// Objects looked at (or present before the first `RTLD_DEEPBIND` load).
struct State {
    known: Vec<Key>,
    /// The loader's (objects added, objects removed) counters at the last
    /// look.
    generation: Option<(u64, u64)>,
}

/// An object's identity: load address and the address of its name string.
type Key = (usize, usize);

/// Bound on `known`; past it, new objects are looked at on every sync
/// (patching is idempotent).
const MAX_KNOWN: usize = 4096;

static STATE: Mutex<State> = Mutex::new(State {
    known: Vec::new(),
    generation: None,
});

/// True once a `dlopen` with `RTLD_DEEPBIND` was seen (one relaxed load:
/// the trampolines' fast path).
#[inline]
pub fn seen() -> bool {
    SEEN.load(Ordering::Relaxed)
}

/// Before a `dlopen` with `RTLD_DEEPBIND`: the first time, records the
/// objects loaded so far (they were bound normally) and switches syncing on.
pub fn note_deepbind() {
    if SEEN.load(Ordering::Acquire) || CallRelocs::HOST.is_none() || !crate::runtime::active() {
        return;
    }
    // Never wait here: a constructor running inside another thread's dlopen
    // may call dlopen too. The thread holding the lock records the objects.
    if let Ok(mut state) = STATE.try_lock() {
        if !SEEN.load(Ordering::Acquire) {
            state.generation = generation();
            state.known = walk().iter().map(Object::key).take(MAX_KNOWN).collect();
            lumigo_debug!(
                "RTLD_DEEPBIND load: libraries it brings will be bound to lumigo-run's hooks"
            );
        }
    }
    SEEN.store(true, Ordering::Release);
}

/// Patches the objects loaded since the last look (before every `dlopen` and
/// `dlsym` once an `RTLD_DEEPBIND` load was seen).
pub fn sync() {
    if !SEEN.load(Ordering::Acquire) {
        return;
    }
    let Some(kinds) = CallRelocs::HOST else {
        return;
    };
    // try_lock, never lock: see note_deepbind. A sync skipped here is done
    // by the next dlopen/dlsym.
    let Ok(mut state) = STATE.try_lock() else {
        return;
    };
    let now = generation();
    if now.is_some() && now == state.generation {
        return;
    }
    let objects = walk();
    // Forget objects since unloaded: a library closed and loaded again may
    // come back at the same address with its name at the same address.
    state
        .known
        .retain(|key| objects.iter().any(|o| o.key() == *key));
    for object in objects {
        let key = object.key();
        if state.known.contains(&key) {
            continue;
        }
        if let Some(n @ 1..) = process(&object, kinds) {
            lumigo_debug!(
                "RTLD_DEEPBIND: {n} call slots of {} now reach lumigo-run",
                object.name.to_string_lossy()
            );
        }
        if state.known.len() < MAX_KNOWN {
            state.known.push(key);
        }
    }
    state.generation = now;
}

/// One loaded object, as `dl_iterate_phdr` describes it.
struct Object {
    base: usize,
    name_ptr: usize,
    name: CString,
    phdr: *const libc::Elf64_Phdr,
    phnum: usize,
}

impl Object {
    fn key(&self) -> Key {
        (self.base, self.name_ptr)
    }

    fn headers(&self) -> &[libc::Elf64_Phdr] {
        if self.phdr.is_null() {
            return &[];
        }
        // SAFETY: the loader's program headers of a loaded object; they are
        // only read for this library and for objects we hold a handle on
        // (taken before the walk that found these headers), so it stays
        // mapped.
        unsafe { std::slice::from_raw_parts(self.phdr, self.phnum) }
    }
}

/// The loader's object counters, read cheaply (the callback stops at the
/// first object).
fn generation() -> Option<(u64, u64)> {
    unsafe extern "C" fn first(info: *mut dl_phdr_info, _: size_t, out: *mut c_void) -> c_int {
        // SAFETY: the loader passes a valid info; `out` is ours.
        unsafe {
            let info = &*info;
            *out.cast::<Option<(u64, u64)>>() = Some((info.dlpi_adds, info.dlpi_subs));
        }
        1
    }
    let mut out: Option<(u64, u64)> = None;
    // SAFETY: the callback only writes to `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut out as *mut Option<(u64, u64)>).cast()) };
    out
}

/// Every loaded object (all namespaces; `process` keeps to ours).
fn walk() -> Vec<Object> {
    unsafe extern "C" fn each(info: *mut dl_phdr_info, _: size_t, out: *mut c_void) -> c_int {
        // SAFETY: the loader passes a valid info whose name is a C string;
        // `out` is the Vec below. Nothing here can panic but allocation.
        unsafe {
            let info = &*info;
            let out = &mut *out.cast::<Vec<Object>>();
            let name = if info.dlpi_name.is_null() {
                CString::default()
            } else {
                CStr::from_ptr(info.dlpi_name).to_owned()
            };
            out.push(Object {
                base: info.dlpi_addr as usize,
                name_ptr: info.dlpi_name as usize,
                name,
                phdr: info.dlpi_phdr,
                phnum: usize::from(info.dlpi_phnum),
            });
        }
        0
    }
    let mut out: Vec<Object> = Vec::with_capacity(64);
    // SAFETY: the callback only pushes to `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<Object>).cast()) };
    out
}

/// Patches one object; the number of slots changed, `None` if it was not
/// one to look at.
fn process(object: &Object, kinds: CallRelocs) -> Option<usize> {
    // The main program (no name) is never an RTLD_DEEPBIND load; this
    // library is ours. (Nothing of the object is read before we hold it.)
    if object.name.is_empty() || Some(object.name_ptr) == own_name_ptr() {
        return None;
    }
    // Waits for a dlopen in progress (the loader's lock), and finds the
    // object only in our (the base) namespace.
    // SAFETY: a valid C string; RTLD_NOLOAD never loads anything.
    let handle = unsafe { libc::dlopen(object.name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return None;
    }
    let mut map: *mut LinkMap = std::ptr::null_mut();
    // SAFETY: RTLD_DI_LINKMAP writes a `struct link_map *` to `map`.
    let ok = unsafe {
        libc::dlinfo(
            handle,
            libc::RTLD_DI_LINKMAP,
            (&mut map as *mut *mut LinkMap).cast(),
        )
    } == 0;
    // SAFETY: a non-null link_map from dlinfo; its first field is l_addr.
    let same = ok && !map.is_null() && unsafe { (*map).l_addr } == object.base;
    // Its program headers, read again now that our handle keeps it loaded.
    let n = same
        .then(|| walk().into_iter().find(|o| o.key() == object.key()))
        .flatten()
        .map(|held| patch(&held, handle, kinds));
    // SAFETY: drops the reference RTLD_NOLOAD took; the object stays loaded.
    unsafe { libc::dlclose(handle) };
    n
}

/// This library's name as the loader holds it (`dladdr` and
/// `dl_iterate_phdr` both hand out the link map's `l_name`).
fn own_name_ptr() -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr fills a plain struct for an address of this library.
    let found = unsafe { libc::dladdr(sync as *const () as *const c_void, info.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by dladdr on success.
    let info = unsafe { info.assume_init() };
    (found != 0 && !info.dli_fname.is_null()).then_some(info.dli_fname as usize)
}

/// The public head of glibc's `struct link_map`.
#[repr(C)]
struct LinkMap {
    l_addr: usize,
}

fn patch(object: &Object, handle: *mut c_void, kinds: CallRelocs) -> usize {
    let Some(exports) = exports() else { return 0 };
    let image = LoadedImage::of(object);
    let base = object.base as u64;
    let Some(dynamic) = object
        .headers()
        .iter()
        .find(|h| h.p_type == PT_DYNAMIC)
        .and_then(|h| Dynamic::read(&image, base, base + h.p_vaddr))
    else {
        return 0;
    };
    // The pages glibc made read-only after relocation (as _dl_protect_relro
    // rounds them).
    let page = page_size();
    let relro = object
        .headers()
        .iter()
        .find(|h| h.p_type == PT_GNU_RELRO)
        .map(|h| {
            let start = (base + h.p_vaddr) & !(page - 1);
            let end = (base + h.p_vaddr + h.p_memsz) & !(page - 1);
            start..end
        });
    // The definition the object's own scope gives each export (looked up
    // once per name).
    let mut local: Vec<(usize, usize)> = Vec::new();
    let mut patched = 0;
    dynamic.for_each_binding(&image, base, kinds, |slot, name| {
        let Some((i, export)) = exports
            .iter()
            .enumerate()
            .find(|(_, e)| e.name.to_bytes() == name)
        else {
            return;
        };
        if export.global != export.hook {
            return;
        }
        let target = match local.iter().find(|(j, _)| *j == i) {
            Some(&(_, t)) => t,
            None => {
                // SAFETY: a handle from dlopen and a valid name.
                let t = unsafe { libc::dlsym(handle, export.name.as_ptr()) } as usize;
                local.push((i, t));
                t
            }
        };
        if target == 0 || image.contains(target as u64) {
            return;
        }
        if !export.per_caller && target != export.next {
            return;
        }
        if slot % 8 != 0 || image.read(slot, &mut [0; 8]).is_none() {
            return;
        }
        let in_relro = relro.as_ref().is_some_and(|r| r.contains(&slot));
        if !in_relro && !image.writable(slot) {
            return;
        }
        // SAFETY: `slot` is an aligned, mapped pointer-sized GOT entry of
        // this object (checked above), only ever accessed atomically here
        // and by plain loads of code calling through it.
        let cell = unsafe { AtomicUsize::from_ptr(slot as *mut usize) };
        let current = cell.load(Ordering::Acquire);
        if current == export.hook || (current != target && !image.contains(current as u64)) {
            return;
        }
        let page_start = (slot & !(page - 1)) as *mut c_void;
        // SAFETY: re-protecting one page of this object's RELRO region,
        // which the loader made read-only; it becomes read-only again below.
        if in_relro
            && unsafe {
                libc::mprotect(
                    page_start,
                    page as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            } != 0
        {
            return;
        }
        if cell
            .compare_exchange(current, export.hook, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            patched += 1;
        }
        if in_relro {
            // SAFETY: as above, restoring the loader's protection.
            unsafe { libc::mprotect(page_start, page as usize, libc::PROT_READ) };
        }
    });
    patched
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

/// One function this library exports.
struct Export {
    name: CString,
    /// Our hook.
    hook: usize,
    /// What a global lookup finds (our hook, unless something ahead of us
    /// in the global scope defines the name).
    global: usize,
    /// The definition after ours, which the hook forwards to.
    next: usize,
    /// The hook finds its real function from its caller (OpenSSL's).
    per_caller: bool,
}

/// The functions this library exports, from its own dynamic symbol table:
/// the one list of our hooks. `None` if it cannot be read.
fn exports() -> Option<&'static [Export]> {
    static EXPORTS: OnceLock<Option<Vec<Export>>> = OnceLock::new();
    EXPORTS
        .get_or_init(|| {
            let me = own_name_ptr()?;
            let ours = walk().into_iter().find(|o| o.name_ptr == me)?;
            let image = LoadedImage::of(&ours);
            let base = ours.base as u64;
            let dyn_addr = base
                + ours
                    .headers()
                    .iter()
                    .find(|h| h.p_type == PT_DYNAMIC)?
                    .p_vaddr;
            let dynamic = Dynamic::read(&image, base, dyn_addr)?;
            let per_caller = crate::hooks::tls::our_hooks();
            let mut out = Vec::new();
            dynamic.for_each_export(&image, |name, value| {
                let Ok(name) = CString::new(name) else { return };
                let hook = (base + value) as usize;
                // SAFETY: dlsym with a valid name, from this library.
                let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
                // SAFETY: as above.
                let next = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
                out.push(Export {
                    per_caller: per_caller.contains(&hook),
                    name,
                    hook,
                    global,
                    next,
                });
            });
            Some(out)
        })
        .as_deref()
}

/// A loaded object's readable segments.
struct LoadedImage {
    /// (start, end, flags), absolute.
    segments: Vec<(u64, u64, u32)>,
}

impl LoadedImage {
    fn of(object: &Object) -> LoadedImage {
        let base = object.base as u64;
        LoadedImage {
            segments: object
                .headers()
                .iter()
                .filter(|h| h.p_type == PT_LOAD)
                .map(|h| (base + h.p_vaddr, base + h.p_vaddr + h.p_memsz, h.p_flags))
                .collect(),
        }
    }

    fn writable(&self, addr: u64) -> bool {
        self.segments.iter().any(|&(s, e, f)| {
            addr >= s && addr.checked_add(8).is_some_and(|end| end <= e) && f & PF_W != 0
        })
    }
}

impl Image for LoadedImage {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        let end = addr.checked_add(buf.len() as u64)?;
        self.segments
            .iter()
            .find(|&&(s, e, f)| addr >= s && end <= e && f & PF_R != 0)?;
        // SAFETY: [addr, end) lies inside a readable PT_LOAD segment of an
        // object that stays loaded while we look at it.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }
}
