//! What every front does with the sockets it accepts: `TCP_NODELAY`, without
//! which each small answer waits for the client's delayed ACK (about 40 ms a
//! call). Read off the server's own sockets: the test duplicates them into
//! its process (pidfd_getfd, Linux 5.6+; the server is its child) and asks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::Duration;

use crate::support::{free_port, Server};

/// `TCP_NODELAY` of the connection the server process `pid` accepted on
/// `port` from `client` (this test's end of it). Only that one: the server
/// may still hold the socket of start-up's health probe, closed but not yet
/// dropped.
fn accepted_nodelay(pid: u32, port: u16, client: &TcpStream) -> Vec<bool> {
    let client = client.local_addr().expect("the test's end of the connection");
    // SAFETY: pidfd_open(2) with a pid this test started and no flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as libc::c_int;
    assert!(pidfd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else { continue };
        if !is_socket {
            continue;
        }
        // SAFETY: pidfd_getfd(2) duplicates the server's descriptor into this process.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) } as libc::c_int;
        assert!(copy >= 0, "pidfd_getfd of the server's socket {fd}: {}", std::io::Error::last_os_error());
        // SAFETY: `copy` is a descriptor this process now owns; the stream closes it.
        let socket = unsafe { TcpStream::from_raw_fd(copy) };
        let accepted_here =
            socket.local_addr().is_ok_and(|a| a.port() == port) && socket.peer_addr().is_ok_and(|a| a == client);
        if accepted_here {
            found.push(socket.nodelay().expect("getsockopt TCP_NODELAY"));
        }
    }
    // SAFETY: closes the pidfd opened above.
    unsafe { libc::close(pidfd) };
    found
}

/// Sends `request` on a new connection and reads until `answer_starts` is
/// there: the server has accepted the connection and answered on it.
fn exchange(port: u16, request: &[u8], answer_starts: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.starts_with(answer_starts) {
        let n = stream.read(&mut buffer).expect("the server answers");
        assert!(n > 0, "the server closed the connection: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    stream
}

#[test]
fn every_front_sets_tcp_nodelay_on_the_connections_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, flight) = (free_port(), free_port());
    let server = Server::start(
        &dir.path().join("data"),
        &["--pg-port", &pg.to_string(), "--flightsql-port", &flight.to_string()],
    );

    let http = exchange(server.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200");
    assert_eq!(accepted_nodelay(server.pid(), server.http_port, &http), [true], "HTTP");

    let mut startup = 196_608u32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0anyone\0database\0default\0\0");
    let mut message = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    // AuthenticationOk: 'R', length 8, 0.
    let postgres = exchange(pg, &message, b"R\0\0\0\x08\0\0\0\0");
    assert_eq!(accepted_nodelay(server.pid(), pg, &postgres), [true], "Postgres");

    // The HTTP/2 preface and an empty SETTINGS frame; the server answers with its SETTINGS.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let _flight = exchange(flight, &preface, &[]);
    let mut settings = [0u8; 9];
    let mut stream = _flight;
    stream.read_exact(&mut settings).expect("the server's SETTINGS frame");
    assert_eq!(settings[3], 4, "a SETTINGS frame");
    assert_eq!(accepted_nodelay(server.pid(), flight, &stream), [true], "FlightSQL");
}
