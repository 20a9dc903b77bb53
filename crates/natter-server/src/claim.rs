//! A name being claimed across the cluster: the wait a session's REGISTER (or IRC NICK)
//! goes through before the hub takes it, polled by the connection.

use crate::client_id::ClientId;
use crate::cluster::CLAIM_TIMEOUT;
use crate::hub::Hub;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a session waits for before it takes another line.
#[derive(Debug)]
pub enum Wait {
    /// The cluster's word on a name.
    Name(PendingName),
    /// An account request (hashing, the store).
    Account(crate::account::AccountWait),
    /// Messages being kept before they are answered, or a question to the store.
    Later(crate::history::Later),
}

/// A name being claimed across the cluster (a native REGISTER or an IRC nick).
#[derive(Debug)]
pub struct PendingName {
    /// As the client typed it.
    pub name: String,
    /// Whether it is a LOGIN's (already verified), not a REGISTER's.
    pub login: bool,
    /// Folded, as claimed.
    pub key: String,
    /// The cluster's answer: whether the name is this client's.
    answer: oneshot::Receiver<bool>,
    /// When to stop waiting: a little beyond the claimer's own limit, which answers first
    /// when it can.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl PendingName {
    /// Waits for `answer`, the cluster's word on the folded name `key` (typed as `name`).
    pub fn new(name: &str, key: String, answer: oneshot::Receiver<bool>) -> Self {
        Self {
            name: name.to_owned(),
            login: false,
            key,
            answer,
            deadline: Box::pin(tokio::time::sleep(CLAIM_TIMEOUT + Duration::from_secs(1))),
        }
    }

    /// The answer: `Some(granted)`, or `None` if none came in time.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<bool>> {
        match Pin::new(&mut self.answer).poll(cx) {
            Poll::Ready(a) => Poll::Ready(a.ok()),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// Gives the claim back if it is granted after all (the client left meanwhile).
    pub fn abandon(self, hub: Arc<Hub>, id: ClientId) {
        let PendingName { key, answer, .. } = self;
        tokio::spawn(async move {
            if let Ok(Ok(true)) = tokio::time::timeout(CLAIM_TIMEOUT, answer).await {
                hub.release(key, id);
            }
        });
    }
}
