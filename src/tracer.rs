//! The tracer: span identities and where finished spans go.
//!
//! Every connection of a process shares one [`Tracer`]: it decides the
//! identity of each span (a new trace, a child of the request the thread
//! serves, of an inbound `traceparent`, of the environment's `TRACEPARENT`
//! or of the process span) and hands finished spans to the [`SpanSink`].

use crate::context;
use crate::filter::EndpointFilters;
use crate::http::{self, HttpExchange, Role};
use crate::mask::Masker;
use crate::propagation::{parse_traceparent, sanitize_tracestate, Traceparent};
use crate::propagators::{parse_b3, InboundCarriers, Propagators};
use crate::protocol::Operation;
use crate::sampling::Sampler;
use crate::span::{AttrValue, Attributes, SpanContext, SpanRecord, ATTRIBUTES_CAPACITY};

/// Where finished spans go. The export pipeline implements it; tests collect.
pub trait SpanSink: Send + Sync {
    fn submit(&self, span: SpanRecord);

    /// An empty attribute vector for a new span: one of an exported span's
    /// when the sink keeps them, else a new one.
    fn attributes(&self) -> Attributes {
        Vec::with_capacity(ATTRIBUTES_CAPACITY)
    }
}

impl SpanSink for crate::export::Pipeline {
    fn submit(&self, span: SpanRecord) {
        crate::export::Pipeline::submit(self, span)
    }

    fn attributes(&self) -> Attributes {
        crate::export::Pipeline::attributes(self)
    }
}

impl<T: SpanSink + ?Sized> SpanSink for std::sync::Arc<T> {
    fn submit(&self, span: SpanRecord) {
        (**self).submit(span)
    }

    fn attributes(&self) -> Attributes {
        (**self).attributes()
    }
}

/// What every connection of a process shares: masking rules, the sink and
/// the process's root context.
pub struct Tracer {
    masker: Masker,
    sink: Box<dyn SpanSink>,
    /// Parent of spans that have no other: `TRACEPARENT` from the environment.
    root: Option<(Traceparent, Option<String>)>,
    /// The process span, when there is one: parent of every root span.
    process: Option<SpanContext>,
    /// Any propagator is on: outbound request heads are planned.
    pub(crate) inject: bool,
    /// Which formats are read and inserted.
    pub(crate) propagators: Propagators,
    /// Decides, per new span, whether it is sampled.
    sampler: Sampler,
    /// Endpoints whose exchanges yield no span.
    filters: EndpointFilters,
}

/// The identity of a span and of its parent, decided when the span starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Assigned {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub parent_is_remote: bool,
}

impl Tracer {
    pub fn new(masker: Masker, sink: Box<dyn SpanSink>) -> Tracer {
        Tracer {
            masker,
            sink,
            root: None,
            process: None,
            inject: true,
            propagators: Propagators::default(),
            sampler: Sampler::default(),
            filters: EndpointFilters::default(),
        }
    }

    /// Sets the endpoint filters.
    pub fn with_filters(mut self, filters: EndpointFilters) -> Tracer {
        self.filters = filters;
        self
    }

    /// Whether a SERVER request for `target` matches a filter: its span,
    /// and every span made while serving it, are not exported.
    pub(crate) fn server_filtered(&self, target: &str) -> bool {
        self.filters
            .server_filtered(crate::http::span::target_path(target))
    }

    /// Sets the sampler deciding which new spans are sampled.
    pub fn with_sampler(mut self, sampler: Sampler) -> Tracer {
        self.sampler = sampler;
        self
    }

    /// Starts a process span (a child of the environment's context, if
    /// any) under which every root span of this process will go. Returns
    /// its identity, for the span reported at exit.
    pub fn start_process_span(&mut self) -> Assigned {
        let who = self.root_span();
        self.process = Some(who.context.clone());
        who
    }

    /// Adopts a process span started by the parent process (after fork).
    pub fn adopt_process_span(&mut self, ctx: Option<SpanContext>) {
        self.process = ctx;
    }

