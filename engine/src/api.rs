//! The operator endpoints on every shard: `/healthz`, `/readyz`, `/metrics`, `/admin/shards`.
//!
//! `/metrics` and `/admin/shards` gather every shard's snapshot with `map_reduce`, so any shard
//! answers for the whole node without shared counters.

use crate::ctx::{ConnRef, ShardCtx};
use crate::http::{Request, Response};
use crate::metrics::{ShardSnapshot, render_prometheus};
use crate::shard::{HttpHandler, Routed};

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Routes the operator endpoints.
#[derive(Clone, Debug, Default)]
pub struct OpsApi;

fn gather(
    ctx: &mut ShardCtx,
    conn: ConnRef,
    render: impl FnOnce(Vec<ShardSnapshot>) -> Response + Send + 'static,
) -> Routed {
    let started = ctx.map_reduce(
        |c: &mut ShardCtx| c.snapshot(),
        Vec::new(),
        |mut acc: Vec<ShardSnapshot>, s| {
            acc.push(s);
            acc
        },
        move |c, mut all| {
            all.sort_by_key(|s| s.shard);
            c.http_replies.push((conn, render(all)));
        },
    );
    if started {
        Routed::Later
    } else {
        Routed::Now(Response::text(503, "busy\n"))
    }
}

impl HttpHandler for OpsApi {
    fn handle(&mut self, ctx: &mut ShardCtx, conn: ConnRef, req: &Request) -> Routed {
        if req.method != "GET" && req.method != "HEAD" {
            return Routed::Now(Response::text(405, "method not allowed\n"));
        }
        match req.path.as_str() {
            "/healthz" => Routed::Now(Response::text(200, "ok\n")),
            "/readyz" => Routed::Now(if ctx.draining {
                Response::text(503, "draining\n")
            } else {
                Response::text(200, "ready\n")
            }),
            "/metrics" => gather(ctx, conn, |all| {
                let mut out = String::with_capacity(4096);
                render_prometheus(&all, &mut out);
                Response::new(200, PROMETHEUS_CONTENT_TYPE, out)
            }),
            "/admin/shards" => gather(ctx, conn, |all| {
                let body = serde_json::json!({
                    "shards": all.iter().map(|s| serde_json::json!({
                        "shard": s.shard,
                        "core": s.core,
                        "connections": s.stats.connections_open,
                        "mailbox_depth": s.mailbox_depth,
                        "stats": s.stats,
                        "loop_iterations": s.driver.loop_iterations,
                        "submissions": s.driver.submissions,
                        "completions": s.driver.completions,
                        "bytes_in": s.driver.bytes_in,
                        "bytes_out": s.driver.bytes_out,
                    })).collect::<Vec<_>>(),
                });
                Response::json(200, body.to_string())
            }),
            _ => Routed::Now(Response::text(404, "not found\n")),
        }
    }
}
