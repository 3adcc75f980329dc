//! Kubernetes and container facts from `/etc/hosts`, `/proc/self/mountinfo`
//! and `/proc/self/cgroup`, as the Lumigo distributions find them.
//!
//! Everything here is a pure function of the files' text; [`super::detect`]
//! reads the files (on the export thread). The `procfs` crate was not used:
//! what is needed is a substring search on raw lines (`/pods/<uid>/`, a
//! 64-hex segment), which its typed mount and cgroup entries do not make
//! shorter, and it would add `rustix` and friends to the preloaded library.

/// How the first line of a hosts file written by the kubelet starts (it
/// goes on with `.` or ` (host network).`).
const KUBERNETES_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file";

/// Whether `/etc/hosts` (its text) says the process runs in a Kubernetes pod.
pub(super) fn is_kubernetes(hosts: &str) -> bool {
    hosts
        .lines()
        .next()
        .is_some_and(|l| l.starts_with(KUBERNETES_HOSTS_HEADER))
}

/// A pod UID: 36 characters, hex digits and dashes in the UUID places.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The pod UID in the kubelet paths of `/proc/self/mountinfo`
/// (`/var/lib/kubelet/pods/<uid>/etc-hosts /etc/hosts ...`).
pub(super) fn pod_uid_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        line.match_indices("/pods/").find_map(|(at, _)| {
            let rest = &line[at + "/pods/".len()..];
            let uid = rest.split(['/', ' ']).next()?;
            (is_uuid(uid) && rest[uid.len()..].starts_with('/')).then(|| uid.to_owned())
        })
    })
}

/// The pod UID in `/proc/self/cgroup`: `.../pod<uid>/...` (cgroupfs driver)
/// or `...-pod<uid with _ for ->.slice` (systemd driver).
pub(super) fn pod_uid_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').find_map(|segment| {
            let segment = segment.strip_suffix(".slice").unwrap_or(segment);
            let at = segment.rfind("pod")?;
            let candidate = segment[at + 3..].replace('_', "-");
            is_uuid(&candidate).then_some(candidate)
        })
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container ID in `/proc/self/cgroup` (v1 and v2): the last path
/// segment that is 64 hex digits, bare (`/docker/<id>`,
/// `/kubepods/.../<id>`) or in a systemd scope (`docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`).
/// cri-o's `crio-conmon-<id>.scope` is its monitor, not the container.
pub(super) fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/').find_map(|segment| {
            let segment = segment.strip_suffix(".scope").unwrap_or(segment);
            if segment.contains("conmon") {
                return None;
            }
            let id = segment.rsplit('-').next()?;
            is_container_id(id).then(|| id.to_owned())
        })
    })
}

