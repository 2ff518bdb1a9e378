//! Making the embedded log's commits durable beside its writer.
//!
//! Under [`Durability::Full`](super::Durability::Full) the writer commits with SQLite's
//! `synchronous = NORMAL`: a commit writes its WAL frames and returns without waiting for the
//! disk. SQLite keeps the file consistent across a power loss that way (it syncs the WAL
//! before each checkpoint and the database file after it); what a power loss may take back
//! is the newest commits. The syncer's `fdatasync` of the WAL file is what makes those stay.
//! The writer asks for a sync after each commit and goes on with the next batch while the
//! disk works, so one batch's work overlaps the previous batch's sync; a sync answers every
//! request queued before it began.
//!
//! A failed sync is final: the kernel may have dropped the pages it could not write, and a
//! later sync that succeeds would say nothing about them. Every request after it fails too,
//! and the log refuses every commit ([`Syncer::failure`]) until it is opened again.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock, mpsc},
};

use tokio::sync::oneshot;

use super::{Durable, LogError};

/// Where a sync's answer goes.
type Waiter = oneshot::Sender<Result<(), LogError>>;

/// The handle to the syncer's thread, which ends once this is dropped.
#[derive(Debug)]
pub(super) struct Syncer {
    requests: mpsc::Sender<Waiter>,
    /// Why a sync failed, once one has.
    failed: Arc<OnceLock<String>>,
}

impl Syncer {
    /// Starts a syncer of the WAL file of the SQLite database at `database`.
    pub(super) fn start(database: &Path) -> Result<Self, LogError> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let mut dir_synced = false;
        Self::start_with(move || sync_wal(&wal, &mut dir_synced))
    }

    /// Starts a syncer that makes commits durable with `sync`.
    pub(super) fn start_with(
        mut sync: impl FnMut() -> io::Result<()> + Send + 'static,
    ) -> Result<Self, LogError> {
        let (requests, queue) = mpsc::channel::<Waiter>();
        let failed = Arc::new(OnceLock::<String>::new());
        let failure = failed.clone();
        std::thread::Builder::new()
            .name("herald-log-syncer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    // Every commit asked for so far was written before this sync starts.
                    let mut waiting = vec![first];
                    waiting.extend(queue.try_iter());
                    if failure.get().is_none()
                        && let Err(error) = sync()
                    {
                        tracing::error!(
                            %error,
                            "event log: cannot make commits durable; every later commit is \
                             refused until Herald restarts"
                        );
                        let _ = failure.set(format!("cannot sync the WAL to disk: {error}"));
                    }
                    for waiter in waiting {
                        let answer = match failure.get() {
                            None => Ok(()),
                            Some(why) => Err(LogError::other(why.clone())),
                        };
                        let _ = waiter.send(answer);
                    }
                }
            })
            .map_err(|e| LogError::other(format!("cannot start the log's syncer: {e}")))?;
        Ok(Self { requests, failed })
    }

    /// Asks for every commit made so far to be made durable: the future resolves once it is.
    pub(super) fn request(&self) -> Durable {
        let (waiter, answer) = oneshot::channel();
        let sent = self.requests.send(waiter);
        Box::pin(async move {
            let stopped = || LogError::other("the log's syncer has stopped");
            sent.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Why commits are refused: a sync has failed, and nothing written since can be trusted
    /// to stay.
    pub(super) fn failure(&self) -> Option<LogError> {
        self.failed
            .get()
            .map(|why| LogError::other(format!("{why}; commits are refused until Herald restarts")))
    }
}

/// Writes the WAL file's data to disk, and the first time its directory too: the entry of a
/// WAL file SQLite created must survive for its frames to.
fn sync_wal(wal: &Path, dir_synced: &mut bool) -> io::Result<()> {
    // `fdatasync` works on the file, whichever descriptor wrote to it.
    File::open(wal)?.sync_data()?;
    if !*dir_synced {
        let dir = wal
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        *dir_synced = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::*;

    /// One sync answers every request queued before it: requests made while a sync is held
    /// wait for the next one, which answers them all at once.
    #[tokio::test]
    async fn one_sync_answers_every_request_made_before_it() {
        let (release, held) = mpsc::channel::<()>();
        let held = Mutex::new(held);
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start_with(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            held.lock().unwrap().recv().unwrap();
            Ok(())
        })
        .unwrap();
        let first = syncer.request();
        // The first sync has started once it is counted; these queue behind it.
        while syncs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let later: Vec<Durable> = (0..5).map(|_| syncer.request()).collect();
        release.send(()).unwrap();
        first.await.unwrap();
        release.send(()).unwrap();
        for durable in later {
            durable.await.unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
        assert!(syncer.failure().is_none());
    }

    /// After a failed sync nothing is durable again: the requests it answers and every later
    /// one fail, without another sync, and the failure is reported for commits to refuse.
    #[tokio::test]
    async fn a_failed_sync_fails_every_later_request() {
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start_with(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                Err(io::Error::other("the disk is gone"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        syncer.request().await.unwrap();
        assert!(syncer.failure().is_none());
        let error = syncer.request().await.unwrap_err();
        assert!(error.to_string().contains("the disk is gone"), "{error}");
        for _ in 0..3 {
            assert!(syncer.request().await.is_err());
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "synced again after a failure"
        );
        let refused = syncer.failure().expect("the failure is kept").to_string();
        assert!(
            refused.contains("refused until Herald restarts"),
            "{refused}"
        );
    }

    /// The real sync needs the WAL file and its directory: it fails, rather than answering
    /// durable, when the file is not there.
    #[tokio::test]
    async fn the_wal_sync_fails_without_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("log.db");
        let syncer = Syncer::start(&database).unwrap();
        assert!(syncer.request().await.is_err());
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("log.db");
        std::fs::write(dir.path().join("log.db-wal"), b"frames").unwrap();
        let syncer = Syncer::start(&database).unwrap();
        syncer.request().await.unwrap();
        syncer.request().await.unwrap();
    }
}