    /// The process span's context, if there is one.
    pub fn process_context(&self) -> Option<&SpanContext> {
        self.process.as_ref()
    }

    /// Turns W3C propagation on or off: with it off, no `traceparent` is
    /// read from requests or inserted into them.
    pub fn with_propagation(self, on: bool) -> Tracer {
        self.with_propagators(if on {
            Propagators::default()
        } else {
            Propagators::NONE
        })
    }

    /// Sets which formats (`OTEL_PROPAGATORS`) are read and inserted.
    pub fn with_propagators(mut self, p: Propagators) -> Tracer {
        self.propagators = p;
        self.inject = p.any();
        self
    }

    /// Makes root spans children of `parent` (the environment carrier).
    pub fn with_root(mut self, parent: Option<Traceparent>, tracestate: Option<String>) -> Tracer {
        self.root = parent.map(|p| (p, tracestate));
        self
    }

    pub fn sink(&self) -> &dyn SpanSink {
        &*self.sink
    }

    /// A new span under a remote parent.
    fn child_of_remote(&self, tp: &Traceparent, tracestate: Option<String>) -> Assigned {
        self.child_of_remote_ids(tp.trace_id, tp.span_id, Some(tp.is_sampled()), tracestate)
    }

    /// A new span under the remote span `span_id` of trace `trace_id`, which
    /// was sampled or not (`None`: it left the decision to us).
    fn child_of_remote_ids(
        &self,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        sampled: Option<bool>,
        tracestate: Option<String>,
    ) -> Assigned {
        Assigned {
            context: SpanContext {
                trace_id,
                span_id: crate::ids::span_id(),
                trace_flags: self.sampler.flags(&trace_id, sampled),
                trace_state: tracestate,
            },
            parent: Some(span_id),
            parent_is_remote: true,
        }
    }

    /// A new span under a parent of this process.
    fn child_of_local(&self, parent: &SpanContext) -> Assigned {
        Assigned {
            context: SpanContext {
                trace_id: parent.trace_id,
                span_id: crate::ids::span_id(),
                trace_flags: self
                    .sampler
                    .flags(&parent.trace_id, Some(parent.is_sampled())),
                trace_state: parent.trace_state.clone(),
            },
            parent: Some(parent.span_id),
            parent_is_remote: false,
        }
    }

    /// A span with no parent of its own: under the process span or the
    /// environment's context, if any.
    pub fn root_span(&self) -> Assigned {
        if let Some(p) = &self.process {
            return self.child_of_local(p);
        }
        match &self.root {
            Some((tp, state)) => self.child_of_remote(tp, state.clone()),
            None => {
                let trace_id = crate::ids::trace_id();
                Assigned {
                    context: SpanContext {
                        trace_id,
                        span_id: crate::ids::span_id(),
                        trace_flags: self.sampler.flags(&trace_id, None),
                        trace_state: None,
                    },
                    parent: None,
                    parent_is_remote: false,
                }
            }
        }
    }

    /// The identity of a CLIENT span that is not an HTTP request (a name
    /// lookup): child of the request the thread serves, else a root span.
    pub fn client_identity(&self) -> Assigned {
        self.client_span(None, None)
    }

    /// A SERVER span continues the trace its request names, if valid:
    /// `traceparent` first, then B3, as far as `OTEL_PROPAGATORS` says.
    pub(crate) fn server_span(
        &self,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        carriers: Option<&InboundCarriers>,
    ) -> Assigned {
        let traceparent = traceparent.filter(|_| self.propagators.tracecontext);
        if let Some(tp) = traceparent.and_then(parse_traceparent) {
            return self.child_of_remote(&tp, tracestate.and_then(sanitize_tracestate));
        }
        let b3 = carriers
            .filter(|_| self.propagators.reads_b3())
            .and_then(|c| parse_b3(&c.b3));
        match b3 {
            Some(p) => self.child_of_remote_ids(p.trace_id, p.span_id, p.sampled, None),
            None => self.root_span(),
        }
    }

