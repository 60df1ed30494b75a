//! Run output on disk and the followers that fill it.
//!
//! Each attempt's output is a file `<data>/runs/<run uid>/attempt-<n>.log` of lines
//! `<RFC 3339 timestamp, nanoseconds> <stdout|stderr> <text>`, appended as they arrive.
//! A follower attached to the container before its start reads the output as the
//! process writes it, stamped when it arrives; one that starts later (an operator
//! restart) or picks up after a cut reads Docker's log from its start, stamped by
//! Docker, and skips as many lines of each stream as are stored ([`Lines`] splits both
//! sources alike), which makes a proxy cut or an operator restart lose and duplicate
//! nothing.
//! CPU and memory samples go to `metrics.jsonl` beside the logs. With a store shared by
//! replicas, [`ship`] copies both files into it as they grow.

pub mod ship;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use crate::controller::runtime::{
    ContainerRuntime, ContainerStatus, LogStream, OutputStream, ResourceSample, RuntimeError,
};

/// Rewrites a line before it is stored (secret redaction); identity when absent.
pub type LineFilter = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Layout of run data under the data dir, and a signal of new output for live readers.
#[derive(Clone, Debug)]
pub struct RunFiles {
    root: PathBuf,
    written: Arc<tokio::sync::watch::Sender<u64>>,
}

