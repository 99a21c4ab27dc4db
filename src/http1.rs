//! A minimal keep-alive HTTP/1.1 client: one connection, one request at a time, each request
//! written with one `write` and each response parsed in place, on the caller's own task. It
//! carries Raft's peer RPCs (`net/mod.rs`) and `cairn bench`'s load (`bench/`).
//!
//! Why not reqwest, which the rest of the node and CLI use: reqwest parses the URL again,
//! clones its connector, checks a pool out and in, and hands every request to a connection
//! task over a channel. In a `get-stale` run on this 2-core machine the load generator's
//! reqwest clients took as much CPU as the node serving the reads, and on the put path a
//! reqwest round trip to a follower cost about twice what the follower took to answer; both
//! are measured in docs/performance.md ("What mattered").

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// Why an exchange failed. The names are what `cairn bench` counts errors by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, TLS handshake failed): the request
    /// was never sent.
    Connect,
    /// No whole response within the deadline; the request may have been processed.
    Timeout,
    /// The connection failed or the response was not HTTP; the request may have been processed.
    Io,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
        })
    }
}

impl std::error::Error for Failure {}

/// How a connection is made and what every request carries.
#[derive(Clone, Default)]
pub struct Options {
    /// Deadline of one exchange, connecting included, unless the call gives its own.
    pub timeout: Duration,
    /// Used for `https` bases.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connections leave from this address (see `net::peer_client` for why peers want that).
    pub local_ip: Option<IpAddr>,
    /// Sent with every request, e.g. `("Authorization", "Bearer …")`.
    pub headers: Vec<(&'static str, String)>,
    /// The `Content-Type` of request bodies.
    pub content_type: &'static str,
    /// Send a request again, once, on a new connection when a kept-alive one turns out to be
    /// closed before any byte of the response arrived (the server dropped it while idle). Only
    /// for idempotent requests: the server may have read the first copy before it closed.
    pub retry_stale: bool,
}

pub struct Conn {
    /// `host:port`, for connecting and for the `Host` header.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    local_ip: Option<IpAddr>,
    /// `Host` and the configured headers, ready to copy into every request.
    fixed_headers: Vec<u8>,
    content_type: &'static str,
    timeout: Duration,
    retry_stale: bool,
    io: Option<Box<dyn Io>>,
    /// Set while an exchange runs. Still set when the next one starts means the caller dropped
    /// the last one part-way (openraft times RPCs out by dropping them): its response may still
    /// be on the way, so the connection must not carry another request.
    in_exchange: bool,
    /// The request being written.
    out: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The body of the last response.
    body: Vec<u8>,
}

/// An exchange's failure as `send` sees it: `Stale` is an `Io` failure on a reused connection
/// before any response byte arrived.
enum Err {
    Fail(Failure),
    Stale,
}

impl From<Failure> for Err {
    fn from(f: Failure) -> Err {
        Err::Fail(f)
    }
}

impl Conn {
    /// A client for `base`'s host; it connects on first use and again after any failure.
    pub fn new(base: &Url, opts: &Options) -> Result<Conn, String> {
        // IPv6 hosts come bracketed, as both the authority and `Host` want them.
        let host = base.host_str().ok_or_else(|| format!("{base} has no host"))?;
        let port = base.port_or_known_default().ok_or_else(|| format!("{base} has no port"))?;
        let authority = format!("{host}:{port}");
        let tls = match (base.scheme(), &opts.tls) {
            ("https", Some(config)) => {
                let name = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let name = ServerName::try_from(name).map_err(|e| format!("{base}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(config.clone()), name))
            }
            ("https", None) => return Err(format!("{base}: https needs a TLS configuration")),
            _ => None,
        };
        let mut fixed_headers = format!("Host: {authority}\r\n").into_bytes();
        for (name, value) in &opts.headers {
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("header {name} contains a line break"));
            }
            fixed_headers.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        Ok(Conn {
            authority,
            tls,
            local_ip: opts.local_ip,
            fixed_headers,
            content_type: opts.content_type,
            timeout: opts.timeout,
            retry_stale: opts.retry_stale,
            io: None,
            in_exchange: false,
            out: Vec::with_capacity(512),
            buf: Vec::with_capacity(8 << 10),
            body: Vec::with_capacity(1 << 10),
        })
    }

    /// Sends one request (`path` includes any query) and returns the status and whole body. A
    /// failed or timed-out exchange drops the connection; the next request opens a new one.
    pub async fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, &[u8]), Failure> {
        self.send_within(self.timeout, method, path, body).await
    }

