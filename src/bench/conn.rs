//! The bench's own HTTP/1.1 client: one keep-alive connection per bench client, each request
//! written with one `write` and each response parsed in place, on the client's own task.
//!
//! Why not reqwest, which the rest of the CLI uses: in a `get-stale` run on this 2-core machine
//! the load generator's reqwest clients took as much CPU as the node serving the reads (each
//! about half of the machine, `perf record -a`), so the benchmark mostly measured itself. reqwest
//! parses the URL again, clones its connector, checks a pool out and in, and hands every request
//! to a connection task over a channel; this client does none of that. Both systems are
//! driven by this same client.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::driver::ConnSetup;

/// Longest response head accepted; anything longer is not a server we are benchmarking.
const MAX_HEAD: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Transport failures, named as the report counts them.
const TIMEOUT: &str = "timeout";
const CONNECT: &str = "connect";
const IO: &str = "io";

pub struct Conn {
    /// `host:port`, for connecting and for the `Host` header.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// `Host` and, with a token, `Authorization`, ready to copy into every request.
    fixed_headers: Vec<u8>,
    timeout: Duration,
    io: Option<Box<dyn Io>>,
    /// The request being written.
    out: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The body of the last response.
    body: Vec<u8>,
}

impl Conn {
    /// A client for `base`'s host; it connects on first use and again after any failure.
    pub fn new(base: &Url, timeout: Duration, setup: &ConnSetup) -> Result<Conn, String> {
        // IPv6 hosts come bracketed, as both the authority and `Host` want them.
        let host = base.host_str().ok_or_else(|| format!("{base} has no host"))?;
        let port = base.port_or_known_default().ok_or_else(|| format!("{base} has no port"))?;
        let authority = format!("{host}:{port}");
        let tls = match (base.scheme(), setup.tls) {
            ("https", Some(config)) => {
                let name = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let name = ServerName::try_from(name).map_err(|e| format!("{base}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config.clone())), name))
            }
            ("https", None) => return Err(format!("{base}: https needs a TLS configuration")),
            _ => None,
        };
        let mut fixed_headers = format!("Host: {authority}\r\n").into_bytes();
        if let Some(t) = setup.token {
            fixed_headers.extend_from_slice(b"Authorization: ");
            fixed_headers.extend_from_slice(t.as_bytes());
            fixed_headers.extend_from_slice(b"\r\n");
        }
        Ok(Conn {
            authority,
            tls,
            fixed_headers,
            timeout,
            io: None,
            out: Vec::with_capacity(512),
            buf: Vec::with_capacity(8 << 10),
            body: Vec::with_capacity(1 << 10),
        })
    }

    /// Sends one request (`path` includes any query) and returns the status and whole body. A
    /// failed or timed-out exchange drops the connection; the next request opens a new one.
    pub async fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, &[u8]), String> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(Ok(status)) => Ok((status, &self.body)),
            Ok(Err(e)) => {
                self.io = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.io = None;
                Err(TIMEOUT.to_string())
            }
        }
    }

    async fn exchange(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<u16, &'static str> {
        if self.io.is_none() {
            self.io = Some(connect(&self.authority, self.tls.as_ref()).await?);
            self.buf.clear();
        }
        let out = &mut self.out;
        out.clear();
        for part in [method.as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1\r\n", &self.fixed_headers] {
            out.extend_from_slice(part);
        }
        if let Some(b) = body {
            out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(b"\r\n");
        }
        let io = self.io.as_mut().ok_or(IO)?;
        io.write_all(out).await.map_err(|_| IO)?;
        io.flush().await.map_err(|_| IO)?;
        let (status, close) = read_response(io, &mut self.buf, &mut self.body).await?;
        if close {
            self.io = None;
        }
        Ok(status)
    }
}

async fn connect(
    authority: &str,
    tls: Option<&(tokio_rustls::TlsConnector, ServerName<'static>)>,
) -> Result<Box<dyn Io>, &'static str> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Ok(Ok(s)) => s,
        _ => return Err(CONNECT),
    };
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
            Ok(s) => Ok(Box::new(s)),
            Err(_) => Err(CONNECT),
        },
    }
}

/// Appends what the connection has next to `buf`; a closed connection is an error, because
/// every caller is still waiting for part of a response.
async fn fill(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(), &'static str> {
    buf.reserve(8 << 10);
    match io.read_buf(buf).await {
        Ok(0) | Err(_) => Err(IO),
        Ok(_) => Ok(()),
    }
}

/// Reads one response into `body`. Returns its status and whether the server will close the
/// connection after it.
async fn read_response(
    io: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Result<(u16, bool), &'static str> {
    let (head_len, status, length, chunked, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.ok_or(IO)?;
                let (mut length, mut chunked, mut close) = (None, false, resp.version == Some(0));
                for h in resp.headers.iter() {
                    let v = std::str::from_utf8(h.value).map_err(|_| IO)?.trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(v.parse::<usize>().map_err(|_| IO)?);
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
            _ => return Err(IO),
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
            let size_text = std::str::from_utf8(&buf[pos..line_end]).map_err(|_| IO)?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| IO)?;
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
                Err(_) => return Err(IO),
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

    fn conn(url: &Url, token: Option<&reqwest::header::HeaderValue>) -> Conn {
        Conn::new(url, Duration::from_millis(500), &ConnSetup { tls: None, token }).unwrap()
    }

    #[tokio::test]
    async fn keeps_one_connection_across_length_and_chunked_bodies() {
        let (url, accepted, seen) = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let token = reqwest::header::HeaderValue::from_static("Bearer t0k");
        let mut c = conn(&url, Some(&token));
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
        assert_eq!(c.send("GET", "/", None).await.unwrap_err(), "timeout");
    }

    #[tokio::test]
    async fn refused_connections_and_garbage_are_errors_not_panics() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        drop(l);
        assert_eq!(conn(&url, None).send("GET", "/", None).await.unwrap_err(), "connect");
        let (url, _, _) = server(vec![b"NOT HTTP AT ALL\r\n\r\n"]).await;
        assert_eq!(conn(&url, None).send("GET", "/", None).await.unwrap_err(), "io");
    }
}
