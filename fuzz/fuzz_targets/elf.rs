//! The ELF dynamic-section reader (used on `RTLD_DEEPBIND` objects) over a
//! hostile image: input bytes 0..8 name the dynamic section's address,
//! 8..16 the load base, and the rest is the object's memory (an address is
//! an offset into it). Never a panic, names within `MAX_NAME`, a bounded
//! number of callbacks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::elf::{CallRelocs, Dynamic, Image, MAX_NAME};

struct Bytes<'a>(&'a [u8]);

impl Image for Bytes<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        let at = usize::try_from(addr).ok()?;
        buf.copy_from_slice(self.0.get(at..at.checked_add(buf.len())?)?);
        Some(())
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 16 {
        return;
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    let (addr, base) = (word(&input[..8]), word(&input[8..16]));
    let image = Bytes(&input[16..]);
    for addr in [addr, addr % (image.0.len() as u64 + 1)] {
        let Some(dynamic) = Dynamic::read(&image, base, addr) else {
            continue;
        };
        for kinds in [CallRelocs::X86_64, CallRelocs::AARCH64] {
            let mut calls = 0u64;
            dynamic.for_each_binding(&image, base, kinds, |_, name| {
                assert!(name.len() <= MAX_NAME, "a name of {} bytes", name.len());
                calls += 1;
            });
            assert!(calls <= 2 << 20);
        }
        let mut calls = 0u64;
        dynamic.for_each_export(&image, |name, _| {
            assert!(name.len() <= MAX_NAME, "a name of {} bytes", name.len());
            calls += 1;
        });
        assert!(calls <= 1 << 20);
    }
});
