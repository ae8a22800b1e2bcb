//! A client socket that gives up on a peer that stops reading.
//!
//! A response is written as fast as the client takes it. A client that
//! opens a large download and then stops reading leaves those writes
//! pending forever, holding the connection (and the upstream connection
//! feeding it) with no timer running: body timeouts only count while the
//! body is polled, and the connection stops polling while the socket is full. This
//! wrapper fails a write, flush or shutdown that has made no progress for
//! the timeout, which ends the connection and frees both sides.
//!
//! Reads pass through untouched; their deadlines are the header and body
//! timeouts.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stall::Stall;

/// An I/O object whose writes time out when the peer stops reading.
#[derive(Debug)]
pub(crate) struct WriteTimeout<I> {
    inner: I,
    stall: Stall,
}

impl<I> WriteTimeout<I> {
    pub(crate) fn new(inner: I, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            stall: Stall::new(timeout),
        }
    }

    /// Applies the stall rule to one write-side poll.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stall.progressed();
                Poll::Ready(result)
            }
            Poll::Pending if self.stall.pending(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}
