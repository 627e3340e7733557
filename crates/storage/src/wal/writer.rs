use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{RecordBuf, SEGMENT_MAGIC, WalError, parse_segment_file_name, segment_file_name};
use crate::Observer;

/// Most frames committed with one fsync; bounds the latency of the first.
const MAX_GROUP: usize = 4096;

enum Command {
    Append {
        records: RecordBuf,
        done: oneshot::Sender<Result<(), WalError>>,
    },
    /// Closes the current segment and starts `seq + 1`.
    Rotate {
        done: oneshot::Sender<Result<u64, WalError>>,
    },
    /// Deletes every segment with a number `<= up_to`.
    Remove {
        up_to: u64,
        done: oneshot::Sender<Result<(), WalError>>,
    },
}

/// Handle to the WAL writer thread. Cloning shares the same thread.
#[derive(Clone)]
pub(crate) struct Wal {
    tx: mpsc::Sender<Command>,
}

impl Wal {
    /// Starts a writer on a fresh segment `first_seq` in `dir`.
    pub(crate) fn start(
        dir: &Path,
        first_seq: u64,
        observer: Arc<dyn Observer>,
    ) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let seg = Segment::create(dir, first_seq)?;
        let (tx, rx) = mpsc::channel();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("miru-wal".into())
            .spawn(move || run(dir, seg, rx, observer))
            .map_err(|source| WalError::Io {
                path: "thread".into(),
                source,
            })?;
        Ok(Wal { tx })
    }

    /// Queues records; the returned receiver resolves once they are fsync'd.
    /// Queue order is commit order, so callers that enqueue under a lock
    /// keep their order in the log.
    pub(crate) fn append(&self, records: RecordBuf) -> oneshot::Receiver<Result<(), WalError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Command::Append { done, .. })) =
            self.tx.send(Command::Append { records, done })
        {
            let _ = done.send(Err(stopped()));
        }
        rx
    }

    pub(crate) fn rotate(&self) -> oneshot::Receiver<Result<u64, WalError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Command::Rotate { done })) =
            self.tx.send(Command::Rotate { done })
        {
            let _ = done.send(Err(stopped()));
        }
        rx
    }

    pub(crate) fn remove_up_to(&self, up_to: u64) -> oneshot::Receiver<Result<(), WalError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Command::Remove { done, .. })) =
            self.tx.send(Command::Remove { up_to, done })
        {
            let _ = done.send(Err(stopped()));
        }
        rx
    }
}

fn stopped() -> WalError {
    WalError::Failed("the writer thread is gone".into())
}

fn io(path: &Path, source: std::io::Error) -> WalError {
    WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct Segment {
    seq: u64,
    path: PathBuf,
    file: File,
}

impl Segment {
    fn create(dir: &Path, seq: u64) -> Result<Segment, WalError> {
        let path = dir.join(segment_file_name(seq));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.write_all(SEGMENT_MAGIC).map_err(|e| io(&path, e))?;
        file.sync_all().map_err(|e| io(&path, e))?;
        // The new file name must be durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
        Ok(Segment { seq, path, file })
    }
}

fn frame(records: &RecordBuf, out: &mut Vec<u8>) {
    for (kind, payload) in &records.records {
        let mut h = crc32fast::Hasher::new();
        h.update(&[*kind]);
        h.update(payload);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.push(*kind);
        out.extend_from_slice(payload);
    }
}

fn run(dir: PathBuf, mut seg: Segment, rx: mpsc::Receiver<Command>, observer: Arc<dyn Observer>) {
    let mut failed: Option<String> = None;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut waiting = Vec::with_capacity(MAX_GROUP);
    let mut pending: Option<Command> = None;
    loop {
        let cmd = match pending.take() {
            Some(c) => c,
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        match cmd {
            Command::Append { records, done } => {
                buf.clear();
                waiting.clear();
                frame(&records, &mut buf);
                waiting.push(done);
                // Group commit: take every append already queued.
                while waiting.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Command::Append { records, done }) => {
                            frame(&records, &mut buf);
                            waiting.push(done);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = match &failed {
                    Some(f) => Err(f.clone()),
                    None => {
                        let start = Instant::now();
                        let r = seg
                            .file
                            .write_all(&buf)
                            .and_then(|_| seg.file.sync_data())
                            .map_err(|e| format!("{}: {e}", seg.path.display()));
                        observer.wal_fsync(start.elapsed().as_secs_f64(), buf.len());
                        r
                    }
                };
                if let Err(e) = &result {
                    // After a failed write the file's tail is unknown: refuse
                    // everything from now on rather than acknowledge data that
                    // replay may not find.
                    failed.get_or_insert_with(|| e.clone());
                }
                for done in waiting.drain(..) {
                    let _ = done.send(result.clone().map_err(WalError::Failed));
                }
            }
            Command::Rotate { done } => {
                let r = match &failed {
                    Some(f) => Err(WalError::Failed(f.clone())),
                    None => Segment::create(&dir, seg.seq + 1).map(|s| {
                        seg = s;
                        seg.seq
                    }),
                };
                let _ = done.send(r);
            }
            Command::Remove { up_to, done } => {
                let _ = done.send(remove_up_to(&dir, up_to.min(seg.seq.saturating_sub(1))));
            }
        }
    }
}

fn remove_up_to(dir: &Path, up_to: u64) -> Result<(), WalError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        if let Some(seq) = name.to_str().and_then(parse_segment_file_name)
            && seq <= up_to
        {
            std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
        }
    }
    Ok(())
}
