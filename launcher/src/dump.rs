//! The span dump path, checked before exec with the rules the library
//! applies when it opens the file ([`lumigo_core::owned_file`]): the
//! library itself stays silent without `LUMIGO_DEBUG`, so this is where the
//! user hears why no span will be written there.

use std::path::Path;

use lumigo_core::owned_file::{check_path, Refusal};

use crate::diag;

/// Warns (once) if the library will refuse to write the span dump `path`.
/// Nothing is opened or created.
pub fn warn_if_refused(path: &Path) {
    if let Err(refusal) = check_path(path) {
        diag::warn(message(path, &refusal));
    }
}

fn message(path: &Path, refusal: &Refusal) -> String {
    let rule = if refusal.is_unsafe_file() {
        "; the span dump must be a regular file of your own that no one else can write, \
         with one link (or a path where lumigo-run can create it)"
    } else {
        ""
    };
    format!(
        "spans will not be written to the span dump {}: {refusal}{rule}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_where_and_why() {
        let m = message(Path::new("/tmp/d.jsonl"), &Refusal::SymbolicLink);
        assert!(m.contains("/tmp/d.jsonl"), "{m}");
        assert!(m.contains("symbolic link"), "{m}");
        assert!(m.contains("regular file of your own"), "{m}");
    }
}
