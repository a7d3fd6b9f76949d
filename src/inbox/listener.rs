//! The inbox's accept loop, so that slow or idle clients cannot stop the service: a client
//! must send its request head within `inbox.header_timeout_secs` (counted from the
//! connection or from the previous answer, so idle keep-alive connections are closed too)
//! and its body within `inbox.body_timeout_secs`, and at most `inbox.max_connections`
//! connections are served at once (the rest wait in the kernel's backlog instead of
//! exhausting file descriptors the store and deliveries need). `axum::serve` has none of
//! these. HTTP/1.1 only: fediverse servers and reverse proxies speak it to an inbox.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::InboxConfig;

/// How long connections still open at shutdown may take to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept free of connections: the store, outbound fetches and deliveries.
const RESERVED_FDS: u64 = 256;

/// The connection limits of [`serve_connections`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_config(inbox: &InboxConfig) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(inbox.header_timeout_secs.max(1)),
            max_connections: inbox.max_connections.max(1),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// (for at most [`SHUTDOWN_GRACE`]). Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = connection_cap(limits.max_connections);
    let slots = Arc::new(Semaphore::new(max));
    let (closing, closed) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection failures (reset before accept) cost nothing; anything
                    // else (out of descriptors) gets a pause rather than a busy loop.
                    if !is_connection_error(&e) {
                        tracing::warn!("inbox: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let mut close = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = async { close.wait_for(|closing| *closing).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("inbox: connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("inbox: connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// `wanted`, lowered to what the process may open. The soft open-file limit is raised to
/// the hard one first (as Go's runtime does): service managers often start us at 1024.
fn connection_cap(wanted: usize) -> usize {
    let Some(fds) = raise_open_file_limit() else {
        return wanted;
    };
    let room = usize::try_from(fds.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            "inbox: serving at most {room} connections, not inbox.max_connections = {wanted}: \
             the open-file limit is {fds}"
        );
    }
    wanted.min(room)
}

#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            ..limit
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit.current
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Middleware reading a request's whole body within `timeout` (and `max_bytes`) before the
/// handler runs: a client trickling its body cannot hold a handler forever.
pub async fn read_body_within(
    timeout: Duration,
    max_bytes: usize,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_bytes)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {max_bytes} bytes"),
                )
                    .into_response()
            } else {
                (StatusCode::BAD_REQUEST, "the body could not be read").into_response()
            }
        }
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )
            .into_response(),
    }
}