impl RunFiles {
    /// Run data under `<data_dir>/runs`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("runs"),
            written: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Tells live readers that some log grew.
    pub fn announce_output(&self) {
        self.written
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver that changes whenever some log grew (readers then re-read their file).
    pub fn output_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Directory of one run.
    pub fn run_dir(&self, run_uid: &str) -> PathBuf {
        self.root.join(run_uid)
    }

    /// Log file of one attempt.
    pub fn attempt_log(&self, run_uid: &str, attempt: u32) -> PathBuf {
        self.run_dir(run_uid).join(format!("attempt-{attempt}.log"))
    }

    /// Resource samples of a run.
    pub fn metrics(&self, run_uid: &str) -> PathBuf {
        self.run_dir(run_uid).join("metrics.jsonl")
    }

    /// The name a file of run data has in the store, `(run uid, file name)`, for
    /// [`ship`] and the readers of shipped output; `None` for a path outside the run data.
    pub fn output_key(&self, path: &Path) -> Option<(String, String)> {
        use std::path::Component;
        let mut parts = path.strip_prefix(&self.root).ok()?.components();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Component::Normal(run)), Some(Component::Normal(file)), None) => {
                Some((run.to_str()?.to_owned(), file.to_str()?.to_owned()))
            }
            _ => None,
        }
    }

    /// Deletes everything stored for a run.
    pub fn delete_run(&self, run_uid: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.run_dir(run_uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// One stored line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When Docker received it.
    pub at: DateTime<Utc>,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The text, without the newline.
    pub text: String,
}

impl LogLine {
    /// Parses one stored line.
    pub fn parse(line: &str) -> Option<LogLine> {
        let (at, rest) = line.split_once(' ')?;
        let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(LogLine {
            at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
            stream: match stream {
                "stdout" => LogStream::Stdout,
                "stderr" => LogStream::Stderr,
                _ => return None,
            },
            text: text.to_owned(),
        })
    }

    /// The stored form, without the newline.
    pub fn render(&self) -> String {
        format!(
            "{} {} {}",
            self.at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            self.stream.as_str(),
            self.text
        )
    }
}

/// Where a follower resumes: what the log holds. Docker's log is read again from its
/// start and as many lines of each stream as are stored are skipped. A count, because
/// lines stored from an attached stream carry the operator's clock and Docker's log
/// its own, and Docker's `since=` has whole seconds; exact, because [`Lines`] cuts both
/// sources' bytes into the same lines.
#[derive(Debug, Default, PartialEq)]
struct Resume {
    /// Lines stored of each stream ([`stream_index`]).
    lines: [u64; 2],
    /// The last stored line of each stream, to check that the replay lines up.
    last: [Option<String>; 2],
    /// Bytes stored.
    bytes: u64,
    /// Whether the log ends with [`TRUNCATED_MARK`].
    capped: bool,
}

impl Resume {
    /// Whether nothing is stored.
    fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

fn stream_index(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

fn resume_point(path: &Path) -> std::io::Result<Resume> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut resume = Resume::default();
    let mut last: [Vec<u8>; 2] = Default::default();
    let mut line = Vec::new();
    let mut marked = false;
    loop {
        line.clear();
        let length = std::io::BufRead::read_until(&mut reader, b'\n', &mut line)?;
        // A last line without its newline (a write cut by a crash) is read again.
        let Some(body) = line.strip_suffix(b"\n") else {
            break;
        };
        resume.bytes += length as u64;
        let mut parts = body.splitn(3, |b| *b == b' ');
        let _stamp = parts.next();
        let index = match parts.next() {
            Some(b"stdout") => 0,
            Some(b"stderr") => 1,
            _ => continue,
        };
        let text = parts.next().unwrap_or_default();
        marked = index == 1 && text.starts_with(TRUNCATED_MARK.as_bytes());
        resume.lines[index] += 1;
        last[index].clear();
        last[index].extend_from_slice(text);
    }
    resume.capped = marked;
    for (index, text) in last.into_iter().enumerate() {
        if resume.lines[index] > 0 {
            resume.last[index] = Some(String::from_utf8_lossy(&text).into_owned());
        }
    }
    Ok(resume)
}

/// Timestamp of the first line the pipeline itself printed: uv's own progress and
/// warnings on stderr (`Installed 3 packages in 5ms`, `warning: …`) are setup, not output.
pub fn first_output_at(path: &Path) -> Option<DateTime<Utc>> {
    let file = std::fs::File::open(path).ok()?;
    let reader = std::io::BufReader::new(file);
    std::io::BufRead::lines(reader)
        .map_while(Result::ok)
        .take(10_000)
        .filter_map(|line| LogLine::parse(&line))
        .find(|line| !(line.stream == LogStream::Stderr && is_uv_setup_line(&line.text)))
        .map(|line| line.at)
}

/// Lines uv prints while preparing the environment of `uv run`.
fn is_uv_setup_line(text: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Installed ",
        "Uninstalled ",
        "Resolved ",
        "Prepared ",
        "Audited ",
        "Downloading ",
        "Downloaded ",
        "Building ",
        "Built ",
        "Using CPython",
        "Using Python",
        "Creating virtual environment",
        "warning: ",
        " + ",
        " - ",
    ];
    PREFIXES.iter().any(|p| text.starts_with(p))
}

/// Stream items handled per batch: the file is flushed, and readers woken, once per batch
/// of what Docker has already sent, not once per line (a loud run sends a frame per line).
const BATCH: usize = 4_096;

/// Pause after each batch before reading on. Docker writes a loud run's output one line at
/// a time; a reader that has caught up wakes once per line (the operator spent more CPU
/// switching tasks than storing lines, on the cores Docker needs to deliver them).
/// Pausing lets the lines pile up in the socket buffer and arrive in batches of
/// thousands. A line is read at most this much later; the first after a silence at once.
const PACE: Duration = Duration::from_millis(1);

/// How long a follower whose stream ended waits for the container's `die` event at
/// most: it comes milliseconds after the stream ends, later when Docker's clean-up
/// (network, mounts) is slow on a loaded host; without an event stream there is no wait.
const EXIT_EVENT_WAIT: Duration = Duration::from_secs(1);

/// Longest stored line: output without a newline for longer than this is stored in
/// pieces of this size, each cut where a character ends. Well below the chunks that
/// [`ship`] stores, so that those always hold whole lines.
pub const MAX_LINE: usize = 64 * 1024;

/// What a follower reads: a stream attached before the start, or Docker's log.
pub struct Follow<'a> {
    /// The log file of the attempt.
    pub path: &'a Path,
    /// Rewrites each line before it is stored (secret redaction).
    pub filter: Option<&'a LineFilter>,
    /// Told whenever the file grew.
    pub files: &'a RunFiles,
    /// Size at which Docker rotates the container's log (json-file `max-size`; 0 when
    /// unknown): a log that passed it may have lost lines from Docker's copy.
    pub rotates_at: u64,
    /// The stored log ends at this size: the line that would pass it is replaced by
    /// [`TRUNCATED_MARK`] and the rest of the output is read and dropped.
    pub max_bytes: Option<u64>,
}

