//! One keep-alive HTTP/1.1 client connection: write a request, read its response, keep the
//! socket for the next one.
//!
//! This is the load generator's hot path, so it works on raw bytes: the request is a ready
//! buffer, the response head is parsed in place with `httparse`, and the body is framed
//! (`Content-Length`, chunked, or until close) and thrown away. Nothing is allocated per
//! request once the read buffer has its size. One request is in flight at a time; there is no
//! pipelining.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Initial read buffer: holds the usual response head and small bodies in one read.
const READ_BUFFER: usize = 16 * 1024;
/// A response head larger than this is refused.
const MAX_HEAD: usize = 1024 * 1024;
/// Header fields parsed per response.
const MAX_HEADERS: usize = 100;

/// Why an exchange failed. The connection is closed after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The TCP connection could not be opened.
    Connect,
    /// Writing the request failed.
    Write,
    /// The connection failed or closed before the whole response was read.
    Read,
    /// The response was not valid HTTP/1.x.
    Malformed,
}

/// How the response body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A client connection to one address; it connects on first use and after a failure.
#[derive(Debug)]
pub(crate) struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Connection {
    pub(crate) fn new(addr: SocketAddr) -> Connection {
        Connection {
            addr,
            stream: None,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Drops the socket; the next exchange reconnects.
    pub(crate) fn close(&mut self) {
        self.stream = None;
        self.start = 0;
        self.end = 0;
    }

    /// Sends `request` and reads the whole response; returns its status. `head_request` says the
    /// response has no body.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<u16, Failure> {
        let result = self.try_exchange(request, head_request).await;
        match result {
            Ok((status, keep_alive)) => {
                // Bytes past the response mean the peer is out of step; start afresh.
                if !keep_alive || self.start != self.end {
                    self.close();
                }
                Ok(status)
            }
            Err(failure) => {
                self.close();
                Err(failure)
            }
        }
    }

    async fn try_exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<(u16, bool), Failure> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|_| Failure::Connect)?;
            stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
            self.stream = Some(stream);
        }
        self.start = 0;
        self.end = 0;
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Write)?;
        loop {
            let (status, keep_alive, framing) = self.read_head(head_request).await?;
            if (100..200).contains(&status) && status != 101 {
                continue; // an interim response; the final one follows
            }
            let keep_alive = match framing {
                Framing::None => keep_alive,
                Framing::Length(len) => {
                    self.skip(len).await?;
                    keep_alive
                }
                Framing::Chunked => {
                    self.skip_chunked().await?;
                    keep_alive
                }
                Framing::UntilClose => {
                    self.skip_until_close().await?;
                    false
                }
            };
            return Ok((status, keep_alive));
        }
    }

    /// Reads more bytes after `end`; `Ok(0)` is end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.buf.len() * 2).min(MAX_HEAD + READ_BUFFER);
                if grown == self.buf.len() {
                    return Err(io::Error::other("response head too large"));
                }
                self.buf.resize(grown, 0);
            }
        }
        let stream = self.stream.as_mut().expect("reading a connected stream");
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads and parses one response head; consumes it from the buffer.
    async fn read_head(&mut self, head_request: bool) -> Result<(u16, bool, Framing), Failure> {
        loop {
            if self.start < self.end {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = response.code.ok_or(Failure::Malformed)?;
                        let http11 = response.version == Some(1);
                        let (framing, keep_alive) =
                            framing(status, http11, head_request, response.headers)?;
                        self.start += len;
                        return Ok((status, keep_alive, framing));
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start > MAX_HEAD {
                            return Err(Failure::Malformed);
                        }
                    }
                    Err(_) => return Err(Failure::Malformed),
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(Failure::Read),
                Ok(_) => {}
            }
        }
    }

    /// Consumes `len` body bytes.
    async fn skip(&mut self, mut len: u64) -> Result<(), Failure> {
        loop {
            let available = (self.end - self.start) as u64;
            let taken = available.min(len);
            self.start += taken as usize;
            len -= taken;
            if len == 0 {
                return Ok(());
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(Failure::Read),
                Ok(_) => {}
            }
        }
    }

    /// Consumes a chunked body, trailers included.
    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        let mut decoder = Chunked::default();
        loop {
            let consumed = decoder.advance(&self.buf[self.start..self.end])?;
            self.start += consumed;
            if decoder.is_done() {
                return Ok(());
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(Failure::Read),
                Ok(_) => {}
            }
        }
    }

    /// Consumes everything up to the end of the stream.
    async fn skip_until_close(&mut self) -> Result<(), Failure> {
        loop {
            self.start = self.end;
            match self.fill().await {
                Ok(0) => return Ok(()),
                Err(_) => return Err(Failure::Read),
                Ok(_) => {}
            }
        }
    }
}

