//! Sans-IO HTTP/1.1: request parsing with hard limits, and response writing.
//!
//! The connection layer accumulates bytes and calls [`parse_request`]; it either gets a whole
//! request (head and body) with the number of bytes it used, learns that more bytes are needed, or
//! gets an [`HttpError`] that maps to a status code after which the connection is closed.
//! Pipelined requests are simply the bytes left after `consumed`.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// Most headers a request may carry.
pub const HEADERS_MAX: usize = 64;

/// Limits applied to every request (from the config's `[limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most bytes of request line plus headers.
    pub header_bytes_max: usize,
    /// Most bytes of body.
    pub body_bytes_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_bytes_max: 8 * 1024,
            body_bytes_max: 1024 * 1024,
        }
    }
}

/// Why a request was refused; each maps to a status code and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not valid HTTP/1.x.
    #[error("malformed request")]
    Malformed,
    /// Request line and headers over the limit, or too many headers.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// Declared body over the limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// Transfer-Encoding (chunked bodies) is not accepted: clients must send Content-Length.
    #[error("transfer-encoding not supported")]
    TransferEncoding,
    /// Only HTTP/1.0 and 1.1.
    #[error("http version not supported")]
    Version,
}

impl HttpError {
    /// The status code answered before closing.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::TransferEncoding => 501,
            HttpError::Version => 505,
        }
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Request {
    /// Method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query string without `?` (empty if none).
    pub query: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (Content-Length bytes).
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Whether this is a WebSocket upgrade request (`Upgrade: websocket`).
    pub upgrade_websocket: bool,
}

impl Request {
    /// The first header named `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Outcome of feeding bytes to the parser.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; nothing was consumed.
    Partial,
    /// A whole request, and how many bytes of the input it used.
    Complete {
        /// The request.
        request: Request,
        /// Bytes of the input that belong to it.
        consumed: usize,
    },
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse one request from the front of `input`.
pub fn parse_request(input: &[u8], limits: &HttpLimits) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if input.len() > limits.header_bytes_max {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::Version),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > limits.header_bytes_max {
        return Err(HttpError::HeadersTooLarge);
    }
    let version = req.version.ok_or(HttpError::Malformed)?;
    let method = req.method.ok_or(HttpError::Malformed)?;
    let target = req.path.ok_or(HttpError::Malformed)?;
    let mut content_length: Option<usize> = None;
    let mut keep_alive = version == 1;
    let mut upgrade = false;
    let mut out_headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let s = std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed)?;
                let n: usize = s.trim().parse().map_err(|_| HttpError::Malformed)?;
                // Two different lengths is a request-smuggling vector.
                if content_length.is_some_and(|c| c != n) {
                    return Err(HttpError::Malformed);
                }
                content_length = Some(n);
            }
            "transfer-encoding" => return Err(HttpError::TransferEncoding),
            "connection" => {
                if has_token(h.value, "close") {
                    keep_alive = false;
                } else if has_token(h.value, "keep-alive") {
                    keep_alive = true;
                }
            }
            "upgrade" => upgrade = has_token(h.value, "websocket"),
            _ => {}
        }
        out_headers.push((name, h.value.to_vec()));
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.body_bytes_max {
        return Err(HttpError::BodyTooLarge);
    }
    let total = head_len.checked_add(body_len).ok_or(HttpError::Malformed)?;
    let Some(body) = input.get(head_len..total) else {
        return Ok(Parsed::Partial);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    if !path.starts_with('/') && path != "*" {
        return Err(HttpError::Malformed);
    }
    Ok(Parsed::Complete {
        request: Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: out_headers,
            body: body.to_vec(),
            keep_alive,
            upgrade_websocket: upgrade,
        },
        consumed: total,
    })
}

/// The reason phrase of the status codes we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type (exactly as sent: discord.py wants `application/json` with no charset).
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and content type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "application/json", body)
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// The response for a refused request.
    pub fn for_error(e: HttpError) -> Self {
        Response::text(e.status(), format!("{e}\n"))
    }

    /// Serialize status line, headers and body into `out`.
    pub fn write_to(&self, keep_alive: bool, head_only: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        out.extend_from_slice(if keep_alive {
            b"connection: keep-alive\r\n\r\n"
        } else {
            b"connection: close\r\n\r\n"
        });
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> HttpLimits {
        HttpLimits {
            header_bytes_max: 256,
            body_bytes_max: 16,
        }
    }

    fn complete(input: &[u8]) -> (Request, usize) {
        match parse_request(input, &lim()).unwrap() {
            Parsed::Complete { request, consumed } => (request, consumed),
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn parses_get_with_query_and_keepalive() {
        let (r, n) = complete(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.query, "x=1");
        assert!(r.keep_alive);
        assert_eq!(n, 38);
        assert_eq!(r.header("host"), Some(&b"a"[..]));
    }

    #[test]
    fn http10_closes_unless_asked() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn body_waits_for_content_length() {
        let head = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(parse_request(head, &lim()).unwrap(), Parsed::Partial);
        let (r, n) = complete(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET");
        assert_eq!(r.body, b"abcde");
        assert_eq!(n, 44);
    }

    #[test]
    fn limits_and_errors_map_to_statuses() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(300));
        assert_eq!(
            parse_request(big.as_bytes(), &lim()),
            Err(HttpError::HeadersTooLarge)
        );
        // Still incomplete but already over the limit: refuse without waiting for more.
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300));
        assert_eq!(
            parse_request(partial.as_bytes(), &lim()),
            Err(HttpError::HeadersTooLarge)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", &lim()),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            parse_request(b"\x00\x01garbage\r\n\r\n", &lim()),
            Err(HttpError::Malformed)
        );
        assert_eq!(
            parse_request(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &lim()
            ),
            Err(HttpError::Malformed)
        );
        assert_eq!(
            parse_request(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                &lim()
            ),
            Err(HttpError::TransferEncoding)
        );
        assert_eq!(HttpError::HeadersTooLarge.status(), 431);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        assert_eq!(HttpError::Malformed.status(), 400);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..(HEADERS_MAX + 1) {
            s.push_str(&format!("h{i}: v\r\n"));
        }
        s.push_str("\r\n");
        let l = HttpLimits {
            header_bytes_max: 1 << 20,
            body_bytes_max: 0,
        };
        assert_eq!(
            parse_request(s.as_bytes(), &l),
            Err(HttpError::HeadersTooLarge)
        );
    }

    #[test]
    fn detects_websocket_upgrade() {
        let (r, _) =
            complete(b"GET /?v=10 HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n");
        assert!(r.upgrade_websocket);
    }

    #[test]
    fn writes_response() {
        let mut out = Vec::new();
        Response::json(200, "{}").write_to(true, false, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("content-type: application/json\r\n"));
        assert!(s.contains("content-length: 2\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&input, &lim());
        }

        #[test]
        fn split_anywhere_gives_same_request(split in 0usize..60) {
            let full = b"POST /a/b?c HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
            let split = split.min(full.len());
            if split < full.len() {
                prop_assert_eq!(parse_request(&full[..split], &lim()).unwrap(), Parsed::Partial);
            }
            let (r, n) = complete(full);
            prop_assert_eq!(n, full.len());
            prop_assert_eq!(r.body, b"xyz".to_vec());
        }
    }
}