/// Copies a container's output into the attempt's log until the container has exited
/// and all of its output is stored.
///
/// With `attached` (a stream attached before the container started) and nothing stored
/// yet, the output is read from it: as the process writes it, whatever Docker's log
/// costs. Otherwise, and whenever a stream is cut while the container still runs,
/// Docker's log is read from its start, skipping the lines already stored ([`Resume`]).
pub async fn follow_attempt<R: ContainerRuntime>(
    runtime: &R,
    container: &str,
    follow: &Follow<'_>,
    attached: Option<OutputStream>,
) -> Result<(), RuntimeError> {
    let path = follow.path;
    let io_error = |e: std::io::Error| {
        RuntimeError::Unavailable(format!("cannot write {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir(dir).map_err(io_error)?;
    }
    let mut attached = attached;
    let mut failures = 0u32;
    loop {
        let resume = resume_point(path).map_err(io_error)?;
        let from_start = attached.take().filter(|_| resume.is_empty());
        let stamped_here = from_start.is_some();
        let mut sink = Sink::open(follow, container, resume).map_err(io_error)?;
        let mut stream = from_start
            .unwrap_or_else(|| runtime.logs(container))
            .ready_chunks(BATCH);
        // The size of Docker's log file, estimated from what its stream carried.
        let mut docker_log_bytes = 0u64;
        let mut cut = None;
        'stream: while let Some(batch) = stream.next().await {
            let now = stamped_here.then(|| Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true));
            for item in batch {
                let chunk = match item {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        cut = Some(e);
                        break 'stream;
                    }
                };
                match &now {
                    Some(now) => sink.feed(chunk.stream, &chunk.bytes, now),
                    None => {
                        let (stamp, message) = split_stamp(&chunk.bytes);
                        docker_log_bytes += json_file_bytes(message);
                        sink.feed(chunk.stream, message, &stamp)
                    }
                }
                .map_err(io_error)?;
            }
            sink.flush().map_err(io_error)?;
            follow.files.announce_output();
            tokio::time::sleep(PACE).await;
        }
        sink.flush().map_err(io_error)?;
        if cut.is_none() {
            // The stream ended: the container has most likely exited, and its `die`
            // event tells so without waiting on Docker's clean-up (see `inspect`).
            runtime.await_exit(container, EXIT_EVENT_WAIT).await;
        }
        let complete = match runtime.inspect(container).await {
            // Cut, or the process closed its output and runs on: read Docker's log.
            Ok(Some(state)) if state.status == ContainerStatus::Running => false,
            Ok(Some(_)) => cut.is_none(),
            // Removed: nothing more can be read.
            Ok(None) => true,
            Err(e) => {
                cut = Some(e);
                false
            }
        };
        if complete {
            // A last line without a newline is complete now.
            sink.finish().map_err(io_error)?;
            follow.files.announce_output();
            if !stamped_here && follow.rotates_at > 0 && docker_log_bytes >= follow.rotates_at {
                tracing::warn!(
                    container,
                    "Docker's log of this attempt passed its rotation size ({} bytes, --container-log-max-size): lines Docker dropped while this log was read from it are missing",
                    follow.rotates_at
                );
            }
            return Ok(());
        }
        drop(sink);
        if let Some(error) = cut {
            failures += 1;
            tracing::warn!(
                container,
                code = error.code(),
                "log stream cut, resuming: {error}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
    }
}

/// A frame of Docker's log, `<timestamp> <text>`, as the stored timestamp and the text
/// (a line with its newline, or a piece of a long one without).
fn split_stamp(frame: &[u8]) -> (std::borrow::Cow<'_, str>, &[u8]) {
    let (stamp, message) = match frame.iter().position(|b| *b == b' ') {
        Some(space) => (&frame[..space], &frame[space + 1..]),
        None => (&frame[..0], frame),
    };
    let stamp = std::str::from_utf8(stamp).unwrap_or_default();
    // Docker's stamps are already in the stored form; others are rendered.
    if is_stored_form(stamp) {
        return (std::borrow::Cow::Borrowed(stamp), message);
    }
    let at = DateTime::parse_from_rfc3339(stamp)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    (
        std::borrow::Cow::Owned(at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        message,
    )
}

/// The lines of each output stream, from its bytes in pieces of any size: a line ends at
/// a newline or where it would pass [`MAX_LINE`] bytes, so the
/// same bytes make the same lines whether they came attached or from Docker's log, which
/// splits long lines at 16 KiB. A line is stamped with the time its first byte came.
struct Lines {
    /// Each stream's line so far, and when it began.
    pending: [Vec<u8>; 2],
    began: [String; 2],
}

impl Lines {
    fn new() -> Self {
        Self {
            pending: Default::default(),
            began: Default::default(),
        }
    }

    /// Cuts `bytes` of `stream`, which came at `at`, into lines for `line`.
    fn feed(
        &mut self,
        stream: LogStream,
        mut bytes: &[u8],
        at: &str,
        mut line: impl FnMut(LogStream, &[u8], &str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let i = stream_index(stream);
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending[i].len();
            let look = &bytes[..bytes.len().min(room + 1)];
            if let Some(end) = look.iter().position(|b| *b == b'\n') {
                if self.pending[i].is_empty() {
                    line(stream, &bytes[..end], at)?;
                } else {
                    let mut whole = std::mem::take(&mut self.pending[i]);
                    whole.extend_from_slice(&bytes[..end]);
                    line(stream, &whole, &self.began[i])?;
                    whole.clear();
                    self.pending[i] = whole;
                }
                bytes = &bytes[end + 1..];
                continue;
            }
            if self.pending[i].is_empty() {
                at.clone_into(&mut self.began[i]);
            }
            if bytes.len() <= room {
                self.pending[i].extend_from_slice(bytes);
                break;
            }
            // More than MAX_LINE bytes without a newline.
            self.pending[i].extend_from_slice(&bytes[..room]);
            bytes = &bytes[room..];
            let end = char_boundary(&self.pending[i]);
            let rest = self.pending[i].split_off(end);
            let full = std::mem::replace(&mut self.pending[i], rest);
            line(stream, &full, &self.began[i])?;
            at.clone_into(&mut self.began[i]);
        }
        Ok(())
    }

    /// The lines begun and not ended (the output is over).
    fn rest(&mut self) -> Vec<(LogStream, Vec<u8>, String)> {
        [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let i = stream_index(stream);
                let text = std::mem::take(&mut self.pending[i]);
                (!text.is_empty()).then(|| (stream, text, std::mem::take(&mut self.began[i])))
            })
            .collect()
    }
}

/// Where the last whole character of `bytes` ends (UTF-8; other bytes end anywhere).
fn char_boundary(bytes: &[u8]) -> usize {
    let length = bytes.len();
    for back in 1..=length.min(3) {
        let byte = bytes[length - back];
        if byte & 0xC0 != 0x80 {
            let width = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if width > back { length - back } else { length };
        }
    }
    length
}

/// The attempt's log file as lines are stored into it: skipping what a resume found
/// stored, redacting, and ending at the size limit.
struct Sink<'a> {
    file: std::io::BufWriter<std::fs::File>,
    lines: Lines,
    filter: Option<&'a LineFilter>,
    max_bytes: Option<u64>,
    stored: u64,
    capped: bool,
    /// Lines of each stream still to skip, and the last of them as stored.
    skip: [u64; 2],
    last: [Option<String>; 2],
    container: &'a str,
}

