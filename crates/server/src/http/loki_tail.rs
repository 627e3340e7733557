//! `GET /loki/api/v1/tail`: Loki's live tail over a websocket, as
//! Grafana's Loki data source opens it for live streaming. The client
//! first gets up to `limit` entries since `start` (the newest ones, sent
//! oldest first), then every matching entry as it is pushed, run through
//! the query's pipeline. Bad parameters get a 400 before the upgrade;
//! errors after it close the socket with code 1011 and the reason, as Loki
//! does.

// Handlers return ready error responses, as in loki.rs.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use miru_logql::syntax::ast::Expr;
use miru_logql::{
    Direction, Engine, EngineOptions, LogLine, LogQuery, MemorySource, QueryContext, Stream, Value,
};
use miru_model::{Labels, LogEntry, TenantId};
use serde_json::{Value as Json, json};

use super::loki::{
    bad, categorize_labels, loki_request, now_ns, parse_loki_time_ns, query_param, result_json,
};
use super::prom::labels_json;
use crate::app::App;
use crate::logql::{LogQlError, LogQlKind};

/// Entries per websocket message at most (as Loki).
const MAX_ENTRIES_PER_MESSAGE: usize = 100;
/// Entries a tail holds back for `delay_for` at most; more are dropped.
const MAX_PENDING: usize = 10_000;
/// Longest `delay_for` (seconds).
const MAX_DELAY_FOR_S: u64 = 5;
const NS_PER_S: i64 = 1_000_000_000;
/// Close code for a server-side error (RFC 6455 "internal error").
const CLOSE_INTERNAL: u16 = 1011;

struct TailParams {
    query: String,
    start_ns: i64,
    limit: usize,
    delay_ns: i64,
    categorize: bool,
}

/// `GET /loki/api/v1/tail?query=…[&start=…][&limit=100][&delay_for=0]`.
pub(super) async fn tail(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let req = match loki_request(&app, &Method::GET, &headers, q, Body::empty()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (params, matchers) = match tail_params(&req.params, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let tenant = req.tenant;
    ws.on_upgrade(move |socket| async move {
        let sub = app.tails.subscribe(
            &tenant,
            matchers,
            app.cfg.query.max_concurrent_tail_requests,
        );
        let mut socket = socket;
        match sub {
            Err(why) => close(&mut socket, &why).await,
            Ok(sub) => run_tail(&app, &tenant, &params, sub, socket).await,
        }
    })
}

fn tail_params(
    p: &super::params::Params,
    headers: &HeaderMap,
) -> Result<(TailParams, Vec<miru_model::Matcher>), Response> {
    let query = query_param(p)?;
    let matchers = match miru_logql::parse(&query) {
        Ok(Expr::Log(l)) => l.matchers,
        Ok(Expr::Metric(_)) => return Err(bad("tail requires a log query, not a metric query")),
        Err(e) => return Err(bad(e.to_string())),
    };
    let delay_s = match p.get("delay_for") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| {
            bad(format!(
                "invalid parameter \"delay_for\": {s:?} is not a number of seconds"
            ))
        })?,
    };
    if delay_s > MAX_DELAY_FOR_S {
        return Err(bad(format!(
            "delay_for can't be greater than {MAX_DELAY_FOR_S}"
        )));
    }
    let limit = match p.get("limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("limit must be a positive value"))?,
    };
    let start_ns = match p.get("start") {
        None => now_ns() - 3600 * NS_PER_S,
        Some(s) => {
            parse_loki_time_ns(s).map_err(|e| bad(format!("invalid parameter \"start\": {e}")))?
        }
    };
    Ok((
        TailParams {
            query,
            start_ns,
            limit,
            delay_ns: delay_s as i64 * NS_PER_S,
            categorize: categorize_labels(headers),
        },
        matchers,
    ))
}

async fn close(socket: &mut WebSocket, why: &str) {
    // A close reason is at most 123 bytes.
    let mut reason = why.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_INTERNAL,
            reason: reason.into(),
        })))
        .await;
}

