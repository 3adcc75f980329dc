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
use crate::payload::PayloadRules;
use crate::propagation::{parse_traceparent, sanitize_tracestate, Traceparent};
use crate::propagators::{parse_b3, InboundCarriers, Propagators};
use crate::protocol::Operation;
use crate::sampling::Sampler;
use crate::span::{AttrValue, Attributes, SpanContext, SpanLink, SpanRecord, ATTRIBUTES_CAPACITY};

/// Where finished spans go. The export pipeline implements it; tests collect.
pub trait SpanSink: Send + Sync {
    fn submit(&self, span: SpanRecord);

    /// An empty attribute vector for a new span: one of an exported span's
    /// when the sink keeps them, else a new one.
    fn attributes(&self) -> Attributes {
        Vec::with_capacity(ATTRIBUTES_CAPACITY)
    }

    /// How HTTP payloads are captured and masked for spans going here
    /// (asked once, by [`Tracer::new`]): the configuration's rules for the
    /// export pipeline; Lumigo's defaults unless a sink says otherwise.
    fn payload_rules(&self) -> PayloadRules {
        PayloadRules::default()
    }
}

impl SpanSink for crate::export::Pipeline {
    fn submit(&self, span: SpanRecord) {
        crate::export::Pipeline::submit(self, span)
    }

    fn attributes(&self) -> Attributes {
        crate::export::Pipeline::attributes(self)
    }

    fn payload_rules(&self) -> PayloadRules {
        PayloadRules::from_config(self.config())
    }
}

impl<T: SpanSink + ?Sized> SpanSink for std::sync::Arc<T> {
    fn submit(&self, span: SpanRecord) {
        (**self).submit(span)
    }

    fn attributes(&self) -> Attributes {
        (**self).attributes()
    }

    fn payload_rules(&self) -> PayloadRules {
        (**self).payload_rules()
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
    /// HTTP headers and bodies on spans: how much is kept, how it is masked.
    payload: PayloadRules,
}

/// The identity of a span and of its parent, decided when the span starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Assigned {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub parent_is_remote: bool,
    /// More than one: a CLIENT span left a root because this many requests
    /// were in flight on the thread and no hint named one ([`crate::hint`]).
    pub candidates: usize,
}

impl Tracer {
    pub fn new(masker: Masker, sink: Box<dyn SpanSink>) -> Tracer {
        Tracer {
            masker,
            payload: sink.payload_rules(),
            sink,
            root: None,
            process: None,
            inject: true,
            propagators: Propagators::default(),
            sampler: Sampler::default(),
            filters: EndpointFilters::default(),
        }
    }

    /// Sets how HTTP payloads are captured and masked.
    pub fn with_payload(mut self, payload: PayloadRules) -> Tracer {
        self.payload = payload;
        self
    }

    /// Most body bytes an HTTP connection keeps per message for payload
    /// attributes (0: payloads are not captured).
    pub fn payload_limit(&self) -> usize {
        self.payload.body_limit()
    }

    /// Sets the endpoint filters.
    pub fn with_filters(mut self, filters: EndpointFilters) -> Tracer {
        self.filters = filters;
        self
    }

    /// Whether a SERVER request for `target` matches a filter: its span,
    /// and every span made while serving it, are not exported.
    pub(crate) fn server_filtered(&self, target: &str) -> bool {
        self.filters.filters_servers()
            && self
                .filters
                .server_filtered(crate::http::span::target_path(target))
    }

