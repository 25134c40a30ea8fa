//! A minimal blocking HTTP/1.1 client with keep-alive for the control API (`POST
//! /control/users`), Hearth's broadcast trigger and Nchan's publisher: one request at a time,
//! bodies framed by Content-Length or chunked encoding, bounded sizes.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::BenchError;
use crate::gateway::limits::{HTTP_BODY_BYTES_MAX, HTTP_TIMEOUT_S, RESPONSE_HEADERS_MAX};

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the server will close the connection after it.
    pub close: bool,
}

impl HttpResponse {
    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn bad(detail: impl Into<String>) -> BenchError {
    BenchError::Parse {
        file: "HTTP response".into(),
        detail: detail.into(),
    }
}

/// Decodes a chunked body at the front of `buf`: `Ok(None)` when incomplete, else the body and
/// the bytes used (trailers are skipped).
pub fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, BenchError> {
    let mut body = Vec::new();
    let mut off = 0;
    loop {
        let rest = buf.get(off..).unwrap_or_default();
        match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(bad("bad chunk size")),
            Ok(httparse::Status::Complete((used, size))) => {
                let size = usize::try_from(size).map_err(|_| bad("chunk too big"))?;
                if body.len() + size > HTTP_BODY_BYTES_MAX {
                    return Err(bad(format!("body over {HTTP_BODY_BYTES_MAX} bytes")));
                }
                off += used;
                if size == 0 {
                    // Trailers, then an empty line.
                    loop {
                        let rest = buf.get(off..).unwrap_or_default();
                        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
                            return Ok(None);
                        };
                        off += nl + 2;
                        if nl == 0 {
                            return Ok(Some((body, off)));
                        }
                    }
                }
                let Some(data) = buf.get(off..off + size) else {
                    return Ok(None);
                };
                body.extend_from_slice(data);
                off += size;
                match buf.get(off..off + 2) {
                    None => return Ok(None),
                    Some(b"\r\n") => off += 2,
                    Some(_) => return Err(bad("chunk not followed by CRLF")),
                }
            }
        }
    }
}

/// Parses a whole response at the front of `buf`: `Ok(None)` when more bytes are needed.
/// `eof` says the peer closed, which ends a body without a length.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(HttpResponse, usize)>, BenchError> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let mut close =
        header("connection").is_some_and(|v| v.contains("close")) || resp.version == Some(0);
    let rest = buf.get(head..).unwrap_or_default();
    let (body, used) = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        match parse_chunked(rest)? {
            Some(x) => x,
            None => return Ok(None),
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if len > HTTP_BODY_BYTES_MAX {
            return Err(bad(format!("body over {HTTP_BODY_BYTES_MAX} bytes")));
        }
        match rest.get(..len) {
            Some(b) => (b.to_vec(), len),
            None => return Ok(None),
        }
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        (Vec::new(), 0)
    } else {
        // No length: the body runs to the end of the connection.
        if !eof {
            return Ok(None);
        }
        close = true;
        (rest.to_vec(), rest.len())
    };
    Ok(Some((
        HttpResponse {
            status,
            body,
            close,
        },
        head + used,
    )))
}

/// How one request/response exchange failed.
#[derive(Debug)]
enum Exchange {
    /// The connection was already closed by the server: the request did not reach it.
    Stale(BenchError),
    /// Anything else.
    Failed(BenchError),
}

impl Exchange {
    fn into_error(self) -> BenchError {
        match self {
            Exchange::Stale(e) | Exchange::Failed(e) => e,
        }
    }
}

