//! One container's log stream, read in large reads by a single task.
//!
//! Docker answers `GET /containers/{id}/logs?follow=1` with one HTTP chunk per line.
//! Through bollard (hyper), every chunk passes from the connection's task to its reader
//! through a one-slot channel: two task wake-ups per line, usually on two threads. A run
//! printing 200 MB cost the operator 8–9 s of CPU that way, mostly context switches, on
//! the cores Docker itself needs to deliver the output. This reader parses the HTTP/1.1
//! answer (chunked or delimited by the connection's close) and Docker's stream framing
//! (an 8-byte header: stream, three zero bytes, big-endian length; then the payload)
//! itself, from 64 KiB reads, and hands out every frame already read without waiting.

use std::path::PathBuf;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::controller::runtime::{LogChunk, LogStream, RuntimeError};

/// Where the Docker API listens, for the requests made here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `host:port` of a plain-HTTP listener (the socket proxy).
    Tcp(String),
    /// A unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// The endpoint of `tcp://`, `http://` and `unix://` hosts; `None` for others (TLS),
    /// which bollard reads.
    pub(super) fn of(host: &str) -> Option<Endpoint> {
        if let Some(rest) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            let authority = rest.split('/').next().unwrap_or(rest);
            return (!authority.is_empty()).then(|| Endpoint::Tcp(authority.to_owned()));
        }
        host.strip_prefix("unix://")
            .filter(|path| !path.is_empty())
            .map(|path| Endpoint::Unix(PathBuf::from(path)))
    }
}

/// Bytes read from the connection at a time, at most.
const READ_SIZE: usize = 64 * 1024;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The frames of `GET <path>` (a logs request) as they arrive.
pub(super) fn follow(
    endpoint: Endpoint,
    path: String,
    target: String,
) -> BoxStream<'static, Result<LogChunk, RuntimeError>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: flotilla\r\nConnection: close\r\n\r\n"
    );
    futures::stream::once(open(endpoint, request, target, "logs"))
        .flat_map(|opened| match opened {
            Ok(reader) => frames(reader),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        })
        .boxed()
}

/// `POST <path>` (an attach request, upgraded to a raw stream as the docker CLI does):
/// resolves once Docker has answered, which it does after it has attached the
/// container's streams, to the frames of the output as they arrive.
pub(super) async fn attach(
    endpoint: Endpoint,
    path: String,
    target: String,
) -> Result<BoxStream<'static, Result<LogChunk, RuntimeError>>, RuntimeError> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: flotilla\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    );
    Ok(frames(open(endpoint, request, target, "attach").await?))
}

/// Connects, sends `request` and reads the answer's head.
async fn open(
    endpoint: Endpoint,
    request: String,
    target: String,
    operation: &'static str,
) -> Result<Reader<Box<dyn Io>>, RuntimeError> {
    let unavailable =
        |e: std::io::Error| RuntimeError::Unavailable(format!("cannot {operation} {target}: {e}"));
    let mut io: Box<dyn Io> = match &endpoint {
        Endpoint::Tcp(address) => {
            let stream = tokio::net::TcpStream::connect(address.as_str())
                .await
                .map_err(unavailable)?;
            stream.set_nodelay(true).map_err(unavailable)?;
            Box::new(stream)
        }
        Endpoint::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(unavailable)?,
        ),
    };
    io.write_all(request.as_bytes())
        .await
        .map_err(unavailable)?;
    let mut reader = Reader::new(io, target, operation);
    reader.read_head().await?;
    Ok(reader)
}

fn frames<R: AsyncRead + Unpin + Send + 'static>(
    reader: Reader<R>,
) -> BoxStream<'static, Result<LogChunk, RuntimeError>> {
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_frame().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

trait Io: AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// `Transfer-Encoding: chunked`: the next chunk-size line is due.
    ChunkSize,
    /// Inside a chunk, with this many bytes left.
    ChunkData(usize),
    /// The CRLF after a chunk's data is due.
    ChunkEnd,
    /// The body runs until the connection closes.
    UntilClose,
    /// The body is complete.
    Done,
}

