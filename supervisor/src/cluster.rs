//! The Redis driver of `--cluster`: carries out the store operations that
//! [`ownstream_core::cluster::Cluster`] decides, and sends their answers back to the hub. It
//! decides nothing itself.
//!
//! Keys (one Redis database, shared by every supervisor of the cluster):
//! - `ownstream:lease:{stream}`: the owner's id, with the lease as its time to live;
//! - `ownstream:info:{stream}`: the owner's description of the stream (JSON), same time to live;
//! - `ownstream:streams`: the names that may have a lease (the directory's index; names whose
//!   lease is gone are removed by the next reader);
//! - `ownstream:supervisor:{id}`: a supervisor's WebSocket URL, living one lease;
//! - `ownstream:supervisors`: the ids that may have one (pruned the same way).
//!
//! Only the owner extends a lease: renewing and releasing are check-and-set scripts. Every
//! operation has [`OP_TIMEOUT`]; a failure answers as "the store failed", and the connection is
//! made again on the next operation.

use ownstream_core::cluster::{Command, Directory, DirectoryEntry, Owner};
use ownstream_core::protocol::StreamInfo;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Longest a store operation may take; well under the lease's safety margin times two, so a
/// failed renewal is retried before the lease is at risk.
const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// Most streams and supervisors one directory read returns.
const MAX_DIRECTORY: usize = 10_000;

/// Largest stream description read back from the store.
const MAX_INFO_LEN: usize = 4096;

const PREFIX: &str = "ownstream:";

/// Sets the lease if free; extends it if already ours; returns the owner after that.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  return ARGV[1]
end
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return owner
";

/// Extends the lease if ours (takes it back if it vanished, e.g. the store restarted empty) and
/// refreshes the stream's description; 0 if another supervisor holds it.
const RENEW: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
";

/// Deletes the lease and the description if ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
";

/// A store answer for the hub.
#[derive(Debug)]
pub enum Answer {
    /// See [`ownstream_core::cluster::Cluster::handle_claimed`].
    Claimed {
        /// The stream.
        stream: String,
        /// When the claim was sent.
        sent_ms: u64,
        /// The owner after the claim; `None`: the store failed.
        owner: Option<Owner>,
    },
    /// See [`ownstream_core::cluster::Cluster::handle_located`].
    Located {
        /// The stream.
        stream: String,
        /// The owner; `Err`: the store failed.
        owner: Result<Option<Owner>, ()>,
    },
    /// See [`ownstream_core::cluster::Cluster::handle_renewed`].
    Renewed {
        /// The stream.
        stream: String,
        /// When the renewal was sent.
        sent_ms: u64,
        /// Renewed, held elsewhere, or the store failed.
        renewed: Result<bool, ()>,
    },
    /// See [`ownstream_core::cluster::Cluster::handle_released`]: done or failed alike.
    Released {
        /// The stream.
        stream: String,
    },
    /// See [`ownstream_core::cluster::Cluster::handle_directory`].
    Directory(Directory),
}

/// The connection to the store and who this supervisor is.
pub struct Store {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    me: String,
    url: String,
    lease_ms: u64,
}

impl Store {
    /// Connects (and pings) once, so a wrong `--cluster` URL is reported at start.
    pub async fn connect(
        redis_url: &str,
        me: String,
        url: String,
        lease_ms: u64,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(redis_url)
            .map_err(|e| anyhow::anyhow!("--cluster {redis_url}: {e}"))?;
        let store = Arc::new(Self {
            client,
            conn: Mutex::new(None),
            me,
            url,
            lease_ms,
        });
        let mut conn = store
            .conn()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Redis at {redis_url}: {e}"))?;
        let _: String = timed(redis::cmd("PING").query_async(&mut conn))
            .await
            .map_err(|e| anyhow::anyhow!("Redis at {redis_url} does not answer: {e}"))?;
        Ok(store)
    }

    /// This supervisor's id.
    pub fn id(&self) -> &str {
        &self.me
    }

