//! A stream wrapped with something of a connection's own: writes go straight through to the
//! stream; the wrapper may put bytes in front of what is read (a replay of what was already
//! read) or only ride along (what keeps a connection counted).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a wrapper puts in front of the wrapped stream's bytes: nothing unless it says so.
pub trait Prepend {
    /// Fills `buf` from bytes of its own while it has any; `false` lets the stream be read.
    fn prepend(&mut self, _buf: &mut ReadBuf<'_>) -> bool {
        false
    }
}

/// `inner` with `wrapper` around it.
#[derive(Debug)]
pub struct Wrapped<S, W> {
    inner: S,
    wrapper: W,
}

impl<S, W> Wrapped<S, W> {
    pub fn new(inner: S, wrapper: W) -> Self {
        Self { inner, wrapper }
    }

    pub fn wrapper(&self) -> &W {
        &self.wrapper
    }
}

impl<S: AsyncRead + Unpin, W: Prepend + Unpin> AsyncRead for Wrapped<S, W> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.wrapper.prepend(buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, W: Unpin> AsyncWrite for Wrapped<S, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
