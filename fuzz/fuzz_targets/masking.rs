//! Secret masking on hostile query strings and command lines, with the
//! default patterns and with patterns taken from the input (as
//! `LUMIGO_SECRET_MASKING_REGEX` would give them): never a panic, nothing
//! but secret values changed, and a secret value never left in the clear.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use lumigo_core::mask::{Masker, MASK};

fn check_query(masker: &Masker, query: &str) {
    let out = masker.mask_query(query);
    if let Cow::Borrowed(b) = &out {
        assert_eq!(*b, query);
    }
    let before: Vec<&str> = query.split('&').collect();
    let after: Vec<&str> = out.split('&').collect();
    assert_eq!(before.len(), after.len(), "{query:?} -> {out:?}");
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            let (name, value) = b.split_once('=').expect("only name=value changes");
            assert!(!value.is_empty());
            assert_eq!(*a, format!("{name}={MASK}"), "{query:?} -> {out:?}");
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let (first, rest) = input.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    let masker = if first & 1 == 0 {
        Masker::lumigo_defaults()
    } else {
        // The first line: patterns, separated by tabs.
        let (patterns, _) = text.split_once('\n').unwrap_or((&text, ""));
        Masker::new(&patterns.split('\t').map(str::to_owned).collect::<Vec<_>>())
    };

    check_query(&masker, &text);

    // A value under a name that is always secret never stays in the clear.
    let defaults = Masker::lumigo_defaults();
    if !text.is_empty() && !text.contains('&') {
        let q = format!("password={text}");
        assert_eq!(defaults.mask_query(&q), format!("password={MASK}"));
        let arg = format!("--password={text}");
        assert_eq!(defaults.mask_argument(&arg), format!("--password={MASK}"));
    }

    // Command lines: one argument per line. A changed argument shows a
    // mask, or (the SQL of `psql -c`/`mysql -e`, a `redis-cli` command)
    // the `?` the database spans put in place of literals, or is shorter
    // (the SQL's comments dropped, which can carry values too).
    let args: Vec<&str> = text.split('\n').collect();
    let masked = masker.mask_args(&args);
    assert_eq!(masked.len(), args.len());
    for (a, m) in args.iter().zip(&masked) {
        assert!(
            *a == m.as_ref() || m.contains(MASK) || m.contains('?') || m.len() < a.len(),
            "{a:?} -> {m:?}"
        );
    }
    for a in &args {
        let m = masker.mask_argument(a);
        assert!(*a == m.as_ref() || m.contains(MASK), "{a:?} -> {m:?}");
    }
});
