//! One upstream connection and its two buffers.
//!
//! A [`Connection`] is plain data: a [`Transport`] and the buffers that
//! outlive each request on it. No task drives it. The request's own future
//! writes the request and reads the response head; the response body
//! ([`super::body`]) reads the rest and, when the exchange ended cleanly,
//! hands the connection back to the pool. Keeping the buffers with the
//! connection means a kept-alive connection serialises every request head
//! into the same allocation and reads into a buffer already sized for its
//! traffic.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::transport::Transport;

/// Bytes the read buffer is grown by when it runs out of room: enough for
/// a typical response head and a small body in one read.
const READ_CHUNK: usize = 8 * 1024;
/// Below this much free room, the read buffer is grown before a read.
const MIN_SPARE: usize = 1024;

/// An open connection to the upstream, between requests or inside one.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(super) io: Transport,
    /// Bytes read and not yet consumed. Empty between requests: a
    /// connection with bytes left over is never pooled.
    pub(super) read: BytesMut,
    /// The request head is serialised here, then written in one write.
    pub(super) head: Vec<u8>,
}

impl Connection {
    pub(crate) fn new(io: Transport) -> Self {
        Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            head: Vec::with_capacity(1024),
        }
    }

    /// Reads what the upstream has sent into the read buffer. `Ok(0)` is
    /// the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < MIN_SPARE {
            self.read.reserve(READ_CHUNK);
        }
        // tokio's `read_buf` fills the spare capacity without initialising
        // it first (and without `unsafe` here); the future is only a pair
        // of references, so making one per poll costs nothing.
        pin!(self.io.read_buf(&mut self.read)).poll(cx)
    }

    /// Whether an idle connection still looks usable: the upstream has
    /// neither closed it nor sent anything unasked. One non-blocking read
    /// (no syscall at all when tokio already knows the socket has nothing).
    ///
    /// This is what lets a request that was never written go to another
    /// connection: a connection found closed here never carried it. An
    /// upstream that closes between this check and the request's write is
    /// not detected here. If the write then fails before the kernel took a
    /// byte, the request still goes to another connection; once any byte
    /// was taken the request may have reached the application, so it is
    /// answered 502 rather than sent again.
    pub(crate) fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // Ready means end of stream, stray bytes or an error: unusable.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }
}
