//! Run output on disk and the followers that fill it.
//!
//! Each attempt's output is a file `<data>/runs/<run uid>/attempt-<n>.log` of lines
//! `<RFC 3339 timestamp, nanoseconds> <stdout|stderr> <text>`, appended as they arrive.
//! A follower resumes from the last persisted timestamp (Docker's `since=` has whole
//! seconds, so lines up to and including that instant that are already on disk are
//! skipped), which makes a proxy cut or an operator restart lose and duplicate nothing.
//! CPU and memory samples go to `metrics.jsonl` beside the logs. With a store shared by
//! replicas, [`ship`] copies both files into it as they grow.

pub mod ship;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use crate::controller::runtime::{
    ContainerRuntime, ContainerStatus, LogStream, ResourceSample, RuntimeError,
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

/// Where a follower resumes. Docker's `since=` takes whole seconds, so the replay starts
/// at the second of the latest stored line, and every line stored from that second on is
/// skipped when it comes again: matched by timestamp, stream and text, and counted. The
/// match does not depend on where a line sits in the file, because lines are stored in
/// arrival order and stdout and stderr arrive out of timestamp order (a stderr line can
/// follow a later stdout line). Lines are remembered by a 64-bit digest: a second of a
/// loud run can hold 100,000 lines.
#[derive(Debug, Default, PartialEq)]
struct Resume {
    /// Replay from this Unix second (0: from the start).
    since: i64,
    /// Digests of the lines stored at or after `since`, with how many times each.
    stored: HashMap<u64, usize>,
}

impl Resume {
    /// Whether a replayed line is already stored (and counts it off).
    fn already_stored(&mut self, at: DateTime<Utc>, stream: LogStream, text: &str) -> bool {
        if self.stored.is_empty() {
            return false;
        }
        let digest = line_digest(at, stream, text);
        match self.stored.get_mut(&digest) {
            Some(count) => {
                *count -= 1;
                if *count == 0 {
                    self.stored.remove(&digest);
                }
                true
            }
            None => false,
        }
    }
}

fn line_digest(at: DateTime<Utc>, stream: LogStream, text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (at, stream, text).hash(&mut hasher);
    hasher.finish()
}

/// How far out of timestamp order a stored line can be, in seconds.
const ARRIVAL_SLACK_SECONDS: i64 = 1;

/// Bytes read at a time when looking at the end of a log.
const TAIL_WINDOW: u64 = 64 * 1024;

fn resume_point(path: &Path) -> std::io::Result<Resume> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let Some(latest) = latest_at(&mut file, length)? else {
        return Ok(Resume::default());
    };
    let since = latest.timestamp();
    // Step back until a line is older than that second (with slack), or to the start.
    let mut back = TAIL_WINDOW;
    let start = loop {
        let offset = length.saturating_sub(back);
        if offset == 0 {
            break 0;
        }
        match first_line_at(&mut file, offset)? {
            Some(at) if at.timestamp() < since - ARRIVAL_SLACK_SECONDS => break offset,
            _ => back *= 2,
        }
    };
    // Then read forward, remembering the lines of that second and later.
    file.seek(SeekFrom::Start(start))?;
    let mut reader = std::io::BufReader::new(file);
    let mut stored = HashMap::new();
    let mut line = Vec::new();
    let mut first = start > 0;
    loop {
        line.clear();
        if std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? == 0 {
            break;
        }
        if std::mem::take(&mut first) {
            continue; // probably cut in the middle
        }
        let text = String::from_utf8_lossy(&line);
        if let Some(parsed) = LogLine::parse(text.trim_end_matches('\n'))
            && parsed.at.timestamp() >= since
        {
            *stored
                .entry(line_digest(parsed.at, parsed.stream, &parsed.text))
                .or_insert(0) += 1;
        }
    }
    Ok(Resume { since, stored })
}

/// The latest timestamp among the last lines of a log, if it has any.
fn latest_at(file: &mut std::fs::File, length: u64) -> std::io::Result<Option<DateTime<Utc>>> {
    let mut window = TAIL_WINDOW;
    loop {
        let start = length.saturating_sub(window);
        let tail = read_at(file, start, window)?;
        let mut lines: Vec<&str> = tail.lines().collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // probably cut in the middle
        }
        let latest = lines
            .iter()
            .filter_map(|l| LogLine::parse(l))
            .map(|l| l.at)
            .max();
        if latest.is_some() || start == 0 {
            return Ok(latest);
        }
        window *= 4;
    }
}

