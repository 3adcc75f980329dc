//! Loads `liblumigo_transport.so` (the HTTP client and TLS stack of OTLP
//! export) from the directory this library was loaded from, the first time
//! the export thread builds an OTLP exporter.
//!
//! Only the export thread gets here (the core library calls the factory
//! while building its exporters), so `dlopen` never runs on an app thread,
//! inside one of its hooks or signal handlers, and never in a process that
//! has no span to send. The outcome, loaded or not, is kept for the life of
//! the process (a forked child inherits the mapping with the rest of its
//! memory). The library is opened `RTLD_LOCAL`: none of its symbols can
//! interpose on the app's.

use std::ffi::{c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use lumigo_core::export::{FreeFn, NewFn, PostFn, Transport, TransportAbi, TRANSPORT_ABI_VERSION};

/// File name of the transport library, beside `liblumigo_preload.so`.
pub const LIBRARY_NAME: &str = "liblumigo_transport.so";

static LOADED: OnceLock<Result<TransportAbi, String>> = OnceLock::new();

/// The [`lumigo_core::export::TransportFactory`] of a traced process.
pub fn factory(
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(Box<dyn Transport>, Vec<String>), String> {
    match LOADED.get_or_init(load) {
        Ok(abi) => abi.client(headers, timeout),
        Err(e) => Err(e.clone()),
    }
}

fn load() -> Result<TransportAbi, String> {
    let path = library_path()?;
    let display = path.display().to_string();
    let c_path = CString::new(path.into_os_string().into_encoded_bytes())
        .map_err(|_| format!("{display}: the path holds a NUL byte"))?;
    // SAFETY: dlopen with a valid C string; dlerror is read right after on
    // this thread.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {display}: {}", dl_error()));
    }
    let symbol = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: a live handle and a valid C string.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!("{display} has no {}", name.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    let abi = symbol(c"lumigo_transport_abi")?;
    // SAFETY: lumigo_transport_abi is `extern "C" fn() -> u32` in every
    // version of the library.
    let version = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> u32>(abi)() };
    if version != TRANSPORT_ABI_VERSION {
        return Err(format!(
            "{display} speaks ABI {version}, this library {TRANSPORT_ABI_VERSION}: \
             the two files come from different builds"
        ));
    }
    let (new, post, free) = (
        symbol(c"lumigo_transport_new")?,
        symbol(c"lumigo_transport_post")?,
        symbol(c"lumigo_transport_free")?,
    );
    // SAFETY: the version check above vouches for these signatures; the
    // handle is never closed, so the functions stay loaded.
    unsafe {
        Ok(TransportAbi::new(
            std::mem::transmute::<*mut c_void, NewFn>(new),
            std::mem::transmute::<*mut c_void, PostFn>(post),
            std::mem::transmute::<*mut c_void, FreeFn>(free),
        ))
    }
}

/// `liblumigo_transport.so` in the directory of the file this code was
/// loaded from (as the loader names it: the `LD_PRELOAD` entry).
fn library_path() -> Result<PathBuf, String> {
    // SAFETY: dladdr fills a plain struct; dli_fname points into the
    // loader's own, permanent data.
    let ours = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let here = library_path as fn() -> Result<PathBuf, String> as *const c_void;
        if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
            return Err("cannot tell where liblumigo_preload.so was loaded from".into());
        }
        PathBuf::from(OsStr::from_bytes(CStr::from_ptr(info.dli_fname).to_bytes()))
    };
    Ok(ours.parent().unwrap_or(Path::new(".")).join(LIBRARY_NAME))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a C string valid until the next dl call
    // on this thread; it is copied at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}
