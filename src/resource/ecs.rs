//! Amazon ECS: task and container metadata (endpoint v4), as the Lumigo
//! distributions report them.
//!
//! `ECS_CONTAINER_METADATA_URI_V4` is a plain `http://` URL on the link-local
//! agent (`http://169.254.170.2/v4/<id>`); the container's metadata is at the
//! URL itself and the task's at `${URL}/task`. [`fetch`] GETs both with a
//! tiny HTTP/1.0 client within one 1 s deadline. It runs on the export
//! thread only (its socket is ours, not traced). Parsing is separate and pure.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::span::AttrValue;

/// Deadline of the two metadata requests together.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Largest metadata response read (a task with many containers is ~10 KB).
const MAX_RESPONSE: u64 = 1 << 20;

/// The ECS resource attributes, or why there are none.
pub(super) fn fetch(uri: &str) -> Result<Vec<(&'static str, AttrValue)>, String> {
    // One deadline for both requests: the export thread waits at most 1 s.
    let deadline = Instant::now() + TIMEOUT;
    let container = http_get(uri, deadline)?;
    let task = http_get(&format!("{}/task", uri.trim_end_matches('/')), deadline)?;
    attributes(&container, &task)
}

/// `(host:port, path)` of an `http://` URL.
fn split_url(url: &str) -> Result<(String, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let has_port = match authority.rfind(':') {
        Some(at) => !authority[at..].contains(']'),
        None => false,
    };
    let address = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((address, path))
}

/// `GET url` over HTTP/1.0; the body of a 200 answer.
fn http_get(url: &str, deadline: Instant) -> Result<String, String> {
    let (address, path) = split_url(url)?;
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h);
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?;
    let mut last_error = format!("{address}: no address");
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let left = || {
        Some(deadline.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{url}: timed out"))
    };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut response = Vec::new();
    let mut limited = (&mut stream).take(MAX_RESPONSE);
    let mut chunk = [0u8; 8192];
    loop {
        stream_timeout(limited.get_ref(), left()?)?;
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    parse_response(&response).map_err(|e| format!("{url}: {e}"))
}

fn stream_timeout(stream: &TcpStream, left: Duration) -> Result<(), String> {
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())
}

/// The body of an HTTP/1.x `200` response (chunked bodies decoded).
fn parse_response(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no HTTP status line")?;
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok(body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size_line, after) = rest.split_once("\r\n").ok_or("truncated chunked body")?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = after.get(..size).ok_or("truncated chunk")?;
        out.push_str(data);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// The attributes from the container (`${URI}`) and task (`${URI}/task`)
/// metadata documents.
pub(super) fn attributes(
    container: &str,
    task: &str,
) -> Result<Vec<(&'static str, AttrValue)>, String> {
    let container: Value =
        serde_json::from_str(container).map_err(|e| format!("container metadata: {e}"))?;
    let task: Value = serde_json::from_str(task).map_err(|e| format!("task metadata: {e}"))?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut out: Vec<(&'static str, AttrValue)> = vec![
        ("cloud.provider", AttrValue::from("aws")),
        ("cloud.platform", AttrValue::from("aws_ecs")),
    ];
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push((key, AttrValue::from(v)));
        }
    };
    let task_arn = text(&task, "TaskARN");
    put("container.name", text(&container, "Name"));
    put("container.id", text(&container, "DockerId"));
    put("aws.ecs.container.arn", text(&container, "ContainerARN"));
    put(
        "aws.ecs.cluster.arn",
        text(&task, "Cluster").map(|c| cluster_arn(&c, task_arn.as_deref())),
    );
    put(
        "aws.ecs.launchtype",
        text(&task, "LaunchType").map(|l| l.to_ascii_lowercase()),
    );
    put("aws.ecs.task.arn", task_arn.clone());
    put("aws.ecs.task.family", text(&task, "Family"));
    put("aws.ecs.task.revision", text(&task, "Revision"));
    // arn:aws:ecs:<region>:<account>:task/...
    let arn_parts: Vec<&str> = task_arn.as_deref().unwrap_or("").split(':').collect();
    if arn_parts.len() >= 6 {
        put("cloud.region", Some(arn_parts[3].to_owned()));
        put("cloud.account.id", Some(arn_parts[4].to_owned()));
    }
    put("cloud.availability_zone", text(&task, "AvailabilityZone"));
    Ok(out)
}

