//! A stream wrapped with something of a connection's own: writes go straight through to the
//! stream, reads go through the wrapper, which may put bytes in front (a replay of what was
//! already read) or only ride along (what keeps a connection counted).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How a wrapper reads from the stream it wraps: straight through unless it says otherwise.
pub trait ReadThrough {
    fn poll_read_through<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(inner).poll_read(cx, buf)
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

impl<S: AsyncRead + Unpin, W: ReadThrough + Unpin> AsyncRead for Wrapped<S, W> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wrapper.poll_read_through(&mut this.inner, cx, buf)
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