/// The timestamp of the first whole line after `offset`.
fn first_line_at(file: &mut std::fs::File, offset: u64) -> std::io::Result<Option<DateTime<Utc>>> {
    let text = read_at(file, offset, TAIL_WINDOW)?;
    Ok(text
        .split('\n')
        .skip(1)
        .find_map(LogLine::parse)
        .map(|l| l.at))
}

fn read_at(file: &mut std::fs::File, offset: u64, length: u64) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    Read::by_ref(file).take(length).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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

/// Copies a container's output into `path` until the container has exited and all of
/// its output is stored. Reconnects (from the last stored timestamp) when the stream is
/// cut while the container still runs.
///
/// `rotates_at` is the size at which Docker rotates the container's log file (json-file
/// `max-size`; 0 when unknown). A follow stream can miss output across a rotation, so
/// after an exit the log is read once more from the last stored line, unless the stream
/// followed the attempt from its start, uncut, and carried less than that.
///
/// With `max_bytes`, the stored log ends at that size: the line that would pass it is
/// replaced by [`TRUNCATED_MARK`] and the rest of the output is read and dropped.
pub async fn follow_attempt<R: ContainerRuntime>(
    runtime: &R,
    container: &str,
    path: &Path,
    filter: Option<&LineFilter>,
    files: &RunFiles,
    rotates_at: u64,
    max_bytes: Option<u64>,
) -> Result<(), RuntimeError> {
    let io_error = |e: std::io::Error| {
        RuntimeError::Unavailable(format!("cannot write {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir(dir).map_err(io_error)?;
    }
    let mut failures = 0u32;
    let mut final_pass = false;
    // The size of Docker's log file, estimated from what the stream carried (`None`
    // once it is unknown: the stream resumed or was cut).
    let mut docker_log_bytes = Some(0u64);
    loop {
        let mut resume = resume_point(path).map_err(io_error)?;
        if resume.since != 0 {
            docker_log_bytes = None;
        }
        // A log at its cap already ends with the mark (written before a resume).
        let mut stored = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut capped = max_bytes.is_some_and(|max| stored >= max);
        let mut file = std::io::BufWriter::with_capacity(
            256 * 1024,
            crate::private_fs::append(path).map_err(io_error)?,
        );
        let mut stream = runtime.logs(container, resume.since).ready_chunks(BATCH);
        let mut cut = None;
        'stream: while let Some(batch) = stream.next().await {
            for item in batch {
                let chunk = match item {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        cut = Some(e);
                        break 'stream;
                    }
                };
                let text = String::from_utf8_lossy(&chunk.bytes);
                for raw in text.split_inclusive('\n') {
                    let raw = raw.strip_suffix('\n').unwrap_or(raw);
                    let raw = raw.strip_suffix('\r').unwrap_or(raw);
                    let (stamp, message) = raw.split_once(' ').unwrap_or((raw, ""));
                    // Docker's stamps are already in the stored form; they are parsed
                    // only when they are not, or to skip what a resume finds stored.
                    let stored_form = is_stored_form(stamp);
                    let at = if stored_form && resume.stored.is_empty() {
                        None
                    } else {
                        match DateTime::parse_from_rfc3339(stamp) {
                            Ok(at) => Some(at.with_timezone(&Utc)),
                            Err(_) => continue,
                        }
                    };
                    if let Some(total) = docker_log_bytes.as_mut() {
                        *total += json_file_bytes(message);
                    }
                    let text = match filter {
                        Some(filter) => std::borrow::Cow::Owned(filter(message)),
                        None => std::borrow::Cow::Borrowed(message),
                    };
                    if let Some(at) = at
                        && resume.already_stored(at, chunk.stream, &text)
                    {
                        continue;
                    }
                    let stamp = match at.filter(|_| !stored_form) {
                        Some(at) => {
                            std::borrow::Cow::Owned(at.to_rfc3339_opts(SecondsFormat::Nanos, true))
                        }
                        None => std::borrow::Cow::Borrowed(stamp),
                    };
                    if let Some(max) = max_bytes {
                        if capped {
                            continue;
                        }
                        let length = (stamp.len() + text.len() + 10) as u64;
                        if stored + length > max {
                            capped = true;
                            let mark = format!(
                                "{TRUNCATED_MARK} {max} bytes (--log-max-size); later lines were not stored"
                            );
                            write_line(&mut file, &stamp, LogStream::Stderr, &mark)
                                .map_err(io_error)?;
                            continue;
                        }
                        stored += length;
                    }
                    write_line(&mut file, &stamp, chunk.stream, &text).map_err(io_error)?;
                }
            }
            file.flush().map_err(io_error)?;
            files.announce_output();
            tokio::time::sleep(PACE).await;
        }
        file.flush().map_err(io_error)?;
        drop(file);
        if cut.is_some() {
            docker_log_bytes = None;
        }
        if final_pass && cut.is_none() {
            return Ok(());
        }
        if cut.is_none() {
            // The stream ended: the container has most likely exited, and its `die`
            // event tells so without waiting on Docker's clean-up (see `inspect`).
            runtime.await_exit(container, EXIT_EVENT_WAIT).await;
        }
        match runtime.inspect(container).await {
            Ok(Some(state)) if state.status == ContainerStatus::Running => {}
            // Exited: all of the output came, unless Docker may have rotated its file.
            Ok(Some(_)) if docker_log_bytes.is_some_and(|b| b < rotates_at) => return Ok(()),
            // Read once more from the last stored line: the complete log is readable
            // once the container has stopped.
            Ok(Some(_)) => {
                final_pass = true;
                continue;
            }
            Ok(None) => return Ok(()),
            Err(e) => cut = Some(e),
        }
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
fn json_file_bytes(text: &str) -> u64 {
    let escaped = text
        .bytes()
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
                json_file_bytes(text) >= with_newline,
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

    #[test]
    fn resume_point_holds_the_lines_of_the_last_second_in_any_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        assert_eq!(
            resume_point(&path).expect("missing is fine"),
            Resume::default()
        );
        // stderr's line arrived (and was stored) after a later-stamped stdout line.
        std::fs::write(
            &path,
            "2026-01-01T00:00:01.000000000Z stdout a\n\
             2026-01-01T00:00:02.000000000Z stdout b\n\
             2026-01-01T00:00:02.500000000Z stdout done\n\
             2026-01-01T00:00:02.400000000Z stderr late\n\
             2026-01-01T00:00:02.000000000Z stdout b\n",
        )
        .expect("write");
        let mut resume = resume_point(&path).expect("read");
        assert_eq!(resume.since, 1_767_225_602);
        assert_eq!(resume.stored.len(), 3);
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .expect("instant")
                .with_timezone(&Utc)
        };
        // The replay from that second: each stored line is skipped as often as stored.
        assert!(resume.already_stored(at("2026-01-01T00:00:02Z"), LogStream::Stdout, "b"));
        assert!(resume.already_stored(at("2026-01-01T00:00:02.4Z"), LogStream::Stderr, "late"));
        assert!(resume.already_stored(at("2026-01-01T00:00:02.5Z"), LogStream::Stdout, "done"));
        assert!(resume.already_stored(at("2026-01-01T00:00:02Z"), LogStream::Stdout, "b"));
        assert!(!resume.already_stored(at("2026-01-01T00:00:02Z"), LogStream::Stdout, "b"));
        assert!(!resume.already_stored(at("2026-01-01T00:00:02.6Z"), LogStream::Stdout, "new"));
    }

    #[test]
    fn resume_point_reaches_back_over_a_loud_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("loud.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("2026-01-01T00:00:01.{i:09}Z stdout early {i}\n"));
        }
        // 20,000 lines (about 1 MB) in the last second: far more than one tail window.
        for i in 0..20_000 {
            text.push_str(&format!("2026-01-01T00:00:03.{i:09}Z stdout loud {i}\n"));
        }
        std::fs::write(&path, text).expect("write");
        let resume = resume_point(&path).expect("read");
        assert_eq!(resume.since, 1_767_225_603);
        assert_eq!(resume.stored.values().sum::<usize>(), 20_000);
    }
}
