//! What `wal-push`/`wal-fetch` and the agent say on the WAL socket.
//!
//! A message is one JSON line (at most [`MAX_LINE`] bytes) and, where the exchange carries a
//! file, a body of frames: a 4-byte big-endian length and that many bytes, at most
//! [`MAX_FRAME`], ended by a frame of length 0.
//!
//! - push: client `Push` → agent `Reply` (`done`: already archived, nothing to send; else go
//!   ahead) → client body → agent `Reply` once the file is durable in the repository.
//! - fetch: client `Fetch` → agent `Reply` (`missing`, or the file's SHA-256) → agent body →
//!   agent `Reply` (the stored bytes checked out).

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAX_LINE: usize = 4096;
pub const MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Archive a file: its name, size and SHA-256 (hex), computed by the client.
    Push {
        target: String,
        name: String,
        size: u64,
        sha256: String,
    },
    /// Hand back an archived file.
    Fetch { target: String, name: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub ok: bool,
    /// Push: the same file is already archived.
    #[serde(default)]
    pub done: bool,
    /// Fetch: the repository does not have the file.
    #[serde(default)]
    pub missing: bool,
    /// Fetch: the SHA-256 of the file about to be sent.
    #[serde(default)]
    pub sha256: String,
    /// Why not, for the server's log.
    #[serde(default)]
    pub error: String,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Self {
        Self {
            error: e.to_string(),
            ..Self::default()
        }
    }
}

pub async fn write_line<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Reads one message line; `Ok(None)` at a clean end of stream.
pub async fn read_line<T: DeserializeOwned>(
    r: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(bad(if line.len() > MAX_LINE {
            "message line too long"
        } else {
            "the connection ended inside a message"
        }));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| bad(&format!("not a WAL socket message: {e}")))
}

/// Writes one frame of body (`data` must not be empty: an empty frame ends the body).
pub async fn write_frame(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> std::io::Result<()> {
    debug_assert!(!data.is_empty() && data.len() <= MAX_FRAME);
    let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(data).await
}

pub async fn end_body(w: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
    w.write_all(&0u32.to_be_bytes()).await?;
    w.flush().await
}

/// Reads the next frame of a body; `None` at its end.
pub async fn read_frame(
    r: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<Option<bytes::Bytes>> {
    let len = r.read_u32().await? as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_FRAME {
        return Err(bad("frame too large"));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf.into()))
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_and_frames_round_trip() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (mut w, mut r) = (a, tokio::io::BufReader::new(b));
        let push = Request::Push {
            target: "main".into(),
            name: "000000010000000000000001".into(),
            size: 3,
            sha256: "ab".into(),
        };
        write_line(&mut w, &push).await.expect("write");
        write_frame(&mut w, b"abc").await.expect("frame");
        end_body(&mut w).await.expect("end");
        assert_eq!(
            read_line::<Request>(&mut r).await.expect("read"),
            Some(push)
        );
        assert_eq!(
            read_frame(&mut r).await.expect("frame").as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(read_frame(&mut r).await.expect("end"), None);
    }

    #[tokio::test]
    async fn oversized_and_malformed_input_is_refused() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let mut r = tokio::io::BufReader::new(b);
        a.write_all(&vec![b'x'; MAX_LINE + 10])
            .await
            .expect("write");
        assert!(read_line::<Request>(&mut r).await.is_err());

        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let mut r = tokio::io::BufReader::new(b);
        a.write_all(b"{\"op\":\"delete\",\"target\":\"x\"}\n")
            .await
            .expect("write");
        assert!(read_line::<Request>(&mut r).await.is_err());

        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let mut r = tokio::io::BufReader::new(b);
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .expect("write");
        assert!(read_frame(&mut r).await.is_err());
    }
}
