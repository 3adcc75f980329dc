//! Reading a loaded ELF object's dynamic section: which of its relocations
//! bind a call to a named symbol, and which functions an object exports.
//!
//! The preload library uses this to re-point the call slots of libraries
//! loaded with `RTLD_DEEPBIND` (whose lookups find libc before
//! `LD_PRELOAD`) at our hooks. Everything here is pure: memory is read
//! through an [`Image`], which the preload library implements over a mapped
//! object (bounds-checked against its `PT_LOAD` segments) and the tests over
//! the bytes of an ELF file. Only 64-bit little-endian objects with `RELA`
//! relocations are understood (x86_64 and aarch64, the architectures whose
//! relocation types [`CallRelocs::HOST`] knows); anything else yields
//! nothing.

pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_GNU_RELRO: u32 = 0x6474_e552;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RELAENT: i64 = 9;
const DT_STRSZ: i64 = 10;
const DT_SYMENT: i64 = 11;
const DT_PLTREL: i64 = 20;
const DT_JMPREL: i64 = 23;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

const RELA_SIZE: u64 = 24;
const SYM_SIZE: u64 = 24;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;

/// Longest symbol name looked at; ours are far shorter.
pub const MAX_NAME: usize = 64;
/// Upper bounds that keep a corrupt table from making us loop for long.
const MAX_DYNAMIC: usize = 4096;
const MAX_RELOCS: u64 = 1 << 20;
const MAX_SYMBOLS: u64 = 1 << 20;

/// The address of entry `index` of `size` bytes in a table at `table`, or
/// `None` past the end of the address space (a hostile table address).
fn entry(table: u64, index: u64, size: u64) -> Option<u64> {
    table.checked_add(index.checked_mul(size)?)
}

/// Readable memory of one object, by address.
pub trait Image {
    /// `buf.len()` bytes at `addr`, or `None` if any of them is outside the
    /// object.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()>;

    fn u32_at(&self, addr: u64) -> Option<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Some(u32::from_le_bytes(b))
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    /// True if `addr` lies inside the object's mapped segments.
    fn contains(&self, addr: u64) -> bool {
        self.read(addr, &mut [0]).is_some()
    }
}

/// The relocation types that bind a symbol's address into a slot the code
/// calls or loads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallRelocs {
    pub jump_slot: u32,
    pub glob_dat: u32,
}

impl CallRelocs {
    pub const X86_64: CallRelocs = CallRelocs {
        jump_slot: 7,
        glob_dat: 6,
    };
    pub const AARCH64: CallRelocs = CallRelocs {
        jump_slot: 1026,
        glob_dat: 1025,
    };

    /// This machine's, or `None` where we do not know them.
    pub const HOST: Option<CallRelocs> = if cfg!(target_arch = "x86_64") {
        Some(Self::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Self::AARCH64)
    } else {
        None
    };
}

/// The tables of a dynamic section, as absolute addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    pub strtab: u64,
    pub strsz: u64,
    pub symtab: u64,
    pub syment: u64,
    pub jmprel: u64,
    pub pltrelsz: u64,
    pub plt_is_rela: bool,
    pub rela: u64,
    pub relasz: u64,
    pub relaent: u64,
    pub gnu_hash: u64,
    pub hash: u64,
}

impl Dynamic {
    /// Reads the dynamic section at `addr` of an object loaded at `base`.
    ///
    /// glibc rewrites most table addresses in place to absolute ones when it
    /// loads an object (not on every architecture), so an address that
    /// already lies inside the object is taken as is and any other one is
    /// taken relative to `base`.
    pub fn read(image: &impl Image, base: u64, addr: u64) -> Option<Dynamic> {
        let abs = |v: u64| {
            if image.contains(v) {
                v
            } else {
                base.wrapping_add(v)
            }
        };
        let mut d = Dynamic {
            syment: SYM_SIZE,
            relaent: RELA_SIZE,
            ..Dynamic::default()
        };
        for i in 0..MAX_DYNAMIC as u64 {
            let at = entry(addr, i, 16)?;
            let tag = image.u64_at(at)? as i64;
            let val = image.u64_at(entry(at, 1, 8)?)?;
            match tag {
                DT_NULL => return Some(d),
                DT_STRTAB => d.strtab = abs(val),
                DT_STRSZ => d.strsz = val,
                DT_SYMTAB => d.symtab = abs(val),
                DT_SYMENT => d.syment = val,
                DT_JMPREL => d.jmprel = abs(val),
                DT_PLTRELSZ => d.pltrelsz = val,
                DT_PLTREL => d.plt_is_rela = val == DT_RELA as u64,
                DT_RELA => d.rela = abs(val),
                DT_RELASZ => d.relasz = val,
                DT_RELAENT => d.relaent = val,
                DT_GNU_HASH => d.gnu_hash = abs(val),
                DT_HASH => d.hash = abs(val),
                _ => {}
            }
        }
        None
    }