/// `Cluster` is an ARN on Fargate and a bare name on some EC2 agents; a
/// bare name becomes an ARN in the task's region and account.
fn cluster_arn(cluster: &str, task_arn: Option<&str>) -> String {
    if cluster.starts_with("arn:") {
        return cluster.to_owned();
    }
    match task_arn.and_then(|arn| arn.rsplit_once(":task/")) {
        Some((prefix, _)) => format!("{prefix}:cluster/{cluster}"),
        None => cluster.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The container metadata example of the ECS task metadata endpoint v4
    /// documentation (EC2 launch type).
    pub(crate) const CONTAINER_JSON: &str = r#"{
        "DockerId": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
        "Name": "curl",
        "DockerName": "ecs-curltest-24-curl-cca48e8dcadd97805600",
        "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
        "ImageID": "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553",
        "Labels": {
            "com.amazonaws.ecs.cluster": "default",
            "com.amazonaws.ecs.container-name": "curl",
            "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-west-2:111122223333:task/default/8f03e41243824aea923aca126495f665",
            "com.amazonaws.ecs.task-definition-family": "curltest",
            "com.amazonaws.ecs.task-definition-version": "24"
        },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 10, "Memory": 128},
        "CreatedAt": "2020-10-02T00:15:07.620912337Z",
        "StartedAt": "2020-10-02T00:15:08.062559351Z",
        "Type": "NORMAL",
        "LogDriver": "awslogs",
        "LogOptions": {"awslogs-create-group": "true", "awslogs-group": "/ecs/metadata", "awslogs-region": "us-west-2", "awslogs-stream": "ecs/curl/8f03e41243824aea923aca126495f665"},
        "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9",
        "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.100"], "AttachmentIndex": 0, "MACAddress": "0e:9e:32:c7:48:85", "IPv4SubnetCIDRBlock": "10.0.2.0/24", "PrivateDNSName": "ip-10-0-2-100.us-west-2.compute.internal", "SubnetGatewayIpv4Address": "10.0.2.1/24"}]
    }"#;

    /// The task metadata example of the same documentation.
    pub(crate) const TASK_JSON: &str = r#"{
        "Cluster": "default",
        "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c",
        "Family": "curltest",
        "ServiceName": "MyService",
        "Revision": "26",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
        "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
        "AvailabilityZone": "us-west-2d",
        "VPCID": "vpc-1234567890abcdef0",
        "LaunchType": "EC2",
        "Containers": [],
        "ClockDrift": {"ClockErrorBound": 0.446931, "ReferenceTimestamp": "2020-10-02T00:43:06Z", "ClockSynchronizationStatus": "SYNCHRONIZED"},
        "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496}
    }"#;

    fn get<'a>(attrs: &'a [(&str, AttrValue)], key: &str) -> Option<&'a AttrValue> {
        attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    #[test]
    fn attributes_from_the_documented_examples() {
        let attrs = attributes(CONTAINER_JSON, TASK_JSON).unwrap();
        let want = [
            ("cloud.provider", "aws"),
            ("cloud.platform", "aws_ecs"),
            ("container.name", "curl"),
            (
                "container.id",
                "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
            ),
            (
                "aws.ecs.container.arn",
                "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9",
            ),
            (
                "aws.ecs.cluster.arn",
                "arn:aws:ecs:us-west-2:111122223333:cluster/default",
            ),
            ("aws.ecs.launchtype", "ec2"),
            (
                "aws.ecs.task.arn",
                "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c",
            ),
            ("aws.ecs.task.family", "curltest"),
            ("aws.ecs.task.revision", "26"),
            ("cloud.region", "us-west-2"),
            ("cloud.account.id", "111122223333"),
            ("cloud.availability_zone", "us-west-2d"),
        ];
        for (key, value) in want {
            assert_eq!(get(&attrs, key), Some(&AttrValue::from(value)), "{key}");
        }
        assert_eq!(attrs.len(), want.len());
    }

    #[test]
    fn fargate_cluster_arn_is_kept() {
        let task = r#"{"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/prod/abc",
            "Family": "web", "Revision": "3", "LaunchType": "FARGATE"}"#;
        let attrs = attributes("{}", task).unwrap();
        assert_eq!(
            get(&attrs, "aws.ecs.cluster.arn"),
            Some(&AttrValue::from(
                "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
            ))
        );
        assert_eq!(
            get(&attrs, "aws.ecs.launchtype"),
            Some(&AttrValue::from("fargate"))
        );
        assert_eq!(get(&attrs, "container.id"), None);
    }

    #[test]
    fn broken_metadata_is_an_error() {
        assert!(attributes("not json", TASK_JSON).is_err());
        assert!(attributes(CONTAINER_JSON, "").is_err());
    }

    #[test]
    fn urls_and_responses() {
        assert_eq!(
            split_url("http://169.254.170.2/v4/abc").unwrap(),
            ("169.254.170.2:80".to_owned(), "/v4/abc")
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".to_owned(), "/")
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http:///x").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}")
                .unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n"
            )
            .unwrap(),
            "{\"a\":1}"
        );
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn unreachable_endpoint_fails_within_the_deadline() {
        // A port nobody listens on: refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let start = Instant::now();
        assert!(fetch(&format!("http://127.0.0.1:{port}/v4/x")).is_err());
        // A server that accepts and never answers: the 1 s deadline.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v4/x", silent.local_addr().unwrap());
        assert!(fetch(&url).is_err());
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "the deadline was waited: {took:?}"
        );
    }
}