    /// The URL this supervisor advertises.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Carries out `cmd` in its own task; its answer (if it has one) goes to `answers`. `info`
    /// is the stream's description for a renewal.
    pub fn spawn(
        self: &Arc<Self>,
        cmd: Command,
        info: Option<StreamInfo>,
        answers: mpsc::UnboundedSender<Answer>,
    ) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Some(answer) = store.run(cmd, info).await {
                let _ = answers.send(answer);
            }
        });
    }

    async fn run(&self, cmd: Command, info: Option<StreamInfo>) -> Option<Answer> {
        match cmd {
            Command::Claim { stream, sent_ms } => {
                let owner = self.claim(&stream).await.map_err(|e| self.failed(&e)).ok();
                Some(Answer::Claimed {
                    stream,
                    sent_ms,
                    owner: owner.flatten(),
                })
            }
            Command::Locate { stream } => {
                let owner = self.locate(&stream).await.map_err(|e| self.failed(&e));
                Some(Answer::Located { stream, owner })
            }
            Command::Renew { stream, sent_ms } => {
                let renewed = self.renew(&stream, info).await.map_err(|e| self.failed(&e));
                Some(Answer::Renewed {
                    stream,
                    sent_ms,
                    renewed,
                })
            }
            Command::Release { stream } => {
                if let Err(e) = self.release(&stream).await {
                    self.failed(&e);
                }
                Some(Answer::Released { stream })
            }
            Command::Refresh => match self.refresh().await {
                Ok(dir) => Some(Answer::Directory(dir)),
                Err(e) => {
                    self.failed(&e);
                    None
                }
            },
        }
    }

    fn failed(&self, e: &redis::RedisError) {
        tracing::warn!(error = %e, "cluster store operation failed");
        // A broken connection is made again by the next operation.
        if let Ok(mut conn) = self.conn.try_lock() {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                *conn = None;
            }
        }
    }

    async fn conn(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = timed(self.client.get_multiplexed_async_connection()).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn claim(&self, stream: &str) -> redis::RedisResult<Option<Owner>> {
        let mut conn = self.conn().await?;
        let owner: Option<String> = timed(
            redis::Script::new(CLAIM)
                .key(key("lease:", stream))
                .key(key("streams", ""))
                .arg(&self.me)
                .arg(self.lease_ms)
                .arg(stream)
                .invoke_async(&mut conn),
        )
        .await?;
        match owner {
            Some(id) => Ok(Some(self.owner(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    async fn locate(&self, stream: &str) -> redis::RedisResult<Option<Owner>> {
        let mut conn = self.conn().await?;
        let id: Option<String> = timed(
            redis::cmd("GET")
                .arg(key("lease:", stream))
                .query_async(&mut conn),
        )
        .await?;
        match id {
            Some(id) => Ok(Some(self.owner(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    async fn owner(
        &self,
        conn: &mut MultiplexedConnection,
        id: String,
    ) -> redis::RedisResult<Owner> {
        let url: Option<String> = timed(
            redis::cmd("GET")
                .arg(key("supervisor:", &id))
                .query_async(conn),
        )
        .await?;
        Ok(Owner { id, url })
    }

    async fn renew(&self, stream: &str, info: Option<StreamInfo>) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        let info = info.map_or_else(String::new, |i| {
            serde_json::to_string(&i).unwrap_or_default()
        });
        let done: i64 = timed(
            redis::Script::new(RENEW)
                .key(key("lease:", stream))
                .key(key("info:", stream))
                .key(key("streams", ""))
                .arg(&self.me)
                .arg(self.lease_ms)
                .arg(info)
                .arg(stream)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(done == 1)
    }

    async fn release(&self, stream: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        let _: i64 = timed(
            redis::Script::new(RELEASE)
                .key(key("lease:", stream))
                .key(key("info:", stream))
                .arg(&self.me)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// Advertises this supervisor, then reads the supervisors and the streams.
    async fn refresh(&self) -> redis::RedisResult<Directory> {
        let mut conn = self.conn().await?;
        let _: () = timed(
            redis::pipe()
                .cmd("SET")
                .arg(key("supervisor:", &self.me))
                .arg(&self.url)
                .arg("PX")
                .arg(self.lease_ms)
                .ignore()
                .cmd("SADD")
                .arg(key("supervisors", ""))
                .arg(&self.me)
                .ignore()
                .query_async(&mut conn),
        )
        .await?;
        let sup_ids = self.members(&mut conn, "supervisors").await?;
        let urls = self.mget(&mut conn, "supervisor:", &sup_ids).await?;
        let supervisors: Vec<(String, String)> =
            self.prune(&mut conn, "supervisors", sup_ids, urls).await?;
        let names = self.members(&mut conn, "streams").await?;
        let owners = self.mget(&mut conn, "lease:", &names).await?;
        let infos = self.mget(&mut conn, "info:", &names).await?;
        let live = self.prune(&mut conn, "streams", names, owners).await?;
        let streams = live
            .into_iter()
            .zip(infos)
            .filter_map(|((name, id), info)| {
                let info = info.filter(|i| i.len() <= MAX_INFO_LEN)?;
                let mut info: StreamInfo = serde_json::from_str(&info).ok()?;
                info.name = name;
                let url = supervisors
                    .iter()
                    .find(|(s, _)| *s == id)
                    .map(|(_, u)| u.clone());
                Some(DirectoryEntry {
                    info,
                    owner: Owner { id, url },
                })
            })
            .collect();
        Ok(Directory {
            supervisors,
            streams,
        })
    }

    async fn members(
        &self,
        conn: &mut MultiplexedConnection,
        set: &str,
    ) -> redis::RedisResult<Vec<String>> {
        let mut all: Vec<String> =
            timed(redis::cmd("SMEMBERS").arg(key(set, "")).query_async(conn)).await?;
        all.sort();
        all.truncate(MAX_DIRECTORY);
        Ok(all)
    }

    async fn mget(
        &self,
        conn: &mut MultiplexedConnection,
        prefix: &str,
        names: &[String],
    ) -> redis::RedisResult<Vec<Option<String>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| key(prefix, n)).collect();
        timed(redis::cmd("MGET").arg(keys).query_async(conn)).await
    }

    /// Pairs each name with its value, and removes the names whose value expired from `set`.
    async fn prune(
        &self,
        conn: &mut MultiplexedConnection,
        set: &str,
        names: Vec<String>,
        values: Vec<Option<String>>,
    ) -> redis::RedisResult<Vec<(String, String)>> {
        let (live, gone): (Vec<_>, Vec<_>) = names
            .into_iter()
            .zip(values)
            .partition(|(_, v)| v.is_some());
        if !gone.is_empty() {
            let gone: Vec<String> = gone.into_iter().map(|(n, _)| n).collect();
            let _: i64 = timed(
                redis::cmd("SREM")
                    .arg(key(set, ""))
                    .arg(gone)
                    .query_async(conn),
            )
            .await?;
        }
        Ok(live
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect())
    }
}

fn key(kind: &str, name: &str) -> String {
    format!("{PREFIX}{kind}{name}")
}

async fn timed<T>(
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the cluster store did not answer in time",
            )))
        })
}
