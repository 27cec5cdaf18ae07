//! What one veriflier holds for its callers, bounded: connections (a permit per accepted
//! socket; past [`MAX_CONNECTIONS`] new ones wait in the listen backlog), HTTP/2 streams per
//! connection, the start of every call ([`REQUEST_DEADLINE`]; each check's result is bounded
//! by the engine, at its timeout + 5 s), and checks in flight (`veriflier.max_in_flight`,
//! reserved whole per batch with one compare-and-swap, given back one by one).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Open gRPC connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Concurrent calls (HTTP/2 streams) on one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Time a call has to be accepted or refused (a `Status` answered, a `Check` stream opened).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// An accepted connection holding one of the [`MAX_CONNECTIONS`] permits until it closes.
pub struct Limited {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepted connections, at most `max` open at once: a task takes a permit, then accepts.
pub fn incoming(
    listener: TcpListener,
    max: usize,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Limited>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let permits = Arc::new(Semaphore::new(max));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let item = match listener.accept().await {
                Ok((io, _)) => {
                    let _ = io.set_nodelay(true);
                    Ok(Limited {
                        io,
                        _permit: permit,
                    })
                }
                Err(e) => {
                    // A failed accept (EMFILE, say) is not the listener's end: say it, wait.
                    eprintln!("jetmon-veriflier: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Checks reserved against `veriflier.max_in_flight`.
#[derive(Debug, Default)]
pub struct InFlight(Arc<AtomicU32>);

/// One reserved check, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// `n` slots at once, or the number already reserved when `n` more would pass `max`.
    pub fn reserve(&self, n: u32, max: u32) -> Result<Vec<Slot>, u32> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(n).filter(|&t| t <= max)
            })?;
        Ok((0..n).map(|_| Slot(self.0.clone())).collect())
    }

    pub fn now(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_limit_and_come_back() {
        let f = Arc::new(InFlight::default());
        let a = f.reserve(6, 10).unwrap();
        assert_eq!(f.reserve(5, 10).unwrap_err(), 6);
        let b = f.reserve(4, 10).unwrap();
        assert_eq!(f.now(), 10);
        drop(a);
        assert_eq!(f.now(), 4);
        drop(b);
        assert_eq!(f.now(), 0);
    }

    #[test]
    fn racing_batches_take_at_most_the_limit() {
        let f = Arc::new(InFlight::default());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let held: Vec<_> = (0..8)
            .map(|_| {
                let (f, b) = (f.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    for _ in 0..1000 {
                        if let Ok(slots) = f.reserve(3, 10) {
                            assert_eq!(slots.len(), 3);
                            assert!(f.now() <= 10);
                        }
                    }
                })
            })
            .collect();
        for h in held {
            h.join().unwrap();
        }
        assert_eq!(f.now(), 0);
    }
}