/// The HTTP response and Docker's framing, decoded incrementally.
struct Reader<R> {
    io: R,
    target: String,
    /// `logs` or `attach`, for errors.
    operation: &'static str,
    /// Bytes read and not yet decoded (head, chunk framing).
    raw: BytesMut,
    /// Body bytes decoded and not yet framed.
    body: BytesMut,
    state: Body,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R, target: String, operation: &'static str) -> Self {
        Self {
            io,
            target,
            operation,
            raw: BytesMut::with_capacity(READ_SIZE),
            body: BytesMut::with_capacity(READ_SIZE),
            state: Body::UntilClose,
        }
    }

    fn cut(&self, what: &str) -> RuntimeError {
        RuntimeError::Unavailable(format!(
            "the {} stream of {} was cut: {what}",
            self.operation, self.target
        ))
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self) -> Result<bool, RuntimeError> {
        self.raw.reserve(READ_SIZE);
        match self.io.read_buf(&mut self.raw).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(self.cut(&e.to_string())),
        }
    }

    /// Reads the status line and headers; an answer other than 200 (or 101, an attach
    /// upgraded to a raw stream that runs until the connection closes) is an error with
    /// Docker's message.
    async fn read_head(&mut self) -> Result<(), RuntimeError> {
        let end = loop {
            if let Some(at) = find(&self.raw, b"\r\n\r\n") {
                break at;
            }
            if self.raw.len() > MAX_HEAD {
                return Err(self.cut("the response head is too long"));
            }
            if !self.fill().await? {
                return Err(self.cut("the connection closed before the response head"));
            }
        };
        let head = self.raw.split_to(end + 4);
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| self.cut("the response has no status line"))?;
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                self.state = Body::ChunkSize;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
        if status == 101 {
            self.state = Body::UntilClose;
            return Ok(());
        }
        if status == 200 {
            if self.state == Body::UntilClose && length.is_some() {
                // A body of known length (a stopped container's short log): read it
                // all, then it is complete.
                let length = length.unwrap_or(0);
                while self.raw.len() < length {
                    if !self.fill().await? {
                        return Err(self.cut("the connection closed within the body"));
                    }
                }
                let body = self.raw.split_to(length);
                self.body.extend_from_slice(&body);
                self.state = Body::Done;
            }
            return Ok(());
        }
        // An error: its body holds Docker's message as JSON.
        let message = match length.filter(|_| self.state == Body::UntilClose) {
            Some(length) => {
                while self.raw.len() < length.min(MAX_ERROR_BODY) && self.fill().await? {}
                self.raw.split_to(self.raw.len().min(length))
            }
            None => {
                while self.body.len() < MAX_ERROR_BODY && self.state != Body::Done {
                    if !self.decode_body()? && !self.fill().await? {
                        break;
                    }
                }
                self.body.split()
            }
        };
        let text = String::from_utf8_lossy(&message);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        Err(RuntimeError::Refused {
            operation: self.operation,
            target: self.target.clone(),
            message: format!("HTTP {status}: {message}"),
        })
    }

    /// Moves decodable body bytes from `raw` to `body`; true when it moved any.
    fn decode_body(&mut self) -> Result<bool, RuntimeError> {
        let before = self.body.len();
        loop {
            match self.state {
                Body::Done => break,
                Body::UntilClose => {
                    let all = self.raw.split();
                    self.body.extend_from_slice(&all);
                    break;
                }
                Body::ChunkSize => {
                    let Some(end) = find(&self.raw, b"\r\n") else {
                        if self.raw.len() > 1024 {
                            return Err(self.cut("a chunk-size line is too long"));
                        }
                        break;
                    };
                    let line = self.raw.split_to(end + 2);
                    let text = String::from_utf8_lossy(&line[..end]);
                    let size = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| self.cut(&format!("bad chunk size {size:?}")))?;
                    self.state = if size == 0 {
                        // The last chunk; trailers are not used by Docker.
                        Body::Done
                    } else {
                        Body::ChunkData(size)
                    };
                }
                Body::ChunkData(left) => {
                    if self.raw.is_empty() {
                        break;
                    }
                    let take = left.min(self.raw.len());
                    let data = self.raw.split_to(take);
                    self.body.extend_from_slice(&data);
                    self.state = if take == left {
                        Body::ChunkEnd
                    } else {
                        Body::ChunkData(left - take)
                    };
                }
                Body::ChunkEnd => {
                    if self.raw.len() < 2 {
                        break;
                    }
                    if &self.raw[..2] != b"\r\n" {
                        return Err(self.cut("a chunk does not end with CRLF"));
                    }
                    self.raw.advance(2);
                    self.state = Body::ChunkSize;
                }
            }
        }
        Ok(self.body.len() > before)
    }

    /// The next frame; `None` at the end of a complete response.
    async fn next_frame(&mut self) -> Result<Option<LogChunk>, RuntimeError> {
        loop {
            if self.body.len() >= 8 {
                let size =
                    u32::from_be_bytes([self.body[4], self.body[5], self.body[6], self.body[7]])
                        as usize;
                if self.body.len() >= 8 + size {
                    let stream = match self.body[0] {
                        2 => LogStream::Stderr,
                        _ => LogStream::Stdout,
                    };
                    let mut frame = self.body.split_to(8 + size);
                    frame.advance(8);
                    let bytes: Bytes = frame.freeze();
                    // stdin (0) and stdout (1) are output; Docker sends only 1 and 2 here.
                    return Ok(Some(LogChunk { stream, bytes }));
                }
            }
            if self.decode_body()? {
                continue;
            }
            if self.state == Body::Done {
                return if self.body.is_empty() {
                    Ok(None)
                } else {
                    Err(self.cut("the response ended within a frame"))
                };
            }
            if !self.fill().await? {
                return match self.state {
                    Body::UntilClose if self.body.is_empty() => Ok(None),
                    _ => Err(self.cut("the connection closed within the response")),
                };
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, text: &str) -> Vec<u8> {
        let mut out = vec![stream, 0, 0, 0];
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn chunked(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(format!("{:X}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    /// Reads `bytes` delivered `step` bytes at a time; returns the frames or the error.
    async fn read_all(
        bytes: Vec<u8>,
        step: usize,
    ) -> Result<Vec<(LogStream, String)>, RuntimeError> {
        let (client, mut server) = tokio::io::duplex(step.max(1));
        tokio::spawn(async move {
            for part in bytes.chunks(step.max(1)) {
                if server.write_all(part).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = Reader::new(client, "c".into(), "logs");
        reader.read_head().await?;
        let mut frames = Vec::new();
        while let Some(chunk) = reader.next_frame().await? {
            frames.push((
                chunk.stream,
                String::from_utf8_lossy(&chunk.bytes).into_owned(),
            ));
        }
        Ok(frames)
    }

    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn chunked_frames_split_anywhere_come_out_whole_and_in_order() {
        // Docker's way: one chunk per frame; and a frame split over two chunks.
        let a = frame(1, "2026-01-01T00:00:00.000000001Z one\n");
        let b = frame(2, "2026-01-01T00:00:00.000000002Z two\n");
        let c = frame(1, "2026-01-01T00:00:00.000000003Z three\n");
        let (c1, c2) = c.split_at(5);
        let mut bytes = HEAD.as_bytes().to_vec();
        bytes.extend(chunked(&[a, b, c1.to_vec(), c2.to_vec()]));
        let expected = vec![
            (
                LogStream::Stdout,
                "2026-01-01T00:00:00.000000001Z one\n".to_owned(),
            ),
            (
                LogStream::Stderr,
                "2026-01-01T00:00:00.000000002Z two\n".to_owned(),
            ),
            (
                LogStream::Stdout,
                "2026-01-01T00:00:00.000000003Z three\n".to_owned(),
            ),
        ];
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                read_all(bytes.clone(), step).await.expect("read"),
                expected,
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_delimited_by_close_or_length_is_read_to_its_end() {
        let body = [frame(1, "a\n"), frame(2, "b\n")].concat();
        let mut close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        close.extend(&body);
        let mut sized =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        sized.extend(&body);
        for bytes in [close, sized] {
            let frames = read_all(bytes, 3).await.expect("read");
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[1], (LogStream::Stderr, "b\n".to_owned()));
        }
    }

    #[tokio::test]
    async fn an_attach_upgraded_to_a_raw_stream_is_read_until_the_connection_closes() {
        // Docker's answer to an attach with `Upgrade: tcp`, then the raw multiplexed
        // output (frames of any size, no chunking) until the container's output ends.
        let mut bytes = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".to_vec();
        bytes.extend(frame(1, "one\ntw"));
        bytes.extend(frame(2, "oops\n"));
        bytes.extend(frame(1, "o\n"));
        for step in [1, 5, 4096] {
            assert_eq!(
                read_all(bytes.clone(), step).await.expect("read"),
                vec![
                    (LogStream::Stdout, "one\ntw".to_owned()),
                    (LogStream::Stderr, "oops\n".to_owned()),
                    (LogStream::Stdout, "o\n".to_owned()),
                ],
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn a_cut_within_the_response_is_an_error_not_an_end() {
        let mut bytes = HEAD.as_bytes().to_vec();
        let frame = frame(1, "complete\n");
        bytes.extend(format!("{:X}\r\n", frame.len()).as_bytes());
        bytes.extend(&frame[..6]);
        let error = read_all(bytes, 4).await.expect_err("cut");
        assert_eq!(error.code(), "container.runtime.unavailable");
    }

    #[tokio::test]
    async fn an_error_answer_carries_dockers_message() {
        let body = r#"{"message":"No such container: flotilla-x-1"}"#;
        let bytes = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let error = read_all(bytes.into_bytes(), 5).await.expect_err("404");
        assert_eq!(error.code(), "container.runtime.refused");
        assert!(
            error
                .to_string()
                .contains("No such container: flotilla-x-1"),
            "{error}"
        );
    }

    #[test]
    fn endpoints_of_docker_hosts() {
        assert_eq!(
            Endpoint::of("tcp://127.0.0.1:2375"),
            Some(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            Endpoint::of("http://proxy:2375/"),
            Some(Endpoint::Tcp("proxy:2375".into()))
        );
        assert_eq!(
            Endpoint::of("unix:///var/run/docker.sock"),
            Some(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(Endpoint::of("https://docker:2376"), None);
        assert_eq!(Endpoint::of("tcp://"), None);
    }
}
