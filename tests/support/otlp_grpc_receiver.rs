//! A real OTLP/gRPC receiver for integration tests: Python `grpcio`
//! serving the `opentelemetry-proto` package's `TraceService`
//! (tests/apps/otlp_grpc_receiver.py: scripted answers, TLS, client
//! certificates, partial success). Each call it answered is read back as a
//! [`Call`], its request decoded with the opentelemetry-proto crate.
//!
//! Include it with `#[path = "support/otlp_grpc_receiver.rs"] mod
//! otlp_grpc_receiver;` beside `otlp_receiver` and `support`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::otlp_receiver::{flatten, ReceivedSpan};
use crate::support::{free_port, python_has, Server, TempDir};

const T: Duration = Duration::from_secs(30);

/// The receiver's Python modules are installed by scripts/install-deps.sh.
pub fn have_grpc() -> bool {
    python_has("grpc")
        && python_has("opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")
}

/// One `Export` call the receiver answered.
pub struct Call {
    pub answer: String,
    pub metadata: BTreeMap<String, String>,
    pub spans: Vec<ReceivedSpan>,
    /// When it was answered, in seconds since the epoch.
    pub at: f64,
    /// What the call's `grpc-timeout` left when it arrived, in seconds.
    pub time_remaining: Option<f64>,
}

pub struct GrpcReceiver {
    pub port: u16,
    out: PathBuf,
    _server: Server,
}

impl GrpcReceiver {
    /// Starts the receiver on a free port with these arguments (see the
    /// script); its calls are kept in `tmp`, under `name`.
    pub fn start(tmp: &TempDir, name: &str, args: &[&str]) -> GrpcReceiver {
        let port = free_port();
        let out = tmp.path(&format!("{name}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/otlp_grpc_receiver.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(port.to_string()).arg(&out).args(args);
        GrpcReceiver {
            port,
            out,
            _server: Server::spawn(cmd, port),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let metadata: BTreeMap<String, String> = v["metadata"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect();
                let hex = v["request"].as_str().unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decode");
                Call {
                    answer: v["answer"].as_str().unwrap().to_owned(),
                    spans: flatten(&request, &metadata),
                    metadata,
                    at: v["time"].as_f64().unwrap(),
                    time_remaining: v["time_remaining"].as_f64(),
                }
            })
            .collect()
    }

    /// The calls so far, once there are `n` (or after 30 s).
    pub fn wait_calls(&self, n: usize) -> Vec<Call> {
        let start = Instant::now();
        loop {
            let calls = self.calls();
            if calls.len() >= n || start.elapsed() > T {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