impl<'a> Sink<'a> {
    fn open(follow: &Follow<'a>, container: &'a str, resume: Resume) -> std::io::Result<Self> {
        let file = crate::private_fs::append(follow.path)?;
        if file.metadata()?.len() > resume.bytes {
            file.set_len(resume.bytes)?;
        }
        let file = std::io::BufWriter::with_capacity(256 * 1024, file);
        Ok(Self {
            file,
            lines: Lines::new(),
            filter: follow.filter,
            max_bytes: follow.max_bytes,
            stored: resume.bytes,
            capped: resume.capped || follow.max_bytes.is_some_and(|max| resume.bytes >= max),
            skip: resume.lines,
            last: resume.last,
            container,
        })
    }

    fn feed(&mut self, stream: LogStream, bytes: &[u8], at: &str) -> std::io::Result<()> {
        let mut lines = std::mem::replace(&mut self.lines, Lines::new());
        let fed = lines.feed(stream, bytes, at, |stream, text, at| {
            self.line(stream, text, at)
        });
        self.lines = lines;
        fed
    }

    fn line(&mut self, stream: LogStream, bytes: &[u8], at: &str) -> std::io::Result<()> {
        let i = stream_index(stream);
        if self.skip[i] > 1 {
            self.skip[i] -= 1;
            return Ok(());
        }
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let raw = String::from_utf8_lossy(bytes);
        let text = match self.filter {
            Some(filter) => std::borrow::Cow::Owned(filter(&raw)),
            None => raw,
        };
        if self.skip[i] == 1 {
            self.skip[i] = 0;
            // The last stored line of the stream: the replay lines up when it is the same.
            if self.last[i].as_deref() != Some(text.as_ref()) && !self.capped {
                tracing::warn!(
                    container = self.container,
                    stream = stream.as_str(),
                    "Docker's log does not line up with the stored one (it lost its beginning past --container-log-max-size?): lines may be missing or repeated around this resume"
                );
            }
            return Ok(());
        }
        if let Some(max) = self.max_bytes {
            if self.capped {
                return Ok(());
            }
            let length = (at.len() + text.len() + 9) as u64;
            if self.stored + length > max {
                self.capped = true;
                let mark = format!(
                    "{TRUNCATED_MARK} {max} bytes (--log-max-size); later lines were not stored"
                );
                return write_line(&mut self.file, at, LogStream::Stderr, &mark);
            }
            self.stored += length;
        }
        write_line(&mut self.file, at, stream, &text)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// Stores the lines without a newline at the end of the output, and flushes.
    fn finish(&mut self) -> std::io::Result<()> {
        for (stream, text, at) in self.lines.rest() {
            self.line(stream, &text, &at)?;
        }
        self.flush()
    }
}

/// How the line that ends a truncated log begins.
pub const TRUNCATED_MARK: &str = "[flotilla] log truncated: this attempt's stored log reached";

/// Appends one stored line (the form of [`LogLine::render`]) without formatting machinery:
/// a loud run stores 100,000 lines a second.
fn write_line(
    out: &mut impl Write,
    stamp: &str,
    stream: LogStream,
    text: &str,
) -> std::io::Result<()> {
    out.write_all(stamp.as_bytes())?;
    out.write_all(b" ")?;
    out.write_all(stream.as_str().as_bytes())?;
    out.write_all(b" ")?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")
}

/// Whether a timestamp is exactly what [`LogLine::render`] writes: RFC 3339 in UTC with
/// nine fractional digits, as Docker sends them (`2026-11-30T20:28:20.025999378Z`).
fn is_stored_form(stamp: &str) -> bool {
    let b = stamp.as_bytes();
    b.len() == 30
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            29 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// At least the bytes one line takes in Docker's json-file log: the text JSON-escaped
/// (at most six bytes per byte: `\u003c`; Docker escapes `<`, `>` and `&` too, and each
/// invalid UTF-8 byte becomes `\ufffd`) and the stream name, timestamp and punctuation
/// around it (under 100 bytes).
fn json_file_bytes(text: &[u8]) -> u64 {
    let escaped = text
        .iter()
        .map(|b| match b {
            0..=0x1f | b'"' | b'\\' | b'<' | b'>' | b'&' => 6,
            0x80.. => 2,
            _ => 1,
        })
        .sum::<u64>();
    escaped + 100
}

/// Appends CPU/memory samples of a running container every `every` until it stops.
pub async fn sample_attempt<R: ContainerRuntime>(
    runtime: &R,
    container: &str,
    path: &Path,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match runtime.sample(container).await {
            Ok(Some(sample)) => {
                if let Err(e) = append_sample(path, &sample) {
                    tracing::warn!(container, "cannot store a resource sample: {e}");
                }
            }
            Ok(None) => return,
            Err(e) => tracing::debug!(container, "no resource sample: {e}"),
        }
        if !matches!(runtime.inspect(container).await, Ok(Some(s)) if s.status == ContainerStatus::Running)
        {
            return;
        }
    }
}

fn append_sample(path: &Path, sample: &ResourceSample) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir(dir)?;
    }
    let mut file = crate::private_fs::append(path)?;
    let line = serde_json::to_string(sample).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")
}

