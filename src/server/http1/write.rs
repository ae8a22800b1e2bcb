//! Writing to the client: a response body after its head, and closing.
//!
//! The head and as much of the body as is ready share the connection's
//! one write buffer and go out in one write; the buffer is written out
//! before waiting for more of the body (so a client is never kept waiting
//! on bytes keygate holds), when it fills, and at the end. Large data
//! frames are written straight from the body's own buffer rather than
//! copied. The socket is behind the connection's shared lock (see
//! [`super::body`]); each write locks it for one poll and first finishes
//! any `100 Continue` the body began.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Poll};

use bytes::Bytes;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{lock, Shared};
use super::encode::{self, Framing};
use super::{client_gone, ConnError, COPY_LIMIT, FLUSH_AT, LINGER, LINGER_LIMIT};
use crate::server::BoxError;

/// Writes the body's frames after the head in `buf`, with `framing`.
pub(super) async fn write_body<I, B>(
    shared: &Mutex<Shared<I>>,
    buf: &mut Vec<u8>,
    mut body: Pin<&mut B>,
    framing: Framing,
    max_head: usize,
) -> Result<(), ConnError>
where
    I: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut trailers = None;
    loop {
        if body.is_end_stream() {
            break;
        }
        // Take whatever is ready; before waiting for more, send what the
        // buffer holds, so the client is never kept waiting on us.
        let polled = poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                send(shared, buf).await?;
                flush(shared).await.map_err(ConnError::Write)?;
                poll_fn(|cx| match body.as_mut().poll_frame(cx) {
                    Poll::Ready(frame) => Poll::Ready(Ok(frame)),
                    Poll::Pending if client_gone(shared, max_head, cx) => {
                        Poll::Ready(Err(ConnError::Gone))
                    }
                    Poll::Pending => Poll::Pending,
                })
                .await?
            }
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                // What did arrive still goes out; the short response and
                // the close tell the client it was cut.
                let _ = send(shared, buf).await;
                return Err(ConnError::Body(error.into()));
            }
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(fields) = frame.into_trailers() {
                    trailers = Some(fields);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if let Framing::Length(_) = framing {
            let n = data.len() as u64;
            if n > left {
                let _ = send(shared, buf).await;
                return Err(ConnError::Length);
            }
            left -= n;
        }
        if framing == Framing::Chunked {
            encode::chunk_size(buf, data.len());
        }
        if data.len() >= COPY_LIMIT {
            send(shared, buf).await?;
            write_all(shared, &data).await.map_err(ConnError::Write)?;
        } else {
            buf.extend_from_slice(&data);
        }
        if framing == Framing::Chunked {
            buf.extend_from_slice(b"\r\n");
        }
        if buf.len() >= FLUSH_AT {
            send(shared, buf).await?;
        }
    }
    match framing {
        Framing::Length(_) if left != 0 => {
            let _ = send(shared, buf).await;
            return Err(ConnError::Length);
        }
        Framing::Chunked => {
            buf.extend_from_slice(b"0\r\n");
            if let Some(fields) = &trailers {
                for (name, value) in fields {
                    buf.extend_from_slice(name.as_str().as_bytes());
                    buf.extend_from_slice(b": ");
                    buf.extend_from_slice(value.as_bytes());
                    buf.extend_from_slice(b"\r\n");
                }
            }
            buf.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    send(shared, buf).await?;
    flush(shared).await.map_err(ConnError::Write)
}

/// Writes out and empties the write buffer.
async fn send<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Mutex<Shared<I>>,
    buf: &mut Vec<u8>,
) -> Result<(), ConnError> {
    if !buf.is_empty() {
        write_all(shared, buf).await.map_err(ConnError::Write)?;
        buf.clear();
    }
    Ok(())
}

/// Writes all of `bytes`, after whatever is left of a `100 Continue`.
pub(super) async fn write_all<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Mutex<Shared<I>>,
    mut bytes: &[u8],
) -> io::Result<()> {
    poll_fn(|cx| {
        let mut conn = lock(shared);
        ready!(conn.poll_interim(cx))?;
        let Some(io) = conn.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        while !bytes.is_empty() {
            match ready!(Pin::new(&mut *io).poll_write(cx, bytes)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

pub(super) async fn flush<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Mutex<Shared<I>>,
) -> io::Result<()> {
    poll_fn(|cx| match lock(shared).io.as_mut() {
        Some(io) => Pin::new(io).poll_flush(cx),
        None => Poll::Ready(Ok(())),
    })
    .await
}

/// Closes the connection: shuts down the sending side (TLS sends its
/// close_notify), then, when the client may still be sending (`linger`),
/// reads and discards for a moment, so that closing with unread bytes
/// does not reset the connection before the client has read its answer.
pub(super) async fn close<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Mutex<Shared<I>>,
    linger: bool,
) {
    let shut = poll_fn(|cx| match lock(shared).io.as_mut() {
        Some(io) => Pin::new(io).poll_shutdown(cx),
        None => Poll::Ready(Ok(())),
    });
    if shut.await.is_err() || !linger {
        return;
    }
    let mut discarded = 0;
    let discard = poll_fn(|cx| loop {
        let mut conn = lock(shared);
        conn.read.clear();
        if conn.eof || discarded > LINGER_LIMIT {
            return Poll::Ready(());
        }
        match ready!(conn.poll_fill(cx)) {
            Ok(n) => discarded += n,
            Err(_) => return Poll::Ready(()),
        }
    });
    let _ = tokio::time::timeout(LINGER, discard).await;
}
