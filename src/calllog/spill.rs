//! The spill file: where queued log records go when the database has been unwritable for
//! longer than memory allows, on another path than the database. Append-only: a header,
//! then records framed as `u32 length | u64 checksum | entry`. How far it has been replayed
//! is stored in the database in the same transaction as the replayed rows (`log_spill`), so
//! a crash between the two can neither lose nor repeat a record. A torn last record (a kill
//! during a write) is cut off at the next start.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::Digest;

use super::ops::Entry;

const MAGIC: &[u8; 8] = b"SIAGASP1";

pub struct Spill {
    path: PathBuf,
    db: String,
    /// Set while a file exists.
    file: Option<SpillFile>,
}

struct SpillFile {
    handle: File,
    generation: i64,
    /// Where the next unreplayed record starts.
    read: u64,
    /// Where the next record will be written.
    end: u64,
    /// Records not yet replayed.
    unread: u64,
}

/// What a spill file left by an earlier run holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Found {
    pub records: u64,
    pub max_call: Option<u64>,
}

impl Spill {
    /// The spill file for `db` in `dir`: named after the database's absolute path, so
    /// gateways with different databases can share the directory.
    pub fn path_for(dir: &Path, db: &Path) -> PathBuf {
        let abs = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        let digest = sha2::Sha256::digest(abs.to_string_lossy().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "calllog".into());
        dir.join(format!("{name}-{hex}.spill"))
    }

    /// The spill for `db` in `dir`, with no file yet.
    pub fn new(dir: &Path, db: &Path) -> Spill {
        Spill {
            path: Self::path_for(dir, db),
            db: std::path::absolute(db)
                .unwrap_or_else(|_| db.to_path_buf())
                .to_string_lossy()
                .into_owned(),
            file: None,
        }
    }

    /// Opens what an earlier run left (cutting a torn tail), or nothing.
    pub fn open(dir: &Path, db: &Path) -> anyhow::Result<(Spill, Found)> {
        let mut spill = Self::new(dir, db);
        let path = spill.path.clone();
        let handle = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((spill, Found::default()));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening spill file {}", path.display()));
            }
        };
        let mut reader = BufReader::new(&handle);
        let (generation, start) = read_header(&mut reader)
            .with_context(|| format!("spill file {} has no valid header", path.display()))?;
        let mut found = Found::default();
        let mut offset = start;
        while let Some((entry, len)) = read_record(&mut reader) {
            found.records += 1;
            found.max_call = found.max_call.max(entry.call);
            offset += len;
        }
        drop(reader);
        // Whatever follows the last whole record was being written when the process died.
        handle.set_len(offset)?;
        spill.file = Some(SpillFile {
            handle,
            generation,
            read: start,
            end: offset,
            unread: found.records,
        });
        Ok((spill, found))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn unread(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.unread)
    }

    pub fn generation(&self) -> Option<i64> {
        self.file.as_ref().map(|f| f.generation)
    }

    /// The database says this much was replayed already (kept in `log_spill`).
    pub fn skip_to(&mut self, consumed: u64) -> anyhow::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        if consumed <= f.read {
            return Ok(());
        }
        let mut reader = BufReader::new(&f.handle);
        reader.seek(SeekFrom::Start(f.read))?;
        while f.read < consumed.min(f.end) {
            let Some((_, len)) = read_record(&mut reader) else {
                break;
            };
            f.read += len;
            f.unread = f.unread.saturating_sub(1);
        }
        Ok(())
    }

    /// Appends records (the oldest in memory) after the ones already there.
    pub fn append(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        if self.file.is_none() {
            self.create()?;
        }
        let Some(f) = &mut self.file else {
            anyhow::bail!("spill file not open");
        };
        let mut buf = Vec::new();
        for e in entries {
            let mut payload = Vec::new();
            e.encode(&mut payload);
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&checksum(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
        }
        let written = (|| {
            f.handle.seek(SeekFrom::Start(f.end))?;
            f.handle.write_all(&buf)
        })();
        if let Err(e) = written {
            // Leave no partial record behind for the reader.
            let _ = f.handle.set_len(f.end);
            return Err(e).with_context(|| format!("writing spill file {}", self.path.display()));
        }
        f.end += buf.len() as u64;
        f.unread += entries.len() as u64;
        Ok(())
    }

    /// The next unreplayed records, up to `max`, and the offset after them.
    pub fn peek(&self, max: usize) -> anyhow::Result<(Vec<Entry>, u64)> {
        let Some(f) = &self.file else {
            return Ok((Vec::new(), 0));
        };
        let mut reader = BufReader::new(&f.handle);
        reader.seek(SeekFrom::Start(f.read))?;
        let mut out = Vec::new();
        let mut offset = f.read;
        while out.len() < max && offset < f.end {
            let Some((entry, len)) = read_record(&mut reader) else {
                anyhow::bail!("spill file {} unreadable at {offset}", self.path.display());
            };
            out.push(entry);
            offset += len;
        }
        Ok((out, offset))
    }

    /// Every record not yet replayed, in order, read without changing the file.
    pub fn for_each_unread(&self, mut f: impl FnMut(Entry)) -> anyhow::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut reader = BufReader::new(&file.handle);
        reader.seek(SeekFrom::Start(file.read))?;
        let mut offset = file.read;
        while offset < file.end {
            let Some((entry, len)) = read_record(&mut reader) else {
                break;
            };
            f(entry);
            offset += len;
        }
        Ok(())
    }

    /// The records of the spill file for `db` in `dir` that the database does not have yet,
    /// in order, read without changing the file (another process may be replaying it):
    /// `consumed` says how far the database has a file of that generation (`log_spill`).
    pub fn read_unreplayed(
        dir: &Path,
        db: &Path,
        consumed: impl FnOnce(i64) -> Option<u64>,
        mut f: impl FnMut(Entry),
    ) -> anyhow::Result<u64> {
        let path = Self::path_for(dir, db);
        let handle = match File::open(&path) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(e).with_context(|| format!("opening spill file {}", path.display()));
            }
        };
        let mut reader = BufReader::new(&handle);
        let (generation, start) = read_header(&mut reader)
            .with_context(|| format!("spill file {} has no valid header", path.display()))?;
        let from = consumed(generation).map_or(start, |c| c.max(start));
        reader.seek(SeekFrom::Start(from))?;
        let mut records = 0;
        while let Some((entry, _)) = read_record(&mut reader) {
            f(entry);
            records += 1;
        }
        Ok(records)
    }

    /// Records up to `offset` are in the database. A spill wholly replayed is removed.
    pub fn consumed(&mut self, offset: u64, count: usize) {
        let Some(f) = &mut self.file else { return };
        f.read = offset;
        f.unread = f.unread.saturating_sub(count as u64);
        if f.read >= f.end {
            self.file = None;
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "replayed spill file not removed");
            }
        }
    }

    /// Gives up on an unreadable file: moved aside (kept for inspection), its unread records
    /// counted as lost by the caller.
    pub fn abandon(&mut self) -> u64 {
        let lost = self.unread();
        self.file = None;
        let aside = self.path.with_extension("spill.unreadable");
        if let Err(e) = std::fs::rename(&self.path, &aside) {
            tracing::error!(path = %self.path.display(), error = %e, "unreadable spill file not moved aside");
        }
        lost
    }

    fn create(&mut self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating spill directory {}", dir.display()))?;
        }
        let generation = super::now_ms() ^ (i64::from(std::process::id()) << 40);
        let mut handle = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .with_context(|| format!("creating spill file {}", self.path.display()))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&generation.to_le_bytes());
        header.extend_from_slice(&(self.db.len() as u32).to_le_bytes());
        header.extend_from_slice(self.db.as_bytes());
        if let Err(e) = handle.write_all(&header) {
            let _ = std::fs::remove_file(&self.path);
            return Err(e).with_context(|| format!("writing spill file {}", self.path.display()));
        }
        let end = header.len() as u64;
        self.file = Some(SpillFile {
            handle,
            generation,
            read: end,
            end,
            unread: 0,
        });
        Ok(())
    }
}

