//! The spill file: where queued log records go when the database has been unwritable for
//! longer than memory allows, on another path than the database. Append-only: a header,
//! then records framed as `u32 length | u64 checksum | entry`. How far it has been replayed
//! is stored in the database in the same transaction as the replayed rows (`log_spill`), so
//! a crash between the two can neither lose nor repeat a record. A torn last record (a kill
//! during a write) is cut off at the next start; damage in the middle (a bad checksum or
//! length) costs only the records in it: reading goes on at the next whole record, and the
//! skipped bytes are counted.

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
    /// Damaged stretches skipped to the next whole record (their records are lost).
    pub damaged: Damage,
}

/// Bytes between whole records that are no record (a bad checksum, a bad length).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub places: u64,
    pub bytes: u64,
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
        let Some((handle, generation, start)) =
            open_with_header(&path, OpenOptions::new().read(true).write(true))?
        else {
            return Ok((spill, Found::default()));
        };
        let mut found = Found::default();
        let len = handle.metadata()?.len();
        let offset = scan(
            &handle,
            start,
            len,
            usize::MAX,
            &mut found.damaged,
            |entry, _| {
                found.records += 1;
                found.max_call = found.max_call.max(entry.call);
            },
        )?;
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
        // Records end exactly at `consumed` (it was the offset after one).
        let (from, until) = (f.read, consumed.min(f.end));
        let mut skipped = 0;
        let read = scan(
            &f.handle,
            from,
            until,
            usize::MAX,
            &mut Damage::default(),
            |_, _| skipped += 1,
        )?;
        f.read = read;
        f.unread = f.unread.saturating_sub(skipped);
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
        let mut out = Vec::new();
        let offset = scan(
            &f.handle,
            f.read,
            f.end,
            max,
            &mut Damage::default(),
            |e, _| out.push(e),
        )?;
        if out.len() < max && offset < f.end {
            anyhow::bail!("spill file {} unreadable at {offset}", self.path.display());
        }
        Ok((out, offset))
    }

    /// Every record not yet replayed, in order, read without changing the file.
    pub fn for_each_unread(&self, mut f: impl FnMut(Entry)) -> anyhow::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        scan(
            &file.handle,
            file.read,
            file.end,
            usize::MAX,
            &mut Damage::default(),
            |e, _| f(e),
        )?;
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
        let Some((handle, generation, start)) =
            open_with_header(&path, OpenOptions::new().read(true))?
        else {
            return Ok(0);
        };
        let from = consumed(generation).map_or(start, |c| c.max(start));
        let len = handle.metadata()?.len();
        let mut records = 0;
        scan(
            &handle,
            from,
            len,
            usize::MAX,
            &mut Damage::default(),
            |e, _| {
                f(e);
                records += 1;
            },
        )?;
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

/// The largest record the writer makes is far below this: a longer length is damage.
const MAX_RECORD: u64 = 64 << 20;

/// Reads up to `max` whole records from `from` towards `end`, handing each to `f` with the
/// offset after it. A stretch that is no record (a bad checksum or length in the middle of
/// the file) is skipped to the next whole record and added to `damage`; the offset returned
/// is where reading stopped: `end`, after the `max`th record, or at a torn tail (no whole
/// record follows).
fn scan(
    handle: &File,
    from: u64,
    end: u64,
    max: usize,
    damage: &mut Damage,
    mut f: impl FnMut(Entry, u64),
) -> std::io::Result<u64> {
    let mut reader = BufReader::new(handle);
    reader.seek(SeekFrom::Start(from))?;
    let (mut offset, mut taken) = (from, 0);
    while offset < end && taken < max {
        match read_record(&mut reader) {
            Some((entry, len)) if offset + len <= end => {
                offset += len;
                taken += 1;
                f(entry, offset);
            }
            _ => {
                let Some(next) = resync(handle, offset + 1, end)? else {
                    return Ok(offset);
                };
                damage.places += 1;
                damage.bytes += next - offset;
                offset = next;
                reader.seek(SeekFrom::Start(next))?;
            }
        }
    }
    Ok(offset)
}

/// The first offset from `from` where a whole record starts (its length fits, its checksum
/// matches and it decodes), looked for a window at a time.
fn resync(handle: &File, from: u64, end: u64) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 1 << 20;
    let mut start = from;
    while start + 12 <= end {
        let mut window = vec![0u8; (end - start).min(WINDOW) as usize];
        handle.read_exact_at(&mut window, start)?;
        for at in 0..window.len().saturating_sub(11) {
            let p = start + at as u64;
            let head = &window[at..at + 12];
            let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
            if len == 0 || len > MAX_RECORD || p + 12 + len > end {
                continue;
            }
            let mut sum = [0u8; 8];
            sum.copy_from_slice(&head[4..]);
            let body = at + 12..at + 12 + len as usize;
            let payload = match window.get(body) {
                Some(b) => b.to_vec(),
                None => {
                    let mut b = vec![0u8; len as usize];
                    handle.read_exact_at(&mut b, p + 12)?;
                    b
                }
            };
            if checksum(&payload) == u64::from_le_bytes(sum) && Entry::decode(&payload).is_some() {
                return Ok(Some(p));
            }
        }
        // The next window starts where a header could still begin.
        start += (window.len() as u64).saturating_sub(11).max(1);
    }
    Ok(None)
}

/// Opens an existing spill file and reads its header: `None` when there is no file.
fn open_with_header(path: &Path, how: &OpenOptions) -> anyhow::Result<Option<(File, i64, u64)>> {
    let handle = match how.open(path) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening spill file {}", path.display())),
    };
    let (generation, start) = read_header(&mut BufReader::new(&handle))
        .with_context(|| format!("spill file {} has no valid header", path.display()))?;
    Ok(Some((handle, generation, start)))
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

/// One whole record and its length in the file; `None` at the end, at a torn record or at
/// damage.
fn read_record(r: &mut impl Read) -> Option<(Entry, u64)> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?);
    let sum = u64::from_le_bytes(head[4..].try_into().ok()?);
    if u64::from(len) > MAX_RECORD {
        return None;
    }
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

    #[test]
    fn damage_in_the_middle_costs_only_its_records_and_is_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("siaga.db");
        let (mut spill, _) = Spill::open(dir.path(), &db).expect("open");
        let path = spill.path().to_path_buf();
        let size = || std::fs::metadata(&path).expect("size").len();
        spill.append(&[entry(1)]).expect("append");
        let second = size();
        spill.append(&[entry(2)]).expect("append");
        let third = size();
        spill.append(&[entry(3), entry(4)]).expect("append");
        drop(spill);
        // A flipped bit in the second record's payload, and a length gone wild in the third.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[second as usize + 14] ^= 0x10;
        bytes[third as usize + 3] = 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (spill, found) = Spill::open(dir.path(), &db).expect("reopen");
        assert_eq!((found.records, found.max_call), (2, Some(4)));
        // One stretch: from the second record to the fourth (the third and fourth are alike).
        let third_len = (bytes.len() as u64 - third) / 2;
        assert_eq!(
            found.damaged,
            Damage {
                places: 1,
                bytes: third - second + third_len,
            }
        );
        let (read, _) = spill.peek(10).expect("peek");
        assert_eq!(read, vec![entry(1), entry(4)]);
        let mut all = Vec::new();
        spill.for_each_unread(|e| all.push(e)).expect("read");
        assert_eq!(all, read);
        assert_eq!(spill.unread(), 2);
    }
}