    /// Calls `f(slot, name)` for every relocation of the kinds in `kinds`
    /// that binds the symbol `name` into the slot at absolute address `slot`
    /// (in the PLT relocations and in the other `RELA` ones). Names longer
    /// than [`MAX_NAME`] are skipped.
    pub fn for_each_binding(
        &self,
        image: &impl Image,
        base: u64,
        kinds: CallRelocs,
        mut f: impl FnMut(u64, &[u8]),
    ) {
        if self.symtab == 0 || self.strtab == 0 || self.syment != SYM_SIZE {
            return;
        }
        let mut tables = [(self.rela, self.relasz), (0, 0)];
        if self.plt_is_rela {
            tables[1] = (self.jmprel, self.pltrelsz);
        }
        if self.relaent != RELA_SIZE {
            tables[0] = (0, 0);
        }
        for (start, size) in tables {
            if start == 0 {
                continue;
            }
            for i in 0..(size / RELA_SIZE).min(MAX_RELOCS) {
                let Some(at) = entry(start, i, RELA_SIZE) else {
                    return;
                };
                let (Some(offset), Some(info)) = (
                    image.u64_at(at),
                    entry(at, 1, 8).and_then(|a| image.u64_at(a)),
                ) else {
                    return;
                };
                let kind = info as u32;
                let sym = info >> 32;
                if sym == 0 || (kind != kinds.jump_slot && kind != kinds.glob_dat) {
                    continue;
                }
                let mut buf = [0u8; MAX_NAME];
                if let Some(name) = self.symbol_name(image, sym, &mut buf) {
                    f(base.wrapping_add(offset), name);
                }
            }
        }
    }

    /// Calls `f(name, value)` for every function the object defines and
    /// exports (global or weak), `value` relative to its load address.
    pub fn for_each_export(&self, image: &impl Image, mut f: impl FnMut(&[u8], u64)) {
        if self.symtab == 0 || self.strtab == 0 || self.syment != SYM_SIZE {
            return;
        }
        let Some(count) = self.symbol_count(image) else {
            return;
        };
        for i in 1..count.min(MAX_SYMBOLS) {
            let mut raw = [0u8; SYM_SIZE as usize];
            if entry(self.symtab, i, SYM_SIZE)
                .and_then(|at| image.read(at, &mut raw))
                .is_none()
            {
                return;
            }
            let info = raw[4];
            let shndx = u16::from_le_bytes([raw[6], raw[7]]);
            let value = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
            let bind = info >> 4;
            if info & 0xf != STT_FUNC
                || (bind != STB_GLOBAL && bind != STB_WEAK)
                || shndx == 0
                || value == 0
            {
                continue;
            }
            let mut buf = [0u8; MAX_NAME];
            if let Some(name) = self.symbol_name(image, i, &mut buf) {
                f(name, value);
            }
        }
    }