async fn run_tail(
    app: &App,
    tenant: &TenantId,
    p: &TailParams,
    mut sub: crate::tail::TailSubscription,
    mut socket: WebSocket,
) {
    // Subscribed before the history is read, so nothing pushed meanwhile
    // is missed (it may come twice).
    let history = LogQuery {
        start_ns: p.start_ns,
        end_ns: now_ns().saturating_add(1),
        limit: p.limit,
        direction: Direction::Backward,
    };
    let got = app
        .logql
        .run(
            &app.query,
            &app.storage,
            tenant,
            &p.query,
            LogQlKind::Logs(history),
        )
        .await;
    match got {
        Ok((Value::Streams(streams), _)) => {
            if send(&mut socket, streams, Vec::new(), p.categorize)
                .await
                .is_err()
            {
                return;
            }
        }
        Ok(_) => {}
        Err(e) => {
            close(&mut socket, &error_text(e)).await;
            return;
        }
    }
    let engine = Engine::new(EngineOptions::default());
    let deadline = tokio::time::Instant::now() + app.cfg.query.tail_max_duration;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pending: Vec<(Labels, LogEntry)> = Vec::new();
    let mut dropped: Vec<(Labels, i64)> = Vec::new();
    loop {
        let mut flush_now = false;
        tokio::select! {
            got = sub.rx.recv() => match got {
                Some(batch) => {
                    for w in batch.iter() {
                        for e in &w.entries {
                            if pending.len() < MAX_PENDING {
                                pending.push((w.labels.clone(), e.clone()));
                            } else {
                                dropped.push((w.labels.clone(), e.timestamp_ns));
                            }
                        }
                    }
                    flush_now = p.delay_ns == 0;
                }
                None => return,
            },
            _ = tick.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
                flush_now = true;
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                close(&mut socket, "reached tail max duration limit").await;
                return;
            }
        }
        if !flush_now {
            continue;
        }
        dropped.extend(sub.take_dropped());
        let ready_before = now_ns() - p.delay_ns;
        let ready: Vec<(Labels, LogEntry)>;
        (ready, pending) = pending
            .into_iter()
            .partition(|(_, e)| p.delay_ns == 0 || e.timestamp_ns <= ready_before);
        if ready.is_empty() && dropped.is_empty() {
            continue;
        }
        let streams = match run_pipeline(&engine, &p.query, ready) {
            Ok(s) => s,
            Err(why) => {
                close(&mut socket, &why).await;
                return;
            }
        };
        if send(
            &mut socket,
            streams,
            std::mem::take(&mut dropped),
            p.categorize,
        )
        .await
        .is_err()
        {
            return;
        }
    }
}

/// The query's pipeline over freshly pushed entries (line filters,
/// parsers, formatting), oldest first.
fn run_pipeline(
    engine: &Engine,
    query: &str,
    entries: Vec<(Labels, LogEntry)>,
) -> Result<Vec<Stream>, String> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut src = MemorySource::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let n = entries.len();
    for (labels, e) in entries {
        lo = lo.min(e.timestamp_ns);
        hi = hi.max(e.timestamp_ns);
        src.push(&labels, e);
    }
    let q = LogQuery {
        start_ns: lo,
        end_ns: hi.saturating_add(1),
        limit: n,
        direction: Direction::Forward,
    };
    match engine.logs(&src, query, &q, &QueryContext::default()) {
        Ok(Value::Streams(s)) => Ok(s),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn error_text(e: LogQlError) -> String {
    match e {
        LogQlError::Query(e) => e.to_string(),
        LogQlError::Timeout(d) => format!("query timed out after {d:?} (query.timeout)"),
        LogQlError::Busy(why) => why,
    }
}

/// Sends entries oldest first in messages of at most
/// [`MAX_ENTRIES_PER_MESSAGE`], the dropped entries with the first.
async fn send(
    socket: &mut WebSocket,
    streams: Vec<Stream>,
    mut dropped: Vec<(Labels, i64)>,
    categorize: bool,
) -> Result<(), axum::Error> {
    // Oldest first over all streams (history comes newest first), with
    // consecutive entries of one stream sharing an element.
    let mut flat: Vec<(Labels, LogLine)> = Vec::new();
    for s in streams {
        let labels = s.labels;
        flat.extend(s.entries.into_iter().map(|e| (labels.clone(), e)));
    }
    flat.sort_by_key(|(_, e)| e.timestamp_ns);
    let mut chunks: Vec<Vec<Stream>> = Vec::new();
    for (i, (labels, e)) in flat.into_iter().enumerate() {
        if i % MAX_ENTRIES_PER_MESSAGE == 0 {
            chunks.push(Vec::new());
        }
        let chunk = chunks.last_mut().expect("BUG: a chunk was just pushed");
        match chunk.last_mut() {
            Some(last) if last.labels == labels => last.entries.push(e),
            _ => chunk.push(Stream {
                labels,
                entries: vec![e],
            }),
        }
    }
    if chunks.is_empty() && !dropped.is_empty() {
        chunks.push(Vec::new());
    }
    for chunk in chunks {
        let (_, result) = result_json(&Value::Streams(chunk), categorize);
        let mut msg = json!({ "streams": result });
        if !dropped.is_empty() {
            let d: Vec<Json> = dropped
                .drain(..)
                .map(|(l, t)| json!({"labels": labels_json(&l), "timestamp": t.to_string()}))
                .collect();
            msg["dropped_entries"] = Json::Array(d);
        }
        if categorize {
            msg["encodingFlags"] = json!(["categorize-labels"]);
        }
        socket.send(Message::Text(msg.to_string().into())).await?;
    }
    Ok(())
}