/// How the body of a response with these headers is delimited, and whether the connection may
/// be reused after it.
fn framing(
    status: u16,
    http11: bool,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Result<(Framing, bool), Failure> {
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = http11;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).map_err(|_| Failure::Malformed)?;
            let value: u64 = value.trim().parse().map_err(|_| Failure::Malformed)?;
            if length.is_some_and(|l| l != value) {
                return Err(Failure::Malformed);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = last_token(header.value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(len) = length {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    Ok((framing, keep_alive))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|b| *b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// Where the chunked-body decoder stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size.
    #[default]
    Size,
    /// Skipping a chunk extension up to the line end.
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Skipping chunk data.
    Data,
    /// Expecting CR LF after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting the final LF.
    EndLf,
    Done,
}

/// An incremental chunked-body skipper.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u32,
}

impl Chunked {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can of `data`; returns how many bytes it took.
    fn advance(&mut self, data: &[u8]) -> Result<usize, Failure> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() && self.state != Done {
            if self.state == Data {
                let taken = (data.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                i += taken;
                self.size -= taken as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(Failure::Malformed);
                    }
                    self.size = self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => Extension,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Size | Extension | SizeLf, b'\n') if self.digits > 0 => self.end_size_line(),
                (Extension, b'\r') => SizeLf,
                (Extension, _) => Extension,
                (DataCr, b'\r') => DataLf,
                (DataCr | DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | EndLf, b'\n') => Done,
                (Trailer, b'\n') => TrailerStart,
                (TrailerStart | Trailer, _) => Trailer,
                _ => return Err(Failure::Malformed),
            };
        }
        Ok(i)
    }

    fn end_size_line(&mut self) -> ChunkState {
        self.digits = 0;
        if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(body: &[u8], step: usize) -> Result<usize, Failure> {
        let mut decoder = Chunked::default();
        let mut at = 0;
        while !decoder.is_done() {
            let end = (at + step).min(body.len());
            if at == end {
                return Err(Failure::Read);
            }
            at += decoder.advance(&body[at..end])?;
        }
        Ok(at)
    }

    #[test]
    fn chunked_body_is_skipped_whatever_the_read_sizes() {
        let body = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(skip_all(body, step), Ok(body.len() - 4), "step {step}");
        }
    }

    #[test]
    fn chunked_body_without_trailers() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(skip_all(body, 100), Ok(body.len()));
    }

    #[test]
    fn bad_chunk_size_is_malformed() {
        assert_eq!(skip_all(b"zz\r\n", 100), Err(Failure::Malformed));
        assert_eq!(skip_all(b"3\r\nabcX", 100), Err(Failure::Malformed));
    }

    #[test]
    fn framing_follows_the_headers() {
        let h = |name: &'static str, value: &'static [u8]| httparse::Header { name, value };
        let (f, keep) = framing(200, true, false, &[h("Content-Length", b"12")]).unwrap();
        assert!(matches!(f, Framing::Length(12)) && keep);
        let (f, keep) = framing(200, true, false, &[h("Connection", b"close")]).unwrap();
        assert!(matches!(f, Framing::UntilClose) && !keep);
        let (f, _) = framing(
            200,
            true,
            false,
            &[h("Transfer-Encoding", b"gzip, chunked")],
        )
        .unwrap();
        assert!(matches!(f, Framing::Chunked));
        let (f, _) = framing(200, true, true, &[h("Content-Length", b"12")]).unwrap();
        assert!(matches!(f, Framing::None));
        let (_, keep) = framing(200, false, false, &[h("Content-Length", b"0")]).unwrap();
        assert!(!keep);
        let (_, keep) = framing(
            200,
            false,
            false,
            &[h("Connection", b"keep-alive"), h("Content-Length", b"0")],
        )
        .unwrap();
        assert!(keep);
        assert!(framing(200, true, false, &[h("Content-Length", b"x")]).is_err());
    }
}
