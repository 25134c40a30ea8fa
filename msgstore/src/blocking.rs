//! A simple blocking executor for `FileOp`s over `std::fs`, for tests, examples and benchmarks
//! until the engine runs them on io_uring. No O_DIRECT and no real fallocate (std has neither):
//! `Preallocate` extends the file with `set_len`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::io::{FileHandle, FileOp, IoDone, IoError, IoResult};
use crate::store::{Event, Store};

/// Runs file operations synchronously in one directory.
#[derive(Debug)]
pub struct StdExecutor {
    dir: PathBuf,
    files: HashMap<FileHandle, File>,
}

fn map_err(e: std::io::Error) -> IoError {
    match e.kind() {
        ErrorKind::NotFound => IoError::NotFound,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => IoError::NoSpace,
        _ => IoError::Os(e.raw_os_error().unwrap_or(-1)),
    }
}

impl StdExecutor {
    /// An executor for `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            files: HashMap::new(),
        })
    }

    fn file(&self, h: FileHandle) -> Result<&File, IoError> {
        self.files.get(&h).ok_or(IoError::Os(9))
    }

    /// Carries out one operation.
    pub fn execute(&mut self, op: FileOp) -> IoResult {
        match op {
            FileOp::Open {
                handle,
                name,
                create,
            } => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .truncate(false)
                    .open(self.dir.join(name));
                self.files.insert(handle, f.map_err(map_err)?);
                Ok(IoDone::Unit)
            }
            FileOp::Close { handle } => {
                self.files.remove(&handle);
                Ok(IoDone::Unit)
            }
            FileOp::Write {
                handle,
                offset,
                data,
            } => {
                self.file(handle)?
                    .write_all_at(&data, offset)
                    .map_err(map_err)?;
                Ok(IoDone::Written(data))
            }
            FileOp::WriteDurable {
                handle,
                offset,
                data,
            } => {
                let f = self.file(handle)?;
                f.write_all_at(&data, offset).map_err(map_err)?;
                f.sync_data().map_err(map_err)?;
                Ok(IoDone::Written(data))
            }
            FileOp::Read {
                handle,
                offset,
                len,
            } => {
                let f = self.file(handle)?;
                let mut buf = vec![0; len];
                let mut got = 0;
                while got < len {
                    match f.read_at(buf.get_mut(got..).unwrap_or_default(), offset + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(map_err(e)),
                    }
                }
                buf.truncate(got);
                Ok(IoDone::Data(buf))
            }
            FileOp::Fdatasync { handle } => {
                self.file(handle)?.sync_data().map_err(map_err)?;
                Ok(IoDone::Unit)
            }
            FileOp::Truncate { handle, len } => {
                self.file(handle)?.set_len(len).map_err(map_err)?;
                Ok(IoDone::Unit)
            }
            FileOp::Preallocate { handle, len } => {
                let f = self.file(handle)?;
                if f.metadata().map_err(map_err)?.len() < len {
                    f.set_len(len).map_err(map_err)?;
                }
                Ok(IoDone::Unit)
            }
            FileOp::Rename { from, to } => {
                std::fs::rename(self.dir.join(from), self.dir.join(to)).map_err(map_err)?;
                Ok(IoDone::Unit)
            }
            FileOp::Remove { name } => {
                std::fs::remove_file(self.dir.join(name)).map_err(map_err)?;
                Ok(IoDone::Unit)
            }
            FileOp::SyncDir => {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(map_err)?;
                Ok(IoDone::Unit)
            }
            FileOp::ListDir => {
                let mut names = Vec::new();
                for e in std::fs::read_dir(&self.dir).map_err(map_err)? {
                    if let Some(n) = e.map_err(map_err)?.file_name().to_str() {
                        names.push(n.to_owned());
                    }
                }
                Ok(IoDone::Names(names))
            }
        }
    }

    /// Runs every request the store has, then ends the turn; returns the events produced.
    pub fn run_turn(&mut self, store: &mut Store, events: &mut Vec<Event>) {
        while let Some(req) = store.poll_io() {
            let res = self.execute(req.op);
            store.complete_io(req.id, res);
        }
        store.end_of_turn();
        while let Some(req) = store.poll_io() {
            let res = self.execute(req.op);
            store.complete_io(req.id, res);
        }
        while let Some(e) = store.poll_event() {
            events.push(e);
        }
    }
}