/// The container ID in `/proc/self/mountinfo`, for cgroup v2 namespaces
/// where `/proc/self/cgroup` says only `0::/`: the files the runtime mounts
/// into the container live under its ID (docker:
/// `/var/lib/docker/containers/<id>/hostname`, cri-o:
/// `.../overlay-containers/<id>/userdata/hostname`). containerd's
/// `sandboxes/<id>` is the pod's sandbox, not this container, and is skipped.
pub(super) fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        if line.contains("/sandboxes/") {
            return None;
        }
        let mut previous = "";
        for segment in line.split(['/', ' ']) {
            if matches!(previous, "containers" | "overlay-containers") && is_container_id(segment) {
                return Some(segment.to_owned());
            }
            previous = segment;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "5f3c2a2e-8d3b-4c1e-9f0a-1b2c3d4e5f60";
    const CID: &str = "7be92808767a667f35c8505cbf40d14e931ef6db5b0210329cf193b15ba9d605";

    #[test]
    fn kubernetes_hosts_file() {
        assert!(is_kubernetes(
            "# Kubernetes-managed hosts file \n127.0.0.1 localhost\n"
        ));
        assert!(is_kubernetes(
            "# Kubernetes-managed hosts file.\n10.0.0.5 web-0\n"
        ));
        assert!(is_kubernetes(
            "# Kubernetes-managed hosts file (host network).\n"
        ));
        assert!(!is_kubernetes(
            "127.0.0.1 localhost\n# Kubernetes-managed hosts file\n"
        ));
        assert!(!is_kubernetes(""));
    }

    #[test]
    fn pod_uid_from_kubelet_mounts() {
        let mountinfo = format!(
            "1850 1849 0:331 / / rw,relatime master:517 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/95/fs\n\
             1851 1850 0:333 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
             1859 1850 259:1 /var/lib/kubelet/pods/{POD}/etc-hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p1 rw\n\
             1860 1850 259:1 /var/lib/kubelet/pods/{POD}/containers/app/2c5b0d5e /dev/termination-log rw,relatime - ext4 /dev/nvme0n1p1 rw\n"
        );
        assert_eq!(pod_uid_from_mountinfo(&mountinfo).as_deref(), Some(POD));
        assert_eq!(
            pod_uid_from_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n"),
            None
        );
        // Not a UID, or no slash after it.
        assert_eq!(
            pod_uid_from_mountinfo("1 2 0:1 /data/pods/latest/x /x rw - ext4 /dev/sda rw\n"),
            None
        );
    }

    #[test]
    fn pod_uid_from_cgroup_v1_and_systemd_slices() {
        let cgroupfs = format!(
            "12:pids:/kubepods/burstable/pod{POD}/{CID}\n11:memory:/kubepods/burstable/pod{POD}/{CID}\n"
        );
        assert_eq!(pod_uid_from_cgroup(&cgroupfs).as_deref(), Some(POD));
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope\n",
            POD.replace('-', "_")
        );
        assert_eq!(pod_uid_from_cgroup(&systemd).as_deref(), Some(POD));
        assert_eq!(pod_uid_from_cgroup("0::/\n"), None);
        assert_eq!(
            pod_uid_from_cgroup("4:memory:/process_api/547d20632359\n"),
            None
        );
    }

    #[test]
    fn container_id_from_cgroup_v1_and_v2_runtimes() {
        for text in [
            format!("12:cpuset:/docker/{CID}\n11:memory:/docker/{CID}\n"),
            format!("11:devices:/kubepods/besteffort/pod{POD}/{CID}\n"),
            format!("0::/system.slice/docker-{CID}.scope\n"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
                POD.replace('-', "_")
            ),
            format!("0::/kubepods.slice/kubepods-pod{}.slice/crio-{CID}.scope\n", POD.replace('-', "_")),
            format!("1:name=systemd:/machine.slice/libpod-{CID}.scope/container\n"),
        ] {
            assert_eq!(container_id_from_cgroup(&text).as_deref(), Some(CID), "{text}");
        }
        assert_eq!(
            container_id_from_cgroup(&format!("0::/system.slice/crio-conmon-{CID}.scope\n")),
            None
        );
        assert_eq!(container_id_from_cgroup("0::/\n9:name=systemd:/\n"), None);
        assert_eq!(
            container_id_from_cgroup("4:memory:/process_api/547d2063235994e71e457e7bee24154f\n"),
            None
        );
    }

    #[test]
    fn container_id_from_mountinfo_docker_and_crio() {
        let docker = format!(
            "583 560 254:1 /docker/containers/{CID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw\n\
             584 560 254:1 /docker/containers/{CID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&docker).as_deref(), Some(CID));
        let crio = format!(
            "1003 990 0:24 /containers/storage/overlay-containers/{CID}/userdata/hostname /etc/hostname rw,nosuid,nodev - tmpfs tmpfs rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&crio).as_deref(), Some(CID));
        let sandbox = format!(
            "1012 1000 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{CID}/hostname /etc/hostname rw - ext4 /dev/nvme0n1p1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&sandbox), None);
        assert_eq!(
            container_id_from_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n"),
            None
        );
    }
}
