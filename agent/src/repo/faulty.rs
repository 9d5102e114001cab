//! A fault-injecting wrapper around a real repository, for tests of the error paths: fail the
//! Nth call of an operation, stall it, cut an upload after some bytes, truncate reads, flip a
//! byte in reads, or lose an object right after a successful upload.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{
    Body, ObjectInfo, ReadStream, Repository, Storage, StorageError, StorageResult, body_channel,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Put,
    Get,
    Head,
    List,
    Delete,
    Janitor,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// The `n`th call (1-based) of `op` fails.
    FailNth { op: Op, n: usize },
    /// The `n`th call of `op` waits `for_` before doing anything (a put gives up early if
    /// cancelled).
    Stall { op: Op, n: usize, for_: Duration },
    /// Puts forward only the first `bytes` of their body, then fail as if the connection
    /// dropped; the wrapped repository sees an abandoned body.
    CutPutAfter { bytes: u64 },
    /// Reads end cleanly after `at` bytes of the object.
    Truncate { at: u64 },
    /// Reads return byte `at` of the object inverted.
    FlipByte { at: u64 },
    /// Reads fail with an I/O error after `at` bytes of the object.
    ReadErrorAt { at: u64 },
    /// A put reports success but the object is gone right after.
    LosePut,
}

#[derive(Debug)]
pub struct Faulty {
    inner: Repository,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<BTreeMap<Op, usize>>,
}

impl Faulty {
    pub fn wrap(inner: Repository) -> Arc<Self> {
        Arc::new(Self {
            inner,
            faults: Mutex::new(Vec::new()),
            calls: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn inject(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(fault);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
    }

    pub fn calls(&self, op: Op) -> usize {
        self.calls
            .lock()
            .map(|c| c.get(&op).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn faults(&self) -> Vec<Fault> {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Counts the call and applies the call-level faults (fail, stall).
    async fn enter(&self, op: Op, cancel: Option<&CancellationToken>) -> StorageResult<()> {
        let n = {
            let mut c = self
                .calls
                .lock()
                .map_err(|_| anyhow::anyhow!("fault state poisoned"))?;
            let e = c.entry(op).or_default();
            *e += 1;
            *e
        };
        for f in self.faults() {
            match f {
                Fault::FailNth { op: o, n: k } if o == op && k == n => {
                    return Err(StorageError::Other(anyhow::anyhow!(
                        "{op:?} call {n}: injected failure"
                    )));
                }
                Fault::Stall { op: o, n: k, for_ } if o == op && k == n => match cancel {
                    Some(c) => tokio::select! {
                        () = tokio::time::sleep(for_) => {}
                        () = c.cancelled() => return Err(StorageError::Cancelled),
                    },
                    None => tokio::time::sleep(for_).await,
                },
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for Faulty {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(
        &self,
        key: &str,
        mut body: Body,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        self.enter(Op::Put, Some(cancel)).await?;
        let faults = self.faults();
        let cut = faults.iter().find_map(|f| match f {
            Fault::CutPutAfter { bytes } => Some(*bytes),
            _ => None,
        });
        let lose = faults.iter().any(|f| matches!(f, Fault::LosePut));
        // Relay the body so the wrapped repository can be cut off mid-stream.
        let (tx, inner_body) = body_channel(2);
        let inner = self.inner.clone();
        let k = key.to_owned();
        let c = cancel.clone();
        let put = tokio::spawn(async move { inner.put(&k, inner_body, size_hint, &c).await });
        let mut sent = 0u64;
        let relay: StorageResult<()> = async {
            while let Some(mut chunk) = body.next().await? {
                if let Some(limit) = cut {
                    let room = limit.saturating_sub(sent);
                    if (chunk.len() as u64) > room {
                        chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                        let _ = tx.send(chunk).await;
                        return Err(StorageError::Other(anyhow::anyhow!(
                            "connection reset after {limit} bytes: injected failure"
                        )));
                    }
                }
                sent += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
            let _ = tx.clone().finish().await;
            Ok(())
        }
        .await;
        drop(tx);
        let stored = put
            .await
            .map_err(|e| anyhow::anyhow!("put task failed: {e}"))?;
        relay?;
        let info = stored?;
        if lose {
            self.inner.delete(key).await?;
        }
        Ok(info)
    }

    async fn get(&self, key: &str, offset: u64) -> StorageResult<Option<ReadStream>> {
        self.enter(Op::Get, None).await?;
        let Some(stream) = self.inner.get(key, offset).await? else {
            return Ok(None);
        };
        let faults = self.faults();
        let mut pos = offset;
        let s = stream
            .map(move |item| {
                let mut chunk = item?;
                let start = pos;
                let end = pos + chunk.len() as u64;
                pos = end;
                for f in &faults {
                    match *f {
                        Fault::ReadErrorAt { at } if at < end => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                format!("connection reset at byte {at}: injected failure"),
                            ));
                        }
                        Fault::Truncate { at } if at < end => {
                            let keep = usize::try_from(at.saturating_sub(start)).unwrap_or(0);
                            chunk.truncate(keep);
                        }
                        Fault::FlipByte { at } if (start..end).contains(&at) => {
                            let mut v = chunk.to_vec();
                            let i = usize::try_from(at - start).unwrap_or(0);
                            v[i] = !v[i];
                            chunk = Bytes::from(v);
                        }
                        _ => {}
                    }
                }
                Ok(chunk)
            })
            .take_while(|r| {
                let keep = !matches!(r, Ok(c) if c.is_empty());
                async move { keep }
            })
            .boxed();
        Ok(Some(s))
    }

    async fn replace_bytes(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        cancel: &CancellationToken,
    ) -> StorageResult<ObjectInfo> {
        self.enter(Op::Put, Some(cancel)).await?;
        self.inner.replace_bytes(key, bytes, cancel).await
    }

    async fn head(&self, key: &str) -> StorageResult<Option<ObjectInfo>> {
        self.enter(Op::Head, None).await?;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectInfo>> {
        self.enter(Op::List, None).await?;
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.enter(Op::Delete, None).await?;
        self.inner.delete(key).await
    }

    async fn janitor(
        &self,
        prefix: &str,
        older_than: Duration,
        busy: &std::collections::BTreeSet<String>,
    ) -> StorageResult<u64> {
        self.enter(Op::Janitor, None).await?;
        self.inner.janitor(prefix, older_than, busy).await
    }
}
