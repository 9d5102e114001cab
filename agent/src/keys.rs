//! Key rotation of encrypted backups (`lifeboat keys rotate`).

use anyhow::{Result, bail};
use lifeboat_proto::domain::RotatedKey;

use crate::{job::JobCtx, work::RotateKeysWork};

pub async fn rotate(_ctx: &JobCtx, _work: &RotateKeysWork) -> Result<Vec<RotatedKey>> {
    bail!("key rotation is not available in this build of lifeboat-agent")
}
