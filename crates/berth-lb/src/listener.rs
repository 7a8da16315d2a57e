//! A listener's socket: the accept loop, TLS, serving a connection with
//! HTTP/1.1 or HTTP/2, the client idle timeout, and graceful stops.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::proxy::{self, ConnCtx};
use crate::snapshot::ListenerTable;
use crate::Routing;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopped listener lets its connections finish their requests.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(30);

/// Counts bytes moved, so an idle connection can be told from a busy one.
struct IdleIo<T> {
    inner: T,
    activity: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends: closed by the client, idle for the
/// listener's idle timeout, or stopped (in-flight requests finish first).
async fn serve<I>(
    io: I,
    table: Arc<ListenerTable>,
    ctx: Arc<ConnCtx>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(IdleIo {
        inner: io,
        activity: activity.clone(),
    });
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(proxy::handle(&ctx, req).await) }
    });
    let conn = table.builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // The idle check runs every quarter of the timeout: a connection is
    // closed between 1 and 1.25 idle timeouts after its last byte.
    let tick = (table.idle / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    let (mut last, mut quiet) = (activity.load(Ordering::Relaxed), Duration::ZERO);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = ticker.tick(), if !closing => {
                let now = activity.load(Ordering::Relaxed);
                if now != last {
                    (last, quiet) = (now, Duration::ZERO);
                } else {
                    quiet += tick;
                    if quiet >= table.idle {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Accepts connections on `listener` until told to stop, then closes the
/// socket (and says so on `closed`) and lets the connections finish (at
/// most [`STOP_GRACE`]).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    port: u16,
    routing: Arc<Routing>,
    tls: Arc<ArcSwapOption<TlsAcceptor>>,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let mut conns = JoinSet::new();
    let (conn_stop, conn_stop_rx) = watch::channel(false);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_conn(&mut conns, stream, peer, port, &routing, &tls, &conn_stop_rx);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = closed.send(());
    let _ = conn_stop.send(true);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            port,
            left = conns.len(),
            "connections still busy after the stop grace; closing them"
        );
        conns.abort_all();
    }
}

fn spawn_conn(
    conns: &mut JoinSet<()>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    port: u16,
    routing: &Arc<Routing>,
    tls: &Arc<ArcSwapOption<TlsAcceptor>>,
    stop: &watch::Receiver<bool>,
) {
    let Some(table) = routing.snapshot.load().listeners.get(&port).cloned() else {
        return; // the listener is going away
    };
    let ctx = Arc::new(ConnCtx::new(routing.clone(), port, peer));
    let stop = stop.clone();
    if table.https {
        let Some(acceptor) = tls.load_full() else {
            return; // no usable certificate (reported in status)
        };
        conns.spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve(s, table, ctx, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    } else {
        conns.spawn(serve(stream, table, ctx, stop));
    }
}
