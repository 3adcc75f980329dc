//! `process.runtime.*` for interpreters and virtual machines, known without
//! running code in the app: from the executable's file name and path
//! (`/usr/bin/python3.11` → CPython 3.11, `~/.nvm/versions/node/v20.11.1/bin/node`
//! → Node.js 20.11.1) and, for Java, the `release` file of the JDK the
//! `java` binary belongs to.

/// `process.runtime.name`, `.version` (when known) and `.description`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Runtime {
    pub name: &'static str,
    pub version: Option<String>,
    pub description: String,
}

/// The runtime of the executable at `exe`; `read_release` reads the JDK's
/// `release` file given its path (a parameter so tests need no JDK).
pub(super) fn detect(exe: &str, read_release: impl Fn(&str) -> Option<String>) -> Option<Runtime> {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    let (dir, file) = exe.rsplit_once('/').unwrap_or(("", exe));
    let (name, display, suffix) = [
        ("python", "cpython", "CPython"),
        ("pypy", "pypy", "PyPy"),
        ("nodejs", "nodejs", "Node.js"),
        ("node", "nodejs", "Node.js"),
        ("ruby", "ruby", "Ruby"),
        ("php-fpm", "php", "PHP"),
        ("php-cgi", "php", "PHP"),
        ("php", "php", "PHP"),
        ("perl", "perl", "Perl"),
        ("java", "java", "Java"),
    ]
    .into_iter()
    .find_map(|(prefix, name, display)| {
        let rest = file.strip_prefix(prefix)?;
        // `python3.11`, `ruby3.1`, `php8.2`, `perl5.36.0`, `node`: a version
        // or nothing after the name (not `nodemon`, not `perldoc`).
        (rest.is_empty() || is_version(rest)).then_some((name, display, rest))
    })?;
    let mut version = (!suffix.is_empty()).then(|| suffix.to_owned());
    // A version manager's directory tells the full version:
    // pyenv `versions/3.11.9/bin`, nvm `versions/node/v20.11.1/bin`,
    // rbenv `versions/3.2.2/bin`.
    let segments: Vec<&str> = dir.split('/').collect();
    let from_dir = segments
        .iter()
        .enumerate()
        .filter(|(i, _)| segments[i.saturating_sub(2)..*i].contains(&"versions"))
        .map(|(_, s)| s.strip_prefix('v').unwrap_or(s))
        .rfind(|s| is_version(s) && s.contains('.'));
    if let Some(full) = from_dir {
        if version.as_deref().is_none_or(|v| full.starts_with(v)) {
            version = Some(full.to_owned());
        }
    }
    let mut display = display.to_owned();
    if name == "java" {
        // <jdk>/bin/java → <jdk>/release: JAVA_VERSION="17.0.15", IMPLEMENTOR="Debian".
        let jdk = dir.strip_suffix("/bin").unwrap_or(dir);
        if let Some(release) = read_release(&format!("{jdk}/release")) {
            if let Some(v) = release_value(&release, "JAVA_VERSION") {
                version = Some(v);
            }
            if let Some(who) = release_value(&release, "IMPLEMENTOR") {
                display = format!("{who} Java");
            }
        }
    }
    let description = match &version {
        Some(v) => format!("{display} {v}"),
        None => display,
    };
    Some(Runtime {
        name,
        version,
        description,
    })
}

/// `3`, `3.11`, `5.36.0`: digits and dots, starting with a digit.
fn is_version(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !s.ends_with('.')
}

/// `KEY="value"` in a JDK `release` file.
fn release_value(release: &str, key: &str) -> Option<String> {
    release.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_release(_: &str) -> Option<String> {
        None
    }

    fn rt(name: &'static str, version: Option<&str>, description: &str) -> Option<Runtime> {
        Some(Runtime {
            name,
            version: version.map(str::to_owned),
            description: description.to_owned(),
        })
    }

    #[test]
    fn runtimes_from_executable_names() {
        for (exe, want) in [
            (
                "/usr/bin/python3.11",
                rt("cpython", Some("3.11"), "CPython 3.11"),
            ),
            ("/usr/bin/python3", rt("cpython", Some("3"), "CPython 3")),
            (
                "/root/.pyenv/versions/3.11.9/bin/python3.11",
                rt("cpython", Some("3.11.9"), "CPython 3.11.9"),
            ),
            ("/usr/bin/node", rt("nodejs", None, "Node.js")),
            (
                "/home/u/.nvm/versions/node/v20.11.1/bin/node",
                rt("nodejs", Some("20.11.1"), "Node.js 20.11.1"),
            ),
            ("/usr/bin/ruby3.1", rt("ruby", Some("3.1"), "Ruby 3.1")),
            ("/usr/bin/php8.2", rt("php", Some("8.2"), "PHP 8.2")),
            ("/usr/sbin/php-fpm8.2", rt("php", Some("8.2"), "PHP 8.2")),
            ("/usr/bin/perl", rt("perl", None, "Perl")),
            (
                "/usr/bin/perl5.36.0",
                rt("perl", Some("5.36.0"), "Perl 5.36.0"),
            ),
            ("/usr/bin/pypy3 (deleted)", rt("pypy", Some("3"), "PyPy 3")),
            ("/opt/app/2.0/bin/node", rt("nodejs", None, "Node.js")),
            ("/usr/bin/curl", None),
            ("/usr/bin/nodemon", None),
            ("/usr/bin/perldoc", None),
            ("/usr/sbin/nginx", None),
        ] {
            assert_eq!(detect(exe, no_release), want, "{exe}");
        }
    }

    #[test]
    fn java_version_from_the_jdk_release_file() {
        let release = |path: &str| {
            (path == "/usr/lib/jvm/java-17-openjdk-amd64/release").then(|| {
                "IMPLEMENTOR=\"Debian\"\nJAVA_RUNTIME_VERSION=\"17.0.15+6-Debian-1deb12u1\"\nJAVA_VERSION=\"17.0.15\"\nJAVA_VERSION_DATE=\"2025-04-15\"\n"
                    .to_owned()
            })
        };
        assert_eq!(
            detect("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", release),
            rt("java", Some("17.0.15"), "Debian Java 17.0.15")
        );
        assert_eq!(
            detect("/opt/jdk/bin/java", no_release),
            rt("java", None, "Java")
        );
    }
}