    /// [`Tracer::server_filtered`] for a target not yet read as text: the
    /// bytes are checked only when a server filter is configured.
    pub(crate) fn server_filtered_bytes<'a>(&self, target: impl FnOnce() -> &'a [u8]) -> bool {
        self.filters.filters_servers()
            && self.server_filtered(std::str::from_utf8(target()).unwrap_or(""))
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
            candidates: 0,
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
            candidates: 0,
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
                    candidates: 0,
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
    /// else of the request the runtime named ([`crate::hint`]), else of the
    /// request the thread is serving, else a root span. A root too, saying
    /// how many requests were in flight, when the thread serves several and
    /// no hint names one.
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
        let active = context::active();
        let (parent, filtered) = match crate::hint::choose(active.as_ref()) {
            crate::hint::Choice::Hinted(ctx, filtered) => (Some(ctx), filtered),
            crate::hint::Choice::Active => (active, context::active_filtered()),
            crate::hint::Choice::Inferred(n) => {
                // Measured on Node.js and asyncio servers (BENCHMARKS.md):
                // the most recent request is the right parent for 0.5% to
                // 23% of such calls; under another user's request a span
                // misleads, so it goes as a root that says why.
                let mut a = self.root_span();
                a.candidates = n;
                return a;
            }
        };
        match parent {
            Some(parent) => {
                let mut a = self.child_of_local(&parent);
                if filtered {
                    a.context.trace_flags &= !1;
                }
                a
            }
            None => self.root_span(),
        }
    }

    /// A CLIENT span for a request that forwards the very `traceparent` the
    /// thread's active request arrived with (a proxy): that request is its
    /// parent, however many are in flight, since the value names it. A hint
    /// for the same head is used up.
    pub(crate) fn forwarding_span(&self) -> Assigned {
        let active = context::active();
        let _ = crate::hint::choose(active.as_ref());
        match active {
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
        parent_tags: Option<&[(u8, String)]>,
    ) {
        if !who.context.is_sampled() {
            return;
        }
        let mut parts = http::span_parts(ex, role, ends, &self.masker, self.sink.attributes());
        self.payload
            .push_attributes(ex, role, &mut parts.attributes);
        match (role, ex.carriers.as_deref(), parent_tags) {
            (Role::Server, Some(c), _) => push_tags(&mut parts.attributes, &c.tags, &self.payload),
            (Role::Client, _, Some(tags)) => {
                push_candidates(&mut parts.attributes, &who);
                push_tags(&mut parts.attributes, tags, &self.payload)
            }
            (Role::Client, _, None) => push_parent_tags(&mut parts.attributes, &who, &self.payload),
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
            links: Vec::new(),
            encoded: parts.encoded,
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
        links: Vec<SpanLink>,
        parent_tags: Option<&[(u8, String)]>,
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
        match parent_tags {
            // Given with the identity (replayed on the capture thread).
            Some(tags) => {
                push_candidates(&mut attributes, &who);
                push_tags(&mut attributes, tags, &self.payload);
            }
            None => push_parent_tags(&mut attributes, &who, &self.payload),
        }
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
            links,
            // Operations are built on the app's thread (their protocols
            // are parsed there): no encoding is moved onto it.
            encoded: None,
        });
    }
}

/// How many requests were in flight on the thread when `who` was made a
/// root for want of a hint (`lumigo.parent.candidates`).
fn push_candidates(attributes: &mut Attributes, who: &Assigned) {
    if who.candidates > 1 {
        let n = i64::try_from(who.candidates).unwrap_or(i64::MAX);
        attributes.push(("lumigo.parent.candidates", AttrValue::Int(n)));
    }
}

/// Whether the `baggage` of the request the thread serves (the most recent
/// one) may go out with a CLIENT span `who`: not when a hint made `who` the
/// child of another request in flight, nor for a root left so among several.
pub fn baggage_goes_with(who: &Assigned) -> bool {
    if who.candidates > 1 {
        return false;
    }
    match (who.parent, context::active()) {
        (Some(p), Some(active)) if p != active.span_id => !crate::hint::is_in_flight(p),
        _ => true,
    }
}

/// Execution tags as span attributes; the value of a header whose name is
/// secret (request header rules) is masked, as in `http.request.headers`.
fn push_tags(attributes: &mut Attributes, tags: &[(u8, String)], rules: &PayloadRules) {
    for (i, v) in tags {
        if let Some(key) = crate::tags::key(*i) {
            let name = key.strip_prefix(crate::tags::KEY_PREFIX).unwrap_or(key);
            let value = if rules.is_secret_request_header(name) {
                AttrValue::from_static(crate::mask::MASK)
            } else {
                AttrValue::from(v.as_str())
            };
            attributes.push((key, value));
        }
    }
}

/// The execution tags of the request the thread serves, on a span made
/// while serving it (a child of its SERVER span).
fn push_parent_tags(attributes: &mut Attributes, who: &Assigned, rules: &PayloadRules) {
    push_candidates(attributes, who);
    if let Some(parent) = who.parent.filter(|_| !who.parent_is_remote) {
        let tags = context::tags_of(parent);
        if !tags.is_empty() {
            push_tags(attributes, &tags, rules);
        }
    }
}
