//! A log record lowered to the SQL it needs: what the writer queues in memory, spills to a
//! file when the database cannot be written, and replays in order once it can. Lowering at
//! the door means the queue's size is known in bytes and a spilled record needs no engine
//! types to be read back.

use std::borrow::Cow;

use rusqlite::types::Value;

/// One statement for the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Sql {
        sql: Cow<'static, str>,
        params: Vec<Value>,
    },
    /// Close the calls a crash left open, at this point of the stream: queued first when the
    /// database could not be written at start, so the calls of this run are never closed.
    Recover { now_ms: i64 },
    /// Give the call its class from what the log holds by now (its row, signals, location
    /// and the number's earlier calls), with the thresholds of the plan running when its
    /// signals were logged: replayed from a spill, it classes the call as it would have then.
    Classify {
        call: u64,
        at_ms: i64,
        rules: siaga_dialplan::ClassifyRules,
    },
    /// Seal finished calls in the tamper-evident chain (their record as it stands now).
    Seal { calls: Vec<u64>, at_ms: i64 },
    /// Chain the call's recording digest, in the transaction that stores it.
    ChainRecording { call: u64, at_ms: i64 },
}

/// What one `Write` became: its statements, written in one go or not at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// The call it belongs to, if any (the next start reads the highest from a spill).
    pub call: Option<u64>,
    /// A sampled message of no call: the first thing to go when the disk runs low.
    pub droppable: bool,
    pub ops: Vec<Op>,
}

impl Entry {
    pub fn sql(&mut self, sql: &'static str, params: Vec<Value>) {
        self.ops.push(Op::Sql {
            sql: Cow::Borrowed(sql),
            params,
        });
    }

    /// Memory the entry holds, roughly: what the queue's bound counts.
    pub fn bytes(&self) -> usize {
        let value = |v: &Value| match v {
            Value::Text(t) => t.len() + 24,
            Value::Blob(b) => b.len() + 24,
            _ => 16,
        };
        64 + self
            .ops
            .iter()
            .map(|op| match op {
                Op::Sql { sql, params } => {
                    let owned = if let Cow::Owned(s) = sql { s.len() } else { 0 };
                    48 + owned + params.iter().map(value).sum::<usize>()
                }
                Op::Recover { .. } | Op::ChainRecording { .. } => 16,
                Op::Classify { .. } => 128,
                Op::Seal { calls, .. } => 16 + 8 * calls.len(),
            })
            .sum::<usize>()
    }

    /// The spill file's form: little-endian, length-prefixed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let flags = u8::from(self.droppable) | (u8::from(self.call.is_some()) << 1);
        out.push(flags);
        if let Some(c) = self.call {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for op in &self.ops {
            match op {
                Op::Sql { sql, params } => {
                    out.push(0);
                    put_bytes(out, sql.as_bytes());
                    out.extend_from_slice(&(params.len() as u32).to_le_bytes());
                    for p in params {
                        match p {
                            Value::Null => out.push(0),
                            Value::Integer(i) => {
                                out.push(1);
                                out.extend_from_slice(&i.to_le_bytes());
                            }
                            Value::Real(f) => {
                                out.push(2);
                                out.extend_from_slice(&f.to_le_bytes());
                            }
                            Value::Text(t) => {
                                out.push(3);
                                put_bytes(out, t.as_bytes());
                            }
                            Value::Blob(b) => {
                                out.push(4);
                                put_bytes(out, b);
                            }
                        }
                    }
                }
                Op::Recover { now_ms } => {
                    out.push(1);
                    out.extend_from_slice(&now_ms.to_le_bytes());
                }
                Op::Classify { call, at_ms, rules } => {
                    out.push(2);
                    out.extend_from_slice(&call.to_le_bytes());
                    out.extend_from_slice(&at_ms.to_le_bytes());
                    let json = serde_json::to_string(rules).unwrap_or_default();
                    put_bytes(out, json.as_bytes());
                }
                Op::Seal { calls, at_ms } => {
                    out.push(3);
                    out.extend_from_slice(&at_ms.to_le_bytes());
                    out.extend_from_slice(&(calls.len() as u32).to_le_bytes());
                    for c in calls {
                        out.extend_from_slice(&c.to_le_bytes());
                    }
                }
                Op::ChainRecording { call, at_ms } => {
                    out.push(4);
                    out.extend_from_slice(&call.to_le_bytes());
                    out.extend_from_slice(&at_ms.to_le_bytes());
                }
            }
        }
    }

    /// Reads what [`Entry::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        let flags = r.u8()?;
        let call = if flags & 2 != 0 {
            Some(u64::from_le_bytes(r.array()?))
        } else {
            None
        };
        let count = r.u32()?;
        let mut ops = Vec::new();
        for _ in 0..count {
            let op = match r.u8()? {
                0 => {
                    let sql = String::from_utf8(r.bytes()?.to_vec()).ok()?;
                    let n = r.u32()?;
                    let mut params = Vec::new();
                    for _ in 0..n {
                        params.push(match r.u8()? {
                            0 => Value::Null,
                            1 => Value::Integer(i64::from_le_bytes(r.array()?)),
                            2 => Value::Real(f64::from_le_bytes(r.array()?)),
                            3 => Value::Text(String::from_utf8(r.bytes()?.to_vec()).ok()?),
                            4 => Value::Blob(r.bytes()?.to_vec()),
                            _ => return None,
                        });
                    }
                    Op::Sql {
                        sql: Cow::Owned(sql),
                        params,
                    }
                }
                1 => Op::Recover {
                    now_ms: i64::from_le_bytes(r.array()?),
                },
                2 => Op::Classify {
                    call: u64::from_le_bytes(r.array()?),
                    at_ms: i64::from_le_bytes(r.array()?),
                    rules: serde_json::from_slice(r.bytes()?).ok()?,
                },
                3 => {
                    let at_ms = i64::from_le_bytes(r.array()?);
                    let n = r.u32()?;
                    let mut calls = Vec::new();
                    for _ in 0..n {
                        calls.push(u64::from_le_bytes(r.array()?));
                    }
                    Op::Seal { calls, at_ms }
                }
                4 => Op::ChainRecording {
                    call: u64::from_le_bytes(r.array()?),
                    at_ms: i64::from_le_bytes(r.array()?),
                },
                _ => return None,
            };
            ops.push(op);
        }
        r.0.is_empty().then_some(Entry {
            call,
            droppable: flags & 1 != 0,
            ops,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written_and_a_torn_one_does_not() {
        let mut e = Entry {
            call: Some(7),
            droppable: false,
            ops: vec![
                Op::Recover { now_ms: -3 },
                Op::Seal {
                    calls: vec![3, 4],
                    at_ms: 12,
                },
                Op::ChainRecording { call: 4, at_ms: 13 },
                Op::Classify {
                    call: 7,
                    at_ms: 9,
                    rules: siaga_dialplan::ClassifyRules {
                        repeat_in_day: 11,
                        ..Default::default()
                    },
                },
            ],
        };
        e.sql(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            vec![
                Value::Null,
                Value::Integer(-5),
                Value::Real(1.5),
                Value::Text("\u{1b}[2J caller".into()),
                Value::Blob(vec![0, 255, 13, 10]),
            ],
        );
        let mut bytes = Vec::new();
        e.encode(&mut bytes);
        assert_eq!(Entry::decode(&bytes), Some(e));
        assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), None);
    }
}
