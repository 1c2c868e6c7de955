//! A store transaction and the changes the engine has decided in it but not yet handed over.

use crate::StoreError;
use crate::ports::{Changes, Store, Transaction};

type R<T> = std::result::Result<T, StoreError>;

/// The engine's side of a transaction: it decides in plain code, collecting what to write in
/// `changes`, and hands them to the store ([`Transaction::apply`]) in one call before the store
/// answers a read that could depend on them, and at commit. A booking batch that only reads its
/// event thus writes once, whatever the number of requests in it.
pub(crate) struct Work {
    tx: Box<dyn Transaction>,
    /// Decided, not yet applied.
    pub(crate) changes: Changes,
}

impl Work {
    /// Starts a read-write transaction.
    pub(crate) async fn begin(store: &dyn Store) -> R<Self> {
        Ok(Self {
            tx: store.begin().await?,
            changes: Changes::default(),
        })
    }

    /// Writes `changes` in a transaction of their own.
    pub(crate) async fn write(store: &dyn Store, changes: Changes) -> R<()> {
        let mut work = Self::begin(store).await?;
        work.changes = changes;
        work.commit().await
    }

    /// The transaction, to read what it holds, the changes decided so far included.
    pub(crate) async fn read(&mut self) -> R<&mut dyn Transaction> {
        self.flush().await?;
        Ok(&mut *self.tx)
    }

    /// The transaction, to read what the store held before the changes not yet applied: only for a
    /// read the caller has already answered from [`Work::changes`] where it could be.
    pub(crate) fn read_stored(&mut self) -> &mut dyn Transaction {
        &mut *self.tx
    }

    /// Hands the changes decided so far to the store.
    pub(crate) async fn flush(&mut self) -> R<()> {
        if self.changes.is_empty() {
            return Ok(());
        }
        self.tx.apply(std::mem::take(&mut self.changes)).await
    }

    /// Applies what is left and commits.
    pub(crate) async fn commit(mut self) -> R<()> {
        self.flush().await?;
        self.tx.commit().await
    }
}