    /// A CLIENT span: child of the app's own `traceparent` if it sent one,
    /// else of the request the thread is serving, else a root span.
    pub(crate) fn client_span(
        &self,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> Assigned {
        if let Some(tp) = traceparent.and_then(parse_traceparent) {
            let mut a = self.child_of_remote(&tp, tracestate.and_then(sanitize_tracestate));
            // The app's instrumentation made that span in this process.
            a.parent_is_remote = false;
            return a;
        }
        match context::active() {
            Some(parent) => {
                let mut a = self.child_of_local(&parent);
                if context::active_filtered() {
                    a.context.trace_flags &= !1;
                }
                a
            }
            None => self.root_span(),
        }
    }

    /// Turns a finished HTTP exchange into a span and submits it (unless
    /// its trace is not sampled).
    pub(crate) fn emit_http(
        &self,
        ex: &HttpExchange,
        role: Role,
        ends: &http::Endpoints,
        who: Assigned,
    ) {
        if !who.context.is_sampled() {
            return;
        }
        let mut parts = http::span_parts(ex, role, ends, &self.masker, self.sink.attributes());
        match (role, ex.carriers.as_deref()) {
            (Role::Server, Some(c)) => push_tags(&mut parts.attributes, &c.tags),
            (Role::Client, _) => push_parent_tags(&mut parts.attributes, &who),
            _ => {}
        }
        if role == Role::Client {
            let url = parts.attributes.iter().find(|(k, _)| *k == "url.full");
            if let Some((_, AttrValue::Str(url))) = url {
                if self.filters.client_filtered(url) {
                    return;
                }
            }
        }
        self.sink.submit(SpanRecord {
            name: parts.name,
            kind: parts.kind,
            context: who.context,
            parent_span_id: who.parent,
            parent_is_remote: who.parent_is_remote,
            start: ex.start,
            end: ex.end,
            status: parts.status,
            attributes: parts.attributes,
        });
    }
}

impl Tracer {
    /// Reports a finished non-HTTP operation (a database command, a
    /// message), with the connection's network attributes: as `who`, or
    /// else as a child of the request the thread serves.
    pub(crate) fn emit_operation(
        &self,
        op: Operation,
        ends: &http::Endpoints,
        who: Option<Assigned>,
    ) {
        let who = who.unwrap_or_else(|| self.client_identity());
        if !who.context.is_sampled() {
            return;
        }
        let mut attributes = op.attributes;
        // Over a Unix socket, its name is the server's address; no port.
        if let Some((peer, text)) = ends.peer.as_ref().zip(ends.peer_address()) {
            attributes.push(("server.address", AttrValue::shared(text)));
            if let Some(port) = peer.port() {
                attributes.push(("server.port", AttrValue::Int(i64::from(port))));
            }
            attributes.push(("network.peer.address", AttrValue::shared(text)));
            if let Some(port) = peer.port() {
                attributes.push(("network.peer.port", AttrValue::Int(i64::from(port))));
            }
        }
        if ends.is_unix() {
            attributes.push(("network.transport", AttrValue::from_static("unix")));
        }
        push_parent_tags(&mut attributes, &who);
        self.sink.submit(SpanRecord {
            name: op.name.into(),
            kind: op.kind,
            context: who.context,
            parent_span_id: who.parent,
            parent_is_remote: who.parent_is_remote,
            start: op.start,
            end: op.end,
            status: op.status,
            attributes,
        });
    }
}

/// Execution tags as span attributes.
fn push_tags(attributes: &mut Attributes, tags: &[(u8, String)]) {
    for (i, v) in tags {
        if let Some(key) = crate::tags::key(*i) {
            attributes.push((key, AttrValue::from(v.as_str())));
        }
    }
}

/// The execution tags of the request the thread serves, on a span made
/// while serving it (a child of its SERVER span).
fn push_parent_tags(attributes: &mut Attributes, who: &Assigned) {
    if let Some(parent) = who.parent.filter(|_| !who.parent_is_remote) {
        let tags = context::tags_of(parent);
        if !tags.is_empty() {
            push_tags(attributes, &tags);
        }
    }
}