    /// [`Conn::send`] with its own deadline.
    pub async fn send_within(
        &mut self,
        deadline: Duration,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, &[u8]), Failure> {
        if self.in_exchange {
            self.io = None;
        }
        self.in_exchange = true;
        let attempts = async {
            match self.exchange(method, path, body).await {
                Err(Err::Stale) if self.retry_stale => {
                    self.io = None;
                    self.exchange(method, path, body).await
                }
                other => other,
            }
        };
        let outcome = tokio::time::timeout(deadline, attempts).await;
        self.in_exchange = false;
        match outcome {
            Ok(Ok(status)) => Ok((status, &self.body)),
            Ok(Err(e)) => {
                self.io = None;
                Err(match e {
                    Err::Fail(f) => f,
                    Err::Stale => Failure::Io,
                })
            }
            Err(_) => {
                self.io = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn exchange(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<u16, Err> {
        let reused = self.io.is_some();
        if !reused {
            self.io = Some(connect(&self.authority, self.local_ip, self.tls.as_ref()).await?);
        }
        self.buf.clear();
        let out = &mut self.out;
        out.clear();
        for part in [method.as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1\r\n", &self.fixed_headers] {
            out.extend_from_slice(part);
        }
        if let Some(b) = body {
            for part in [b"Content-Type: ", self.content_type.as_bytes(), b"\r\nContent-Length: "] {
                out.extend_from_slice(part);
            }
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(b"\r\n");
        }
        let io = self.io.as_mut().ok_or(Failure::Io)?;
        let stale = |e: Failure| if reused { Err::Stale } else { Err::Fail(e) };
        if io.write_all(out).await.is_err() || io.flush().await.is_err() {
            return Err(stale(Failure::Io));
        }
        let (status, close) = match read_response(io, &mut self.buf, &mut self.body).await {
            Ok(r) => r,
            Err(e) if self.buf.is_empty() => return Err(stale(e)),
            Err(e) => return Err(e.into()),
        };
        if close {
            self.io = None;
        }
        Ok(status)
    }
}

async fn connect(
    authority: &str,
    local_ip: Option<IpAddr>,
    tls: Option<&(tokio_rustls::TlsConnector, ServerName<'static>)>,
) -> Result<Box<dyn Io>, Failure> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, dial(authority, local_ip)).await {
        Ok(Ok(s)) => s,
        _ => return Err(Failure::Connect),
    };
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
            Ok(s) => Ok(Box::new(s)),
            Err(_) => Err(Failure::Connect),
        },
    }
}

async fn dial(authority: &str, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = local_ip else {
        return TcpStream::connect(authority).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(authority).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // Only an address of the same family can be bound; otherwise let the kernel choose.
        if ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{authority} did not resolve"))))
}

/// Appends what the connection has next to `buf`; a closed connection is an error, because
/// every caller is still waiting for part of a response.
async fn fill(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(), Failure> {
    buf.reserve(8 << 10);
    match io.read_buf(buf).await {
        Ok(0) | Err(_) => Err(Failure::Io),
        Ok(_) => Ok(()),
    }
}

/// Reads one response into `body`. Returns its status and whether the server will close the
/// connection after it.
async fn read_response(io: &mut Box<dyn Io>, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> Result<(u16, bool), Failure> {
    let (head_len, status, length, chunked, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.ok_or(Failure::Io)?;
                let (mut length, mut chunked, mut close) = (None, false, resp.version == Some(0));
                for h in resp.headers.iter() {
                    let v = std::str::from_utf8(h.value).map_err(|_| Failure::Io)?.trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(v.parse::<usize>().map_err(|_| Failure::Io)?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = v.to_ascii_lowercase().ends_with("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = v.eq_ignore_ascii_case("close");
                    }
                }
                if (100..200).contains(&status) {
                    // An interim response (none is asked for); the real one follows.
                    buf.drain(..n);
                    continue;
                }
                break (n, status, length, chunked, close);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => fill(io, buf).await?,
            _ => return Err(Failure::Io),
        }
    };
    body.clear();
    let mut pos = head_len;
    if chunked {
        loop {
            let line_end = loop {
                if let Some(p) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + p;
                }
                fill(io, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| Failure::Io)?;
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| Failure::Io)?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers (if any), then the empty line that ends the message.
                loop {
                    match buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        Some(0) => break,
                        Some(p) => pos += p + 2,
                        None => fill(io, buf).await?,
                    }
                }
                pos += 2;
                break;
            }
            while buf.len() < pos + size + 2 {
                fill(io, buf).await?;
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(n) = length {
        while buf.len() < pos + n {
            fill(io, buf).await?;
        }
        body.extend_from_slice(&buf[pos..pos + n]);
        pos += n;
    } else if status != 204 && status != 304 {
        // No length: the body runs to the end of the connection.
        loop {
            buf.reserve(8 << 10);
            match io.read_buf(buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(Failure::Io),
            }
        }
        body.extend_from_slice(&buf[pos..]);
        pos = buf.len();
        buf.drain(..pos);
        return Ok((status, true));
    }
    buf.drain(..pos);
    Ok((status, close))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A server that answers each request on a connection with the next canned response, and
    /// counts the connections it accepted. Requests are read up to their blank line (and the
    /// body, by Content-Length).
    async fn server(responses: Vec<&'static [u8]>) -> (Url, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, s) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            let next = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((mut sock, _)) = l.accept().await else { return };
                a.fetch_add(1, Ordering::Relaxed);
                let (responses, next, s) = (responses.clone(), next.clone(), s.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.parse::<usize>().unwrap());
                        while buf.len() < end + 4 + len {
                            let mut chunk = [0u8; 4096];
                            let n = sock.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        s.lock().unwrap().push(buf.drain(..end + 4 + len).collect());
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(r) = responses.get(i) else { return };
                        if r.is_empty() {
                            // Never answer: lets the client time out.
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        sock.write_all(r).await.unwrap();
                    }
                });
            }
        });
        (url, accepted, seen)
    }