fn read_header(r: &mut impl Read) -> Option<(i64, u64)> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    let mut g = [0u8; 8];
    r.read_exact(&mut g).ok()?;
    let mut n = [0u8; 4];
    r.read_exact(&mut n).ok()?;
    let n = u32::from_le_bytes(n);
    let mut db = vec![0u8; n as usize];
    r.read_exact(&mut db).ok()?;
    Some((i64::from_le_bytes(g), 20 + u64::from(n)))
}

/// One whole record and its length in the file; `None` at the end or at a torn record.
fn read_record(r: &mut impl Read) -> Option<(Entry, u64)> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?);
    let sum = u64::from_le_bytes(head[4..].try_into().ok()?);
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).ok()?;
    if checksum(&payload) != sum {
        return None;
    }
    Some((Entry::decode(&payload)?, 12 + u64::from(len)))
}

/// FNV-1a: enough to tell a torn record from a whole one.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(call: u64) -> Entry {
        let mut e = Entry {
            call: Some(call),
            ..Entry::default()
        };
        e.sql(
            "SELECT ?1",
            vec![rusqlite::types::Value::Integer(call as i64)],
        );
        e
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("siaga.db");
        let (mut spill, found) = Spill::open(dir.path(), &db).expect("open");
        assert_eq!(found.records, 0);
        spill.append(&[entry(1), entry(2)]).expect("append");
        spill.append(&[entry(3)]).expect("append");
        let path = spill.path().to_path_buf();
        drop(spill);
        // A kill in the middle of a record.
        let mut f = OpenOptions::new().append(true).open(&path).expect("file");
        f.write_all(&[40, 0, 0, 0, 1, 2]).expect("torn");
        drop(f);
        let (mut spill, found) = Spill::open(dir.path(), &db).expect("reopen");
        assert_eq!((found.records, found.max_call), (3, Some(3)));
        let (first, offset) = spill.peek(2).expect("peek");
        assert_eq!(first, vec![entry(1), entry(2)]);
        spill.consumed(offset, 2);
        spill.append(&[entry(4)]).expect("append after a reopen");
        let (rest, offset) = spill.peek(10).expect("peek");
        assert_eq!(rest, vec![entry(3), entry(4)]);
        spill.consumed(offset, 2);
        assert!(!path.exists(), "a replayed spill is removed");
    }
}
