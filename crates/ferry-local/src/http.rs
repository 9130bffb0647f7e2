//! A minimal HTTP/1.1 `GET` over a plain TCP stream, enough for health checks and probes
//! against `http://` URLs: [`http_get_status`] reads only the status code, [`http_get`]
//! the status and the body (plain, `Content-Length` or `Transfer-Encoding: chunked`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Sends `GET url` and returns the response's status code and body (at most 1 MiB).
/// The whole exchange (name lookup excepted) is bounded by `timeout`.
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    http_request("GET", url, &[], b"", timeout)
}

/// Sends `method url` with extra `headers` and `body` (a `Content-Length` is added) and
/// returns the response's status code and body (at most 1 MiB), within `timeout`.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(
        &Request {
            method,
            url,
            headers,
            body,
        },
        timeout,
        deadline,
    )?;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = remaining(deadline).ok_or_else(|| timed_out(timeout))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| io_error(e, timeout))?;
        let n = stream.read(&mut buf).map_err(|e| io_error(e, timeout))?;
        if n == 0 || all.len() > 1024 * 1024 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let end = all
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("the connection was closed without a response")?;
    let status = parse_status(&all[..end])?;
    let Some(head_end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok((status, Vec::new()));
    };
    let head = String::from_utf8_lossy(&all[end + 2..head_end]);
    let body = &all[head_end + 4..];
    let body = if header_has_token(&head, "transfer-encoding", "chunked") {
        decode_chunked(body)?
    } else if let Some(len) = header(&head, "content-length").and_then(|v| v.parse().ok()) {
        body[..body.len().min(len)].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// The value of the first header called `name` (case-insensitive) in `head`, the
/// header lines of a response.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether any header called `name` lists `token` (comma-separated, case-insensitive).
fn header_has_token(head: &str, name: &str, token: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case(name)
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Decodes a `Transfer-Encoding: chunked` body: hex size lines (with optional
/// `;extensions`), each followed by that many bytes and CRLF, up to a zero-size chunk
/// (trailers are ignored). A body cut short is an error.
fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("the chunked body was cut short (no chunk size line)")?;
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{}` in a chunked body", line.trim()))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("the chunked body was cut short".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("a chunk in the chunked body does not end with CRLF")?;
    }
}

/// Sends `GET url` and returns the response's status code. The whole exchange (name
/// lookup excepted) is bounded by `timeout`. Only `http://` URLs are supported.
pub fn http_get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let get = Request {
        method: "GET",
        url,
        headers: &[],
        body: b"",
    };
    let mut stream = connect(&get, timeout, deadline)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            return parse_status(&head[..end]);
        }
        if head.len() > 8192 {
            return Err("the response's status line is too long".into());
        }
        let left = remaining(deadline).ok_or_else(|| timed_out(timeout))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| io_error(e, timeout))?;
        let n = stream.read(&mut buf).map_err(|e| io_error(e, timeout))?;
        if n == 0 {
            if head.is_empty() {
                return Err("the connection was closed without a response".into());
            }
            return parse_status(&head);
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// Whether an error of this module means that nothing listens at the address (the
/// connection was refused), as opposed to a server that answered badly or too late.
pub fn unreachable(error: &str) -> bool {
    error.starts_with(CONNECT_FAILED)
}

const CONNECT_FAILED: &str = "cannot connect to ";

/// What [`connect`] sends.
struct Request<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

/// Connects and sends the request; the caller reads the answer.
fn connect(req: &Request<'_>, timeout: Duration, deadline: Instant) -> Result<TcpStream, String> {
    let target = parse_url(req.url)?;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{}`: {e}", target.host))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve `{}`", target.host));
    }
    let mut last = String::from("no address to connect to");
    let mut stream = None;
    for addr in &addrs {
        let left = remaining(deadline).ok_or_else(|| timed_out(timeout))?;
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(timed_out(timeout)),
            Err(e) => last = format!("{CONNECT_FAILED}{addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    let host_header = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ferry\r\nAccept: */*\r\nConnection: close\r\n",
        req.method, target.path
    );
    for (k, v) in req.headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(format!(
                "header `{k}` cannot be sent: it contains a line break"
            ));
        }
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || req.method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    request.push_str("\r\n");
    let left = remaining(deadline).ok_or_else(|| timed_out(timeout))?;
    stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .and_then(|()| stream.write_all(req.body))
        .map_err(|e| io_error(e, timeout))?;
    Ok(stream)
}

struct Target {
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(format!(
            "`{url}`: https is not supported by the built-in HTTP client; use an http:// URL or a command probe"
        ));
    } else {
        return Err(format!("`{url}` is not an http:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
        let host = &v6[..end];
        let port = match &v6[end + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("`{url}`: bad port"))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("`{url}`: `{p}` is not a port number"))?,
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        path,
    })
}

fn parse_status(line: &[u8]) -> Result<u16, String> {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP response: `{}`", line.trim()));
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| format!("bad HTTP status line `{}`", line.trim()))
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn timed_out(timeout: Duration) -> String {
    format!("no answer within {}ms", timeout.as_millis())
}

fn io_error(e: std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => timed_out(timeout),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t =
            parse_url("http://127.0.0.1:8080/health?x=1#frag").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let t = parse_url("http://localhost").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        let t = parse_url("http://[::1]:9/x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9, "/x"));
        assert!(parse_url("https://example.com/").is_err());
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://h:notaport/").is_err());
    }

    #[test]
    fn chunked_bodies_decode() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(
            decode_chunked(body).as_deref(),
            Ok(&b"Wikipedia in \r\n\r\nchunks."[..])
        );
        assert_eq!(decode_chunked(b"0\r\n\r\n"), Ok(Vec::new()));
        assert!(decode_chunked(b"a\r\nshort").is_err());
        assert!(decode_chunked(b"zz\r\nxx\r\n0\r\n\r\n").is_err());
        assert!(decode_chunked(b"2\r\nabc\r\n0\r\n\r\n").is_err());
        assert!(decode_chunked(b"2\r\nab\r\n").is_err());
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let head =
            "Content-Type: text/plain\r\nTRANSFER-ENCODING: gzip, Chunked\r\ncontent-length: 12";
        assert!(header_has_token(head, "transfer-encoding", "chunked"));
        assert!(!header_has_token(head, "content-type", "chunked"));
        assert_eq!(header(head, "Content-Length"), Some("12"));
        assert_eq!(header(head, "x-missing"), None);
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.0 200 OK"), Ok(200));
        assert_eq!(parse_status(b"HTTP/1.1 503 Service Unavailable"), Ok(503));
        assert!(parse_status(b"SSH-2.0-OpenSSH").is_err());
    }
}