/// A keep-alive connection to one server, reopened when the server closes it.
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl HttpClient {
    /// A client for `addr`; connects on first use.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_timeout(addr, Duration::from_secs(HTTP_TIMEOUT_S))
    }

    /// A client whose connects and reads give up after `timeout`.
    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Self {
        HttpClient {
            addr,
            stream: None,
            buf: Vec::new(),
            timeout,
        }
    }

    fn connect(&self) -> Result<TcpStream, BenchError> {
        let what = || format!("connect to {}", self.addr);
        let s = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| BenchError::io(what(), e))?;
        let timeout = Some(self.timeout);
        s.set_nodelay(true)
            .and_then(|()| s.set_read_timeout(timeout))
            .and_then(|()| s.set_write_timeout(timeout))
            .map_err(|e| BenchError::io(what(), e))?;
        Ok(s)
    }

    /// Sends one request and reads its response. A kept-alive connection the server closed in
    /// the meantime is reopened once.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, BenchError> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        let reused = self.stream.is_some();
        match self.exchange(&req) {
            // Only a kept-alive connection the server had already closed is retried: then the
            // request never reached it. A timeout is not retried, since a POST (a broadcast)
            // may have been acted on.
            Err(Exchange::Stale(_)) if reused => {
                self.stream = None;
                self.exchange(&req).map_err(Exchange::into_error)
            }
            r => r.map_err(Exchange::into_error),
        }
    }

    fn exchange(&mut self, req: &[u8]) -> Result<HttpResponse, Exchange> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.connect().map_err(Exchange::Failed)?,
        };
        let addr = self.addr;
        let io = |what: &str, e: std::io::Error| BenchError::io(format!("{what} {addr}"), e);
        stream.write_all(req).map_err(|e| {
            let stale = matches!(
                e.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            );
            let err = io("send to", e);
            if stale {
                Exchange::Stale(err)
            } else {
                Exchange::Failed(err)
            }
        })?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if self.buf.is_empty() && e.kind() == ErrorKind::ConnectionReset => {
                    return Err(Exchange::Stale(io("read from", e)));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Exchange::Failed(BenchError::io(
                        format!("{addr} did not answer within {:?}", self.timeout),
                        e,
                    )));
                }
                Err(e) => return Err(Exchange::Failed(io("read from", e))),
            };
            if n == 0 && self.buf.is_empty() {
                return Err(Exchange::Stale(bad("connection closed before a response")));
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
            if let Some((resp, _)) = parse_response(&self.buf, n == 0).map_err(Exchange::Failed)? {
                if !resp.close {
                    self.stream = Some(stream);
                }
                return Ok(resp);
            }
            if n == 0 {
                return Err(Exchange::Failed(bad(
                    "connection closed before a whole response",
                )));
            }
            if self.buf.len() > HTTP_BODY_BYTES_MAX + 64 * 1024 {
                return Err(Exchange::Failed(bad("response too big")));
            }
        }
    }

    /// POSTs a JSON body.
    pub fn post_json(&mut self, path: &str, body: &str) -> Result<HttpResponse, BenchError> {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn content_length_and_chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        let (resp, used) = parse_response(r, false).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice(), resp.close),
            (200, &b"hello"[..], false)
        );
        assert_eq!(used, r.len() - 8);
        assert!(parse_response(&r[..30], false).unwrap().is_none());

        let c = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                  4\r\nqueu\r\n3\r\ned!\r\n0\r\n\r\n";
        let (resp, used) = parse_response(c, false).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (201, &b"queued!"[..]));
        assert!(resp.close);
        assert_eq!(used, c.len());
        assert!(parse_response(&c[..c.len() - 2], false).unwrap().is_none());

        let eof = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        assert!(parse_response(eof, false).unwrap().is_none());
        let (resp, _) = parse_response(eof, true).unwrap().unwrap();
        assert_eq!(resp.body, b"until the end");
        assert!(parse_response(b"garbage\r\n\r\n", false).is_err());
        assert!(parse_chunked(b"zz\r\n").is_err());
    }

    #[test]
    fn an_unanswered_request_fails_without_a_retry() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = HttpClient::with_timeout(addr, Duration::from_millis(200));
        // The kernel completes the connect; nobody ever reads or answers.
        let err = c.post_json("/admin/broadcast", "{}").unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok());
        assert!(listener.accept().is_err(), "a POST must not be sent twice");
    }

    #[test]
    fn keep_alive_then_reconnect_after_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // First connection: two requests, then the server closes it.
            for answers in [2, 1] {
                let (mut s, _) = listener.accept().unwrap();
                for i in 0..answers {
                    let mut got = Vec::new();
                    let mut b = [0u8; 1024];
                    while !got.ends_with(b"{}") {
                        let n = s.read(&mut b).unwrap();
                        got.extend_from_slice(&b[..n]);
                    }
                    let body = format!("{{\"n\":{i}}}");
                    write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                }
            }
        });
        let mut c = HttpClient::new(addr);
        assert_eq!(c.post_json("/a", "{}").unwrap().body, b"{\"n\":0}");
        assert_eq!(c.post_json("/a", "{}").unwrap().body, b"{\"n\":1}");
        // The server closed the kept-alive connection: the client reopens it.
        assert_eq!(c.post_json("/a", "{}").unwrap().body, b"{\"n\":0}");
        server.join().unwrap();
    }
}