/// Reads the stored samples of a run.
pub fn read_samples(path: &Path) -> Vec<ResourceSample> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_ends_at_the_pipelines_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:01.000000000Z stderr Installed 1 package in 6ms\n\
             2026-01-01T00:00:01.100000000Z stderr warning: Requirements file is empty\n\
             2026-01-01T00:00:02.000000000Z stdout hello\n",
        )
        .expect("write");
        assert_eq!(
            first_output_at(&path).map(|t| t.timestamp()),
            Some(1_767_225_602)
        );
    }

    #[test]
    fn dockers_stamps_are_stored_as_they_come_and_others_rendered() {
        let docker = "2026-11-30T20:28:20.025999378Z";
        assert!(is_stored_form(docker));
        let parsed = DateTime::parse_from_rfc3339(docker)
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(parsed.to_rfc3339_opts(SecondsFormat::Nanos, true), docker);
        for other in [
            "2026-11-30T20:28:20.025Z",
            "2026-11-30T20:28:20.025999378+01:00",
            "2026-11-30 20:28:20.025999378Z",
            "2026-11-30T20:28:20.02599937xZ",
        ] {
            assert!(!is_stored_form(other), "{other}");
        }
    }

    #[test]
    fn json_file_size_is_never_underestimated() {
        // Docker's json-file line for text T: {"log":"T\n","stream":"stdout","time":"…"}
        for text in ["", "hello", "<&>\"\\", "\u{1}\u{2}", "caf\u{e9} \u{fffd}"] {
            let escaped = serde_json::to_string(&format!("{text}\n")).expect("json");
            let html_safe = escaped
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            let line = format!(
                r#"{{"log":{html_safe},"stream":"stdout","time":"2026-11-30T20:28:20.025999378Z"}}"#
            );
            let with_newline = line.len() as u64 + 1;
            assert!(
                json_file_bytes(text.as_bytes()) >= with_newline,
                "{text:?}: {with_newline}"
            );
        }
    }

    #[test]
    fn lines_round_trip() {
        let line = "2026-11-22T10:36:53.699302123Z stderr boom: it failed";
        let parsed = LogLine::parse(line).expect("valid");
        assert_eq!(parsed.stream, LogStream::Stderr);
        assert_eq!(parsed.text, "boom: it failed");
        assert_eq!(parsed.render(), line);
        let empty = LogLine::parse("2026-11-22T10:36:53.000000000Z stdout ").expect("valid");
        assert_eq!(empty.text, "");
    }

    /// The lines `Lines` makes of `pieces` (stream, bytes), then of what is left.
    fn lines_of(pieces: &[(LogStream, &[u8])]) -> Vec<(LogStream, String)> {
        let mut lines = Lines::new();
        let mut out = Vec::new();
        for (stream, bytes) in pieces {
            lines
                .feed(*stream, bytes, "t", |stream, text, _| {
                    out.push((stream, String::from_utf8_lossy(text).into_owned()));
                    Ok(())
                })
                .expect("feed");
        }
        for (stream, text, _) in lines.rest() {
            out.push((stream, String::from_utf8_lossy(&text).into_owned()));
        }
        out
    }

    #[test]
    fn the_same_bytes_make_the_same_lines_however_they_are_cut() {
        // Output as a process writes it: a long line (Docker's log splits it at 16 KiB),
        // multi-byte characters, both streams, a carriage return, no final newline.
        let long = "é".repeat(MAX_LINE); // 2 bytes each: two full lines and a rest
        let stdout = format!("first\r\n{long}\nmiddle\n\nlast without newline");
        let stderr = "warning: a\nwarning: b\n".to_owned();
        let whole = lines_of(&[
            (LogStream::Stdout, stdout.as_bytes()),
            (LogStream::Stderr, stderr.as_bytes()),
        ]);
        for size in [1, 7, 4096, 16 * 1024, 32 * 1024 + 5] {
            let mut pieces = Vec::new();
            for (out, err) in stdout.as_bytes().chunks(size).zip(
                stderr
                    .as_bytes()
                    .chunks(size)
                    .chain(std::iter::repeat(&[][..])),
            ) {
                pieces.push((LogStream::Stdout, out));
                pieces.push((LogStream::Stderr, err));
            }
            let cut = lines_of(&pieces);
            let stdout_lines = |lines: &[(LogStream, String)]| {
                lines
                    .iter()
                    .filter(|(s, _)| *s == LogStream::Stdout)
                    .map(|(_, t)| t.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(stdout_lines(&cut), stdout_lines(&whole), "pieces of {size}");
            assert_eq!(cut.len(), whole.len(), "pieces of {size}");
        }
        let texts: Vec<&str> = whole.iter().map(|(_, t)| t.as_str()).collect();
        // Cut at MAX_LINE where a character ends: no replacement characters.
        assert_eq!(
            texts[0], "first\r",
            "dropped when stored (Sink::line), not here"
        );
        assert_eq!(texts[1].len(), MAX_LINE);
        assert_eq!(texts[2].len(), MAX_LINE);
        assert_eq!(format!("{}{}", texts[1], texts[2]), long);
        assert_eq!(&texts[3..5], ["middle", ""]);
        assert_eq!(&texts[5..7], ["warning: a", "warning: b"]);
        assert_eq!(
            &texts[7..],
            ["last without newline"],
            "stored once the output is over"
        );
    }

    #[test]
    fn a_character_is_never_cut() {
        assert_eq!(char_boundary(b"ab"), 2);
        assert_eq!(char_boundary("aé".as_bytes()), 3);
        assert_eq!(char_boundary(&"aé".as_bytes()[..2]), 1);
        assert_eq!(char_boundary(&"a€".as_bytes()[..3]), 1);
        assert_eq!(char_boundary(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(char_boundary("a😀".as_bytes()), 5);
        assert_eq!(char_boundary(&[0xff, 0xfe]), 2, "not UTF-8: cut anywhere");
    }

    #[test]
    fn a_resume_skips_the_stored_lines_of_each_stream_and_stores_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("attempt-1.log");
        let files = RunFiles::new(dir.path());
        let follow = Follow {
            path: &path,
            filter: None,
            files: &files,
            rotates_at: 0,
            max_bytes: None,
        };
        // Stored from an attached stream (operator stamps): out 1, err 1, out 2, and
        // half of "out 3" (not stored: the stream was cut within it).
        let mut sink = Sink::open(&follow, "c", Resume::default()).expect("open");
        let at = "2026-01-01T00:00:05.000000000Z";
        sink.feed(LogStream::Stdout, b"out 1\n", at).expect("feed");
        sink.feed(LogStream::Stderr, b"err 1\n", at).expect("feed");
        sink.feed(LogStream::Stdout, b"out 2\nout", at)
            .expect("feed");
        sink.flush().expect("flush");
        drop(sink);
        let resume = resume_point(&path).expect("resume");
        assert_eq!(resume.lines, [2, 1]);
        assert_eq!(resume.last, [Some("out 2".into()), Some("err 1".into())]);
        assert!(!resume.capped);
        // Docker's log from its start, in its own order and with its own stamps.
        let mut sink = Sink::open(&follow, "c", resume).expect("open");
        for (stream, frame) in [
            (LogStream::Stdout, "2026-01-01T00:00:04.900000001Z out 1\n"),
            (LogStream::Stdout, "2026-01-01T00:00:04.900000002Z out 2\n"),
            (LogStream::Stderr, "2026-01-01T00:00:04.900000003Z err 1\n"),
            (LogStream::Stdout, "2026-01-01T00:00:04.900000004Z out 3\n"),
            (LogStream::Stderr, "2026-01-01T00:00:06.000000000Z err 2\n"),
        ] {
            let (stamp, message) = split_stamp(frame.as_bytes());
            sink.feed(stream, message, &stamp).expect("feed");
        }
        sink.finish().expect("finish");
        let stored: Vec<String> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| {
                let line = LogLine::parse(l).expect("stored form");
                format!("{} {}", line.stream.as_str(), line.text)
            })
            .collect();
        assert_eq!(
            stored,
            [
                "stdout out 1",
                "stderr err 1",
                "stdout out 2",
                "stdout out 3",
                "stderr err 2"
            ]
        );
    }

    #[test]
    fn a_line_cut_by_a_crash_is_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:01.000000000Z stdout whole\n2026-01-01T00:00:01.000000000Z stdout ha",
        )
        .expect("write");
        let resume = resume_point(&path).expect("read");
        assert_eq!(resume.lines, [1, 0]);
        let files = RunFiles::new(dir.path());
        let follow = Follow {
            path: &path,
            filter: None,
            files: &files,
            rotates_at: 0,
            max_bytes: None,
        };
        let mut sink = Sink::open(&follow, "c", resume).expect("open");
        for frame in [
            "2026-01-01T00:00:01Z whole\n",
            "2026-01-01T00:00:01Z half\n",
        ] {
            let (stamp, message) = split_stamp(frame.as_bytes());
            sink.feed(LogStream::Stdout, message, &stamp).expect("feed");
        }
        sink.finish().expect("finish");
        let stored = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            stored
                .lines()
                .map(|l| LogLine::parse(l).expect("line").text)
                .collect::<Vec<_>>(),
            ["whole", "half"]
        );
    }

    #[test]
    fn a_capped_log_is_known_as_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        std::fs::write(
            &path,
            format!(
                "2026-01-01T00:00:01.000000000Z stdout a\n\
                 2026-01-01T00:00:01.000000000Z stderr {TRUNCATED_MARK} 10 bytes\n"
            ),
        )
        .expect("write");
        let resume = resume_point(&path).expect("read");
        assert!(resume.capped);
        assert_eq!(resume.lines, [1, 1]);
    }

    #[test]
    fn dockers_frames_keep_their_stamps_and_others_are_rendered() {
        let (stamp, text) = split_stamp(b"2026-11-30T20:28:20.025999378Z hello\n");
        assert_eq!(
            (stamp.as_ref(), text),
            ("2026-11-30T20:28:20.025999378Z", &b"hello\n"[..])
        );
        let (stamp, text) = split_stamp(b"2026-11-30T20:28:20.5+01:00 x");
        assert_eq!(
            (stamp.as_ref(), text),
            ("2026-11-30T19:28:20.500000000Z", &b"x"[..])
        );
    }
}
