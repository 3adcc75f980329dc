//! One end of a traced stream: an IP address and port (TCP), or the name of
//! a Unix domain socket.
//!
//! A Unix socket's name is kept as the text spans show, made once when the
//! connection is tracked: a filesystem path as it is (up to its first NUL),
//! an abstract-namespace name (leading NUL) as `@name`, with any other NUL
//! also shown as `@`, the way `ss` prints them. An unnamed socket (the
//! usual client end of an accepted connection, a `socketpair`) has no
//! address at all.

use std::net::SocketAddr;
use std::sync::Arc;

/// The address of one end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Inet(SocketAddr),
    /// A Unix domain socket's name, as text.
    Unix(Arc<str>),
}

/// Longest Unix socket name kept (`sun_path` is 108 bytes on Linux).
const MAX_UNIX_NAME: usize = 108;

impl Address {
    /// A Unix socket's address from the bytes of its `sun_path` (as many as
    /// the address length covers). `None` for an unnamed socket.
    pub fn unix(path: &[u8]) -> Option<Address> {
        let path = &path[..path.len().min(MAX_UNIX_NAME)];
        let text = match path.split_first() {
            None => return None,
            Some((0, name)) => {
                // Abstract: every byte counts, but trailing NULs (an app
                // that passed the whole structure's size) only add noise.
                let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let mut text = String::with_capacity(end + 1);
                text.push('@');
                text.push_str(&String::from_utf8_lossy(&name[..end]).replace('\0', "@"));
                text
            }
            Some(_) => {
                let end = memchr::memchr(0, path).unwrap_or(path.len());
                String::from_utf8_lossy(&path[..end]).into_owned()
            }
        };
        Some(Address::Unix(Arc::from(text)))
    }

    /// The port, for a TCP address.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Inet(a) => Some(a.port()),
            Address::Unix(_) => None,
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Address::Unix(_))
    }

    /// A peer whose connections are never traced: cloud metadata services,
    /// as in the Lumigo distributions. That is any link-local address:
    /// IPv4's 169.254.0.0/16 (EC2's and GCP's 169.254.169.254, ECS's task
    /// metadata at 169.254.170.2), also written as an IPv4-mapped IPv6
    /// address, and IPv6's `fe80::/10`; and EC2's IPv6 metadata endpoint,
    /// `fd00:ec2::254`. Other addresses and Unix sockets are traced.
    pub fn is_excluded_peer(&self) -> bool {
        match self {
            Address::Inet(SocketAddr::V4(a)) => a.ip().is_link_local(),
            Address::Inet(SocketAddr::V6(a)) => {
                let ip = a.ip();
                ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                    || ip.segments()[0] & 0xffc0 == 0xfe80
                    || *ip == EC2_METADATA_V6
            }
            Address::Unix(_) => false,
        }
    }
}

/// EC2's instance metadata service over IPv6 (Nitro instances).
const EC2_METADATA_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Inet(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &[u8]) -> Option<String> {
        match Address::unix(path)? {
            Address::Unix(t) => Some(t.to_string()),
            Address::Inet(_) => None,
        }
    }

    #[test]
    fn unix_names_are_shown_readably() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"", None),
            (b"/run/app.sock", Some("/run/app.sock")),
            // The kernel's length counts the path's terminating NUL.
            (b"/run/app.sock\0", Some("/run/app.sock")),
            (b"/run/app.sock\0junk after the NUL", Some("/run/app.sock")),
            (b"\0docker-abstract", Some("@docker-abstract")),
            (b"\0a\0b", Some("@a@b")),
            (b"\0name\0\0\0\0", Some("@name")),
            (b"\0", Some("@")),
            (b"/tmp/\xffx.sock", Some("/tmp/\u{fffd}x.sock")),
        ];
        for (bytes, want) in cases {
            assert_eq!(text(bytes).as_deref(), *want, "{bytes:?}");
        }
        let long = [b'a'; 300];
        assert_eq!(text(&long).map(|t| t.len()), Some(MAX_UNIX_NAME));
    }

    fn inet(s: &str) -> Address {
        Address::from(s.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn metadata_services_are_excluded_peers() {
        for excluded in [
            "169.254.169.254:80",
            "169.254.169.254:443",
            "169.254.170.2:80",
            "169.254.0.0:1",
            "169.254.255.255:8080",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:169.254.170.2]:80",
            "[fd00:ec2::254]:80",
            "[fe80::1]:80",
            "[fe80::a9fe:a9fe%2]:80",
            "[febf:ffff::1]:80",
        ] {
            assert!(inet(excluded).is_excluded_peer(), "{excluded}");
        }
        for traced in [
            "127.0.0.1:80",
            "10.0.0.1:80",
            "169.253.255.255:80",
            "169.255.0.0:80",
            "0.0.0.0:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.1.2.3]:80",
            // IPv4-compatible (not mapped) is not read as IPv4.
            "[::169.254.169.254]:80",
            // Beside the link-local range and the EC2 endpoint.
            "[fec0::1]:80",
            "[fe7f:ffff::1]:80",
            "[fd00:ec2::253]:80",
            "[fd00:ec2::1:254]:80",
        ] {
            assert!(!inet(traced).is_excluded_peer(), "{traced}");
        }
        assert!(!Address::unix(b"/run/metadata.sock")
            .unwrap()
            .is_excluded_peer());
        assert!(!Address::unix(b"\x00169.254.169.254")
            .unwrap()
            .is_excluded_peer());
    }

    #[test]
    fn ports_only_for_inet() {
        let inet = Address::from("127.0.0.1:5432".parse::<SocketAddr>().unwrap());
        assert_eq!(inet.port(), Some(5432));
        assert!(!inet.is_unix());
        let unix = Address::unix(b"/s").unwrap();
        assert_eq!(unix.port(), None);
        assert!(unix.is_unix());
    }
}