    /// The name of symbol `index`, read into `buf`.
    fn symbol_name<'b>(
        &self,
        image: &impl Image,
        index: u64,
        buf: &'b mut [u8; MAX_NAME],
    ) -> Option<&'b [u8]> {
        let st_name = u64::from(image.u32_at(entry(self.symtab, index, SYM_SIZE)?)?);
        if st_name >= self.strsz {
            return None;
        }
        let start = self.strtab.checked_add(st_name)?;
        let len = ((self.strsz - st_name) as usize).min(MAX_NAME);
        // Read byte by byte: the string table may end before MAX_NAME.
        for (i, b) in buf.iter_mut().enumerate().take(len) {
            image.read(entry(start, i as u64, 1)?, std::slice::from_mut(b))?;
            if *b == 0 {
                return (i > 0).then_some(&buf[..i]);
            }
        }
        None
    }

    /// How many entries the symbol table has, from the hash tables (the
    /// dynamic section does not say).
    fn symbol_count(&self, image: &impl Image) -> Option<u64> {
        if self.hash != 0 {
            return image.u32_at(entry(self.hash, 1, 4)?).map(u64::from);
        }
        if self.gnu_hash == 0 {
            return None;
        }
        let h = self.gnu_hash;
        let nbuckets = u64::from(image.u32_at(h)?);
        let symoffset = u64::from(image.u32_at(entry(h, 1, 4)?)?);
        let bloom_size = u64::from(image.u32_at(entry(h, 2, 4)?)?);
        let buckets = entry(entry(h, 2, 8)?, bloom_size, 8)?;
        let mut last = 0u64;
        for i in 0..nbuckets.min(MAX_SYMBOLS) {
            last = last.max(u64::from(image.u32_at(entry(buckets, i, 4)?)?));
        }
        if last < symoffset {
            return Some(symoffset);
        }
        let chains = entry(buckets, nbuckets, 4)?;
        while last < MAX_SYMBOLS {
            if image.u32_at(entry(chains, last - symoffset, 4)?)? & 1 == 1 {
                return Some(last + 1);
            }
            last += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF file's bytes, addressed by virtual address through its
    /// `PT_LOAD` headers (what the loader would map, minus .bss).
    struct FileImage {
        bytes: Vec<u8>,
        loads: Vec<(u64, u64, u64)>, // (vaddr, offset, filesz)
    }

    impl FileImage {
        fn new(bytes: Vec<u8>) -> FileImage {
            let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
            let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
            assert_eq!(&bytes[..4], b"\x7fELF");
            let phoff = u64_at(0x20) as usize;
            let phentsize = u16_at(0x36) as usize;
            let phnum = u16_at(0x38) as usize;
            let loads = (0..phnum)
                .map(|i| phoff + i * phentsize)
                .filter(|&p| u32_at(p) == PT_LOAD)
                .map(|p| (u64_at(p + 16), u64_at(p + 8), u64_at(p + 32)))
                .collect();
            FileImage { bytes, loads }
        }

        fn dynamic_vaddr(&self) -> u64 {
            let b = &self.bytes;
            let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
            let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
            let phoff = u64_at(0x20) as usize;
            let phnum = u16::from_le_bytes([b[0x38], b[0x39]]) as usize;
            (0..phnum)
                .map(|i| phoff + i * 56)
                .find(|&p| u32_at(p) == PT_DYNAMIC)
                .map(|p| u64_at(p + 16))
                .expect("PT_DYNAMIC")
        }
    }

    impl Image for FileImage {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
            let n = buf.len() as u64;
            let &(vaddr, offset, _) = self
                .loads
                .iter()
                .find(|(v, _, sz)| addr >= *v && addr + n <= v + sz)?;
            let at = (offset + addr - vaddr) as usize;
            buf.copy_from_slice(self.bytes.get(at..at + buf.len())?);
            Some(())
        }
    }

    /// A synthetic object: one segment at vaddr 0 holding everything.
    struct Synthetic(Vec<u8>);

    impl Image for Synthetic {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
            let at = usize::try_from(addr).ok()?;
            buf.copy_from_slice(self.0.get(at..at.checked_add(buf.len())?)?);
            Some(())
        }
    }

    fn put(v: &mut [u8], at: usize, bytes: &[u8]) {
        v[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Dynamic section at 0x000, strtab 0x100, symtab 0x200, rela 0x300,
    /// jmprel 0x400, gnu hash 0x500.
    fn synthetic(jump_slot: u32, glob_dat: u32) -> Synthetic {
        let mut v = vec![0u8; 0x600];
        let dyns: [(i64, u64); 11] = [
            (DT_STRTAB, 0x100),
            (DT_STRSZ, 0x40),
            (DT_SYMTAB, 0x200),
            (DT_SYMENT, 24),
            (DT_RELA, 0x300),
            (DT_RELASZ, 2 * 24),
            (DT_RELAENT, 24),
            (DT_JMPREL, 0x400),
            (DT_PLTRELSZ, 3 * 24),
            (DT_PLTREL, DT_RELA as u64),
            (DT_GNU_HASH, 0x500),
        ];
        for (i, (t, val)) in dyns.iter().enumerate() {
            put(&mut v, i * 16, &t.to_le_bytes());
            put(&mut v, i * 16 + 8, &val.to_le_bytes());
        }
        put(&mut v, 0x100, b"\0connect\0recv\0mine\0send\0");
        // Symbols: 0 null, 1 connect (undef), 2 recv (undef), 3 mine
        // (defined function), 4 send (undef).
        let syms: [(u32, u8, u16, u64); 5] = [
            (0, 0, 0, 0),
            (1, 0x12, 0, 0),
            (9, 0x12, 0, 0),
            (14, 0x12, 7, 0x1234),
            (19, 0x22, 0, 0),
        ];
        for (i, (name, info, shndx, value)) in syms.iter().enumerate() {
            let at = 0x200 + i * 24;
            put(&mut v, at, &name.to_le_bytes());
            v[at + 4] = *info;
            put(&mut v, at + 6, &shndx.to_le_bytes());
            put(&mut v, at + 8, &value.to_le_bytes());
        }
        let rela = |v: &mut Vec<u8>, at: usize, off: u64, kind: u32, sym: u64| {
            put(v, at, &off.to_le_bytes());
            put(v, at + 8, &((sym << 32) | u64::from(kind)).to_le_bytes());
        };
        rela(&mut v, 0x300, 0x5000, glob_dat, 4); // send, GLOB_DAT
        rela(&mut v, 0x318, 0x5008, 8, 0); // a RELATIVE one
        rela(&mut v, 0x400, 0x6000, jump_slot, 1); // connect
        rela(&mut v, 0x418, 0x6008, jump_slot, 2); // recv
        rela(&mut v, 0x430, 0x6010, 99, 1); // some other kind
                                            // GNU hash: 1 bucket, symoffset 3, 1 bloom word; bucket -> 3,
                                            // chain: 3 (not last), 4 (last).
        put(&mut v, 0x500, &1u32.to_le_bytes());
        put(&mut v, 0x504, &3u32.to_le_bytes());
        put(&mut v, 0x508, &1u32.to_le_bytes());
        put(&mut v, 0x518, &3u32.to_le_bytes());
        put(&mut v, 0x51c, &0u32.to_le_bytes());
        put(&mut v, 0x520, &1u32.to_le_bytes());
        Synthetic(v)
    }

    fn bindings(image: &impl Image, base: u64, kinds: CallRelocs) -> Vec<(u64, String)> {
        bindings_at(image, base, 0, kinds)
    }

    fn bindings_at(
        image: &impl Image,
        base: u64,
        dynamic: u64,
        kinds: CallRelocs,
    ) -> Vec<(u64, String)> {
        let d = Dynamic::read(image, base, dynamic).expect("dynamic");
        let mut out = Vec::new();
        d.for_each_binding(image, base, kinds, |slot, name| {
            out.push((slot, String::from_utf8_lossy(name).into_owned()))
        });
        out
    }

    #[test]
    fn call_slots_of_both_tables_with_their_names() {
        for kinds in [CallRelocs::X86_64, CallRelocs::AARCH64] {
            let img = synthetic(kinds.jump_slot, kinds.glob_dat);
            assert_eq!(
                bindings(&img, 0x7000_0000, kinds),
                [
                    (0x7000_5000, "send".to_owned()),
                    (0x7000_6000, "connect".to_owned()),
                    (0x7000_6008, "recv".to_owned()),
                ]
            );
        }
    }

    #[test]
    fn other_architectures_relocation_types_are_not_taken_for_calls() {
        let img = synthetic(CallRelocs::AARCH64.jump_slot, CallRelocs::AARCH64.glob_dat);
        assert!(bindings(&img, 0, CallRelocs::X86_64).is_empty());
    }

    #[test]
    fn exports_are_the_defined_global_functions() {
        let img = synthetic(7, 6);
        let d = Dynamic::read(&img, 0, 0).unwrap();
        let mut out = Vec::new();
        d.for_each_export(&img, |n, v| out.push((n.to_vec(), v)));
        assert_eq!(out, [(b"mine".to_vec(), 0x1234)]);
    }

    #[test]
    fn truncated_or_corrupt_tables_yield_what_can_be_read_and_never_panic() {
        let full = synthetic(7, 6);
        for cut in (0..full.0.len()).step_by(7) {
            let img = Synthetic(full.0[..cut].to_vec());
            if let Some(d) = Dynamic::read(&img, 0, 0) {
                d.for_each_binding(&img, 0, CallRelocs::X86_64, |_, n| assert!(!n.is_empty()));
                d.for_each_export(&img, |_, _| {});
            }
        }
        // A string table offset past its end names nothing.
        let mut bad = synthetic(7, 6);
        put(&mut bad.0, 0x200 + 24, &0x1000u32.to_le_bytes());
        assert!(!bindings(&bad, 0, CallRelocs::X86_64)
            .iter()
            .any(|(_, n)| n == "connect"));
    }

    #[test]
    fn already_absolute_table_addresses_are_kept() {
        // As glibc leaves them after loading: DT_* pointers with the base
        // added. The image is at 0, so "absolute" = inside it.
        let img = synthetic(7, 6);
        let d = Dynamic::read(&img, 0, 0).unwrap();
        assert_eq!((d.strtab, d.symtab, d.jmprel), (0x100, 0x200, 0x400));
    }

    /// A real library from the system: its relocations name the socket calls
    /// it makes (libcurl, which the tests' machine has for `curl`).
    #[test]
    fn a_real_librarys_socket_calls_are_found() {
        if CallRelocs::HOST != Some(CallRelocs::X86_64) {
            eprintln!("SKIPPED: file test written for x86_64");
            return;
        }
        let path = [
            "/usr/lib/x86_64-linux-gnu/libcurl.so.4",
            "/usr/lib64/libcurl.so.4",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        let Some(path) = path else {
            eprintln!("SKIPPED: no libcurl.so.4");
            return;
        };
        let img = FileImage::new(std::fs::read(path).unwrap());
        let names: Vec<String> = bindings_at(&img, 0, img.dynamic_vaddr(), CallRelocs::X86_64)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        for want in ["connect", "send", "recv", "SSL_write", "SSL_read"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let mut exports = Vec::new();
        let d = Dynamic::read(&img, 0, img.dynamic_vaddr()).unwrap();
        d.for_each_export(&img, |n, _| {
            exports.push(String::from_utf8_lossy(n).into_owned())
        });
        assert!(exports.iter().any(|n| n == "curl_easy_perform"));
    }

    /// Memory that reads as `0xff` bytes at every address, so only the
    /// address arithmetic can stop a walk.
    struct Everywhere;

    impl Image for Everywhere {
        fn read(&self, _: u64, buf: &mut [u8]) -> Option<()> {
            buf.fill(0xff);
            Some(())
        }
    }

    /// Table addresses at the top of the address space (found by the `elf`
    /// fuzz target: `at + 8` overflowed): every walk stops where an address
    /// would pass `u64::MAX`, without a panic or a wrapped read.
    #[test]
    fn tables_at_the_end_of_the_address_space_stop_the_walk() {
        let top = u64::MAX - 7;
        let d = Dynamic {
            strtab: top,
            strsz: u64::MAX,
            symtab: top,
            syment: SYM_SIZE,
            jmprel: top,
            pltrelsz: 10 * RELA_SIZE,
            plt_is_rela: true,
            rela: top - RELA_SIZE,
            relasz: 10 * RELA_SIZE,
            relaent: RELA_SIZE,
            gnu_hash: top,
            hash: 0,
        };
        let mut calls = 0;
        d.for_each_binding(&Everywhere, 0, CallRelocs::X86_64, |_, _| calls += 1);
        d.for_each_export(&Everywhere, |_, _| calls += 1);
        let hashed = Dynamic { hash: top, ..d };
        hashed.for_each_export(&Everywhere, |_, _| calls += 1);
        assert_eq!(calls, 0);
        assert_eq!(Dynamic::read(&Everywhere, 0, top), None);
    }
}