    fn conn(url: &Url, token: Option<&str>) -> Conn {
        let headers = token.map(|t| vec![("Authorization", t.to_string())]).unwrap_or_default();
        let opts = Options {
            timeout: Duration::from_millis(500),
            headers,
            content_type: "application/json",
            ..Options::default()
        };
        Conn::new(url, &opts).unwrap()
    }

    #[tokio::test]
    async fn keeps_one_connection_across_length_and_chunked_bodies() {
        let (url, accepted, seen) = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let mut c = conn(&url, Some("Bearer t0k"));
        assert_eq!(c.send("GET", "/a?b=c", None).await.unwrap(), (200, &b"hello"[..]));
        assert_eq!(c.send("PUT", "/x", Some(b"{\"v\":1}")).await.unwrap(), (404, &b"abcde"[..]));
        assert_eq!(c.send("POST", "/y", None).await.unwrap(), (201, &b""[..]));
        assert_eq!(accepted.load(Ordering::Relaxed), 1, "all three requests on one connection");
        let seen = seen.lock().unwrap();
        let first = String::from_utf8_lossy(&seen[0]);
        assert!(first.starts_with("GET /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:"), "{first}");
        assert!(first.contains("\r\nAuthorization: Bearer t0k\r\n"), "{first}");
        let second = String::from_utf8_lossy(&seen[1]);
        assert!(second.contains("Content-Length: 7\r\n\r\n{\"v\":1}"), "{second}");
    }

