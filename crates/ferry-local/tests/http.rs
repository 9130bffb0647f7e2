//! `http_get_status` against tiny servers on loopback.
#![allow(clippy::unwrap_used)]

use ferry_local::http_get_status;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

/// Answers one request with `response` and returns what it received.
fn one_shot(response: &'static str) -> (u16, thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(response.as_bytes()).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (port, h)
}

#[test]
fn reads_the_status_code() {
    let (port, h) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let code = http_get_status(
        &format!("http://127.0.0.1:{port}/health?deep=1"),
        Duration::from_secs(2),
    );
    assert_eq!(code, Ok(200));
    let req = h.join().unwrap();
    assert!(req.starts_with("GET /health?deep=1 HTTP/1.1\r\n"), "{req}");
    assert!(
        req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{req}"
    );

    let (port, h) = one_shot("HTTP/1.0 503 Service Unavailable\r\n\r\n");
    assert_eq!(
        http_get_status(&format!("http://localhost:{port}/"), Duration::from_secs(2)),
        Ok(503)
    );
    h.join().unwrap();
}

#[test]
fn refused_and_silent_servers_are_errors() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(http_get_status(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(1)).is_err());

    // Accepts (via the backlog) but never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let started = Instant::now();
    let e = http_get_status(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(e.contains("no answer within 300ms"), "{e}");
    drop(l);

    assert!(
        http_get_status("https://127.0.0.1/", Duration::from_secs(1))
            .unwrap_err()
            .contains("https")
    );
}