    #[tokio::test]
    async fn reconnects_after_the_server_closes_and_reports_timeouts() {
        let (url, accepted, _) = server(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"",
        ])
        .await;
        let mut c = conn(&url, None);
        assert_eq!(c.send("GET", "/", None).await.unwrap().0, 200);
        assert_eq!(c.send("GET", "/", None).await.unwrap().0, 200);
        assert_eq!(accepted.load(Ordering::Relaxed), 2, "a new connection after Connection: close");
        assert_eq!(c.send("GET", "/", None).await.unwrap_err(), Failure::Timeout);
    }

    #[tokio::test]
    async fn refused_connections_and_garbage_are_errors_not_panics() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        drop(l);
        assert_eq!(conn(&url, None).send("GET", "/", None).await.unwrap_err(), Failure::Connect);
        let (url, _, _) = server(vec![b"NOT HTTP AT ALL\r\n\r\n"]).await;
        assert_eq!(conn(&url, None).send("GET", "/", None).await.unwrap_err(), Failure::Io);
    }

    /// Reads into `buf` until it holds a request head; returns where the head ends, or `None`
    /// if the connection closed first.
    async fn read_head(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(end);
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A server that answers one request per connection and then closes it without saying so,
    /// as a server does with a connection that sat idle too long.
    async fn closing_server() -> (Url, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = l.accept().await else { return };
                a.fetch_add(1, Ordering::Relaxed);
                let mut buf = Vec::new();
                if read_head(&mut sock, &mut buf).await.is_none() {
                    continue;
                }
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_retried_only_when_asked() {
        let (url, accepted) = closing_server().await;
        let mut plain = conn(&url, None);
        assert_eq!(plain.send("GET", "/", None).await.unwrap().0, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(plain.send("GET", "/", None).await.unwrap_err(), Failure::Io, "no retry unless asked");

        let (url, accepted_retry) = closing_server().await;
        let opts = Options { timeout: Duration::from_millis(500), retry_stale: true, ..Options::default() };
        let mut retrying = Conn::new(&url, &opts).unwrap();
        for _ in 0..3 {
            assert_eq!(retrying.send("GET", "/", None).await.unwrap().0, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted_retry.load(Ordering::Relaxed), 3, "one new connection per stale one");
        assert!(accepted.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn connections_leave_from_the_chosen_local_address() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let peer = tokio::spawn(async move {
            let (mut sock, from) = l.accept().await.unwrap();
            let mut chunk = [0u8; 4096];
            let _ = sock.read(&mut chunk).await.unwrap();
            sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            from.ip()
        });
        let local: IpAddr = "127.0.0.7".parse().unwrap();
        let opts = Options { timeout: Duration::from_secs(2), local_ip: Some(local), ..Options::default() };
        let mut c = Conn::new(&url, &opts).unwrap();
        assert_eq!(c.send("POST", "/x", Some(b"body")).await.unwrap().0, 204);
        assert_eq!(peer.await.unwrap(), local);
    }

    #[tokio::test]
    async fn a_dropped_exchange_never_hands_its_late_answer_to_the_next_request() {
        // Answers request n with body n; the first answer comes late.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let s = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = l.accept().await else { return };
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = read_head(&mut sock, &mut buf).await else { return };
                        buf.drain(..end + 4);
                        let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                        if n == 1 {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}");
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let mut c = conn(&url, None);
        let dropped = tokio::time::timeout(Duration::from_millis(50), c.send("GET", "/", None)).await;
        assert!(dropped.is_err(), "the first exchange is dropped before its answer");
        let (status, body) = c.send("GET", "/", None).await.unwrap();
        assert_eq!((status, body), (200, &b"2"[..]), "the answer to the second request, not the first's");
    }
}
